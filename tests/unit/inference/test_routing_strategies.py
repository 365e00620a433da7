"""Each load-balancing strategy's choice, with seeded randomness."""

from __future__ import annotations

import random
from collections import Counter

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2
from provider_adapters.base import Deployment
from provider_adapters.simulated import SimulatedAdapter
from services.inference.routing.stats import DeploymentStats
from services.inference.routing.strategies import (
    STRATEGIES,
    Demand,
    order_by_priority,
    strategy,
    strategy_name,
)
from services.inference.routing.table import Candidate, Target


def _candidate(name: str, weight: int = 1, priority: int = 0, input_price: int = 0) -> Candidate:
    version = models_pb2.ModelVersion(
        model=name,
        version="1",
        provider="simulated",
        pricing=common_pb2.Pricing(
            input_per_million_nanos=input_price, output_per_million_nanos=input_price
        ),
    )
    target = Target(name, version, SimulatedAdapter(Deployment("simulated", name)))
    return Candidate(name, target, weight=weight, priority=priority)


def _names(candidates: list[Candidate]) -> list[str]:
    return [c.deployment_id for c in candidates]


def test_every_enum_value_names_a_registered_strategy() -> None:
    for value in models_pb2.RoutingStrategy.values():
        assert strategy_name(value) in STRATEGIES
    assert strategy_name(models_pb2.ROUTING_STRATEGY_COST_BASED) == "cost_based"


def test_weighted_shuffle_leads_in_proportion_to_weight() -> None:
    candidates = [_candidate("light", weight=1), _candidate("heavy", weight=3)]
    demand = Demand(load=DeploymentStats(0.5), rng=random.Random(42))
    firsts = Counter(
        strategy("weighted_shuffle").order(candidates, demand)[0].deployment_id for _ in range(4000)
    )
    assert 0.72 < firsts["heavy"] / 4000 < 0.78
    order = strategy("weighted_shuffle").order(candidates, demand)
    assert sorted(_names(order)) == ["heavy", "light"]


def test_least_busy_prefers_fewest_in_flight() -> None:
    stats = DeploymentStats(0.5)
    for _ in range(3):
        stats.begin("a")
    stats.begin("c")
    candidates = [_candidate("a"), _candidate("b"), _candidate("c")]
    order = strategy("least_busy").order(candidates, Demand(load=stats, rng=random.Random(1)))
    assert _names(order) == ["b", "c", "a"]
    stats.end("a")
    stats.end("a")
    stats.end("a")
    stats.begin("b")
    stats.begin("b")
    order = strategy("least_busy").order(candidates, Demand(load=stats, rng=random.Random(1)))
    assert _names(order) == ["a", "c", "b"]


def test_latency_based_uses_moving_averages_and_tries_unmeasured_first() -> None:
    stats = DeploymentStats(0.5)
    stats.observe("slow", 2.0, time_to_first_token=0.1)
    stats.observe("fast", 1.0, time_to_first_token=0.5)
    stats.observe("fast", 0.5)  # EWMA: 0.5 * 0.5 + 0.5 * 1.0
    assert stats.latency("fast") == 0.75
    candidates = [_candidate("slow"), _candidate("fast"), _candidate("new")]
    unary = strategy("latency_based").order(candidates, Demand(load=stats, rng=random.Random(3)))
    assert _names(unary) == ["new", "fast", "slow"]
    streaming = strategy("latency_based").order(
        candidates, Demand(load=stats, rng=random.Random(3), streaming=True)
    )
    assert _names(streaming) == ["new", "slow", "fast"]


def test_cost_based_prefers_cheapest_for_the_token_estimate() -> None:
    candidates = [
        _candidate("pricey", input_price=5_000_000_000),
        _candidate("cheap", input_price=150_000_000),
        _candidate("middle", input_price=1_000_000_000),
    ]
    demand = Demand(
        load=DeploymentStats(0.5), rng=random.Random(5), input_tokens=1000, output_tokens=100
    )
    assert _names(strategy("cost_based").order(candidates, demand)) == ["cheap", "middle", "pricey"]


def test_priorities_come_before_the_strategy() -> None:
    candidates = [
        _candidate("backup", priority=1, input_price=1),
        _candidate("primary-expensive", priority=0, input_price=9_000_000_000),
        _candidate("primary-cheap", priority=0, input_price=2),
    ]
    demand = Demand(load=DeploymentStats(0.5), rng=random.Random(0), input_tokens=10)
    order = order_by_priority(candidates, strategy("cost_based"), demand)
    assert _names(order) == ["primary-cheap", "primary-expensive", "backup"]
