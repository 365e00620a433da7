"""Load-balancing policies: pick one endpoint among the available ones, found by name."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.clusters.endpoint import Endpoint
from gateway.settings import LbPolicy


class Balancer(Protocol):
    """Picks the endpoint of the next call; ``candidates`` is never empty."""

    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint:
        """The endpoint to use."""
        ...


class RoundRobin:
    """Each endpoint in turn."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint:
        """The next endpoint in turn (the turn survives changes of the candidates)."""
        self._next += 1
        return candidates[self._next % len(candidates)]


class LeastRequest:
    """Power of two choices: of two endpoints drawn at random, the one with fewer calls."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Endpoint]) -> Endpoint:
        """The less busy of two random candidates (the only one when there is one)."""
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(range(len(candidates)), 2)
        a, b = candidates[first], candidates[second]
        return a if a.in_flight <= b.in_flight else b


BALANCERS: dict[LbPolicy, Callable[[], Balancer]] = {
    LbPolicy.ROUND_ROBIN: RoundRobin,
    LbPolicy.LEAST_REQUEST: LeastRequest,
}
"""Policy -> factory of a fresh balancer (one per cluster)."""
