"""The limit filters' decisions when Redis cannot be reached, on policies from the gateway."""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry

from gateway import api_descriptors
from gateway.filters import budget, rate_limit
from gateway.filters.base import Call, CallShape, FilterContext
from gateway.limits.rules import BudgetRuleConfig, RateLimitRuleConfig, StaticPolicies
from llmgw.inference.v1 import inference_pb2
from services.kernel.identity import API_KEY_ACTOR, Principal

assert api_descriptors.API_FILES
DEAD = "redis://127.0.0.1:1/0"
COMPLETE = "/llmgw.inference.v1.InferenceService/Complete"
KEY = Principal(actor_type=API_KEY_ACTOR, actor_id="k1", project_id="p1")
BODY = inference_pb2.CompleteRequest(
    completion=inference_pb2.CompletionRequest(model="m")
).SerializeToString()


def _call(principal: Principal = KEY) -> Call:
    return Call(COMPLETE, CallShape.UNARY, (), "peer", 0.0, (), principal=principal)


def _context(registry: CollectorRegistry) -> FilterContext:
    policies = StaticPolicies.of(
        [RateLimitRuleConfig(id="rpm", project="p1", requests_per_minute=2)],
        [BudgetRuleConfig(id="b", key="k1", amount_nanos=1)],
    )
    return FilterContext(registry, policies=policies)


async def test_rate_limit_reads_the_gateway_policies_and_fails_open_locally() -> None:
    registry = CollectorRegistry()
    config = rate_limit.RateLimitConfig(redis_url=DEAD, timeout_seconds=0.2)
    limiter = rate_limit.build(config, _context(registry))
    await limiter.start()
    try:
        stops = [await limiter.on_first_message(_call(), BODY) for _ in range(3)]
        other = await limiter.on_first_message(_call(Principal()), BODY)
    finally:
        await limiter.stop()

    assert stops[:2] == [None, None]
    assert stops[2] is not None and stops[2].code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert other is None  # an anonymous caller has no rules
    assert registry.get_sample_value("llmgw_gateway_rate_limit_fail_open_total") == 3
    assert registry.get_sample_value(
        "llmgw_gateway_rate_limit_decisions_total",
        {"decision": "limited", "reason": "RATE_LIMITED_REQUESTS"},
    )


async def test_budget_reads_the_gateway_policies_and_fails_closed() -> None:
    registry = CollectorRegistry()
    config = budget.BudgetConfig(redis_url=DEAD, timeout_seconds=0.2, on_redis_error="fail_closed")
    checker = budget.build(config, _context(registry))
    await checker.start()
    try:
        call = _call()
        assert await checker.on_request(call) is None  # decided on the first message
        stop = await checker.on_first_message(call, BODY)
        assert await checker.on_request(_call(Principal())) is None
    finally:
        await checker.stop()

    assert stop is not None and stop.code is grpc.StatusCode.UNAVAILABLE
    assert registry.get_sample_value(
        "llmgw_gateway_budget_decisions_total", {"decision": "unavailable"}
    )
