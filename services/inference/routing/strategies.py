"""Load-balancing strategies: plugins that order the deployments of one priority tier.

A strategy is a stateless object with one method, :meth:`Strategy.order`, found by
name in :data:`STRATEGIES`; the registry's ``RoutingStrategy`` enum maps to those
names in :data:`BY_ENUM`. Priorities are applied outside the strategies (lower
priority numbers first), so each strategy only sees candidates of one tier.

The candidate type is generic: anything with ``target.key``, ``target.version``,
``weight`` and ``priority`` (see :class:`Weighed`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypeVar

from llmgw.models.v1 import models_pb2
from services.inference.routing.pricing import estimated_cost_nanos
from services.inference.routing.stats import LoadView


class _Target(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def version(self) -> models_pb2.ModelVersion: ...


class Weighed(Protocol):
    """What a strategy reads of a candidate."""

    @property
    def target(self) -> _Target: ...

    @property
    def weight(self) -> int: ...

    @property
    def priority(self) -> int: ...


C = TypeVar("C", bound=Weighed)


@dataclass(frozen=True, slots=True)
class Demand:
    """What a strategy knows about the request and the deployments' state."""

    load: LoadView
    rng: random.Random
    input_tokens: int = 0
    output_tokens: int = 0
    streaming: bool = False


class Strategy(Protocol):
    """Orders candidates, best first; must return each candidate exactly once."""

    def order(self, candidates: Sequence[C], demand: Demand) -> list[C]:
        """``candidates`` in the order to try them."""
        ...


class WeightedShuffle:
    """Random order, each position drawn proportionally to the remaining weights.

    Uses the Efraimidis-Spirakis keys ``u ** (1 / weight)`` (sorted descending),
    which gives exactly weighted sampling without replacement in one pass.
    """

    def order(self, candidates: Sequence[C], demand: Demand) -> list[C]:
        keyed = [
            (demand.rng.random() ** (1.0 / max(c.weight, 1)), index)
            for index, c in enumerate(candidates)
        ]
        keyed.sort(reverse=True)
        return [candidates[index] for _, index in keyed]


class LeastBusy:
    """Fewest in-flight requests first; ties in weighted-shuffle order."""

    def order(self, candidates: Sequence[C], demand: Demand) -> list[C]:
        shuffled = WeightedShuffle().order(candidates, demand)
        return sorted(shuffled, key=lambda c: demand.load.in_flight(c.target.key))


class LatencyBased:
    """Lowest moving-average latency first (time to first token for streams).

    Deployments without samples yet come first, so every deployment gets measured;
    ties in weighted-shuffle order.
    """

    def order(self, candidates: Sequence[C], demand: Demand) -> list[C]:
        def score(candidate: C) -> float:
            key = candidate.target.key
            value = demand.load.time_to_first_token(key) if demand.streaming else None
            if value is None:
                value = demand.load.latency(key)
            return -math.inf if value is None else value

        return sorted(WeightedShuffle().order(candidates, demand), key=score)


class CostBased:
    """Cheapest first for the request's estimated input and output tokens."""

    def order(self, candidates: Sequence[C], demand: Demand) -> list[C]:
        def price(candidate: C) -> int:
            pricing = candidate.target.version.pricing
            return estimated_cost_nanos(demand.input_tokens, demand.output_tokens, pricing)

        return sorted(WeightedShuffle().order(candidates, demand), key=price)


STRATEGIES: Mapping[str, Strategy] = MappingProxyType(
    {
        "weighted_shuffle": WeightedShuffle(),
        "least_busy": LeastBusy(),
        "latency_based": LatencyBased(),
        "cost_based": CostBased(),
    }
)
"""Every strategy, by name."""

BY_ENUM: Mapping[int, str] = MappingProxyType(
    {
        models_pb2.ROUTING_STRATEGY_UNSPECIFIED: "weighted_shuffle",
        models_pb2.ROUTING_STRATEGY_WEIGHTED_SHUFFLE: "weighted_shuffle",
        models_pb2.ROUTING_STRATEGY_LEAST_BUSY: "least_busy",
        models_pb2.ROUTING_STRATEGY_LATENCY_BASED: "latency_based",
        models_pb2.ROUTING_STRATEGY_COST_BASED: "cost_based",
    }
)
"""The strategy name of each ``RoutingStrategy`` value; unknown values mean the default."""


def strategy_name(value: int) -> str:
    """The name of the strategy for a ``RoutingStrategy`` value."""
    return BY_ENUM.get(value, "weighted_shuffle")


def strategy(name: str) -> Strategy:
    """The strategy called ``name``; raises KeyError naming the known ones."""
    found = STRATEGIES.get(name)
    if found is None:
        raise KeyError(f"unknown routing strategy {name!r} (known: {', '.join(STRATEGIES)})")
    return found


def order_by_priority(candidates: Sequence[C], chosen: Strategy, demand: Demand) -> list[C]:
    """Lower priority numbers first; within one priority, ``chosen`` decides."""
    tiers: dict[int, list[C]] = {}
    for candidate in candidates:
        tiers.setdefault(candidate.priority, []).append(candidate)
    ordered: list[C] = []
    for priority in sorted(tiers):
        ordered.extend(chosen.order(tiers[priority], demand))
    return ordered
