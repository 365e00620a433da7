"""The budget filter against a real Redis spend ledger, through real gateways."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis

from services.kernel.spend import SpendLedger, SpendSubject, SubjectKind
from tests.integration.gateway.limits.helpers import (
    DEAD_REDIS,
    assert_refused,
    complete,
    metric,
    retry_delay_seconds,
    rich_status,
    start_limited,
)
from tests.unit.gateway.conftest import StartGateway, StartReplicas

BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


def _config(redis_url: str, prefix: str, *budgets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "redis_url": redis_url,
        "namespace": f"{prefix}llmgw",
        "budgets": list(budgets),
        **extra,
    }


async def _record(
    redis_url: str, prefix: str, event: str, nanos: int, *subjects: SpendSubject
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        ledger = SpendLedger(client, namespace=f"{prefix}llmgw")
        assert await ledger.record(event, "USD", subjects, nanos, datetime.now(UTC))
    finally:
        await client.aclose()


async def test_a_key_over_budget_is_refused_by_every_replica(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    budget = {"id": "k1-day", "key": "k1", "amount_nanos": 1_000, "period": "day"}
    config = _config(redis_url, redis_prefix, budget)
    gateways = [
        await start_limited(start_gateway, replica, tmp_path, budget=config) for _ in range(2)
    ]
    key = SpendSubject(SubjectKind.API_KEY, "k1")
    project = SpendSubject(SubjectKind.PROJECT, "p1")

    assert [await complete(g, "k1", "p1") for g in gateways] == [None, None]
    await _record(redis_url, redis_prefix, "e1", 999, key, project)
    assert [await complete(g, "k1", "p1") for g in gateways] == [None, None]

    await _record(redis_url, redis_prefix, "e2", 1, key, project)
    errors = [await complete(g, "k1", "p1") for g in gateways]
    for error in errors:
        assert_refused(error, grpc.StatusCode.RESOURCE_EXHAUSTED, BUDGET_EXCEEDED)
        assert error is not None
        assert "budget exceeded" in rich_status(error).message
        assert 0 < retry_delay_seconds(error) <= 86_400
    for gateway in gateways:
        assert metric(gateway, "llmgw_gateway_budget_decisions_total", decision="blocked") == 1
    # another key of the same project has its own budget (none here)
    assert await complete(gateways[0], "k2", "p1") is None


async def test_a_project_budget_counts_all_its_keys(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    budget = {"id": "p1-month", "project": "p1", "amount_nanos": 500}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, budget=_config(redis_url, redis_prefix, budget)
    )
    await _record(
        redis_url,
        redis_prefix,
        "e1",
        500,
        SpendSubject(SubjectKind.API_KEY, "k1"),
        SpendSubject(SubjectKind.PROJECT, "p1"),
    )

    error = await complete(gateway, "k2", "p1")
    assert_refused(error, grpc.StatusCode.RESOURCE_EXHAUSTED, BUDGET_EXCEEDED)
    assert replica.seen == []


async def test_alert_only_budgets_let_calls_pass_and_count_them(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    budget = {"id": "soft", "key": "k1", "amount_nanos": 10, "enforcement": "alert_only"}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, budget=_config(redis_url, redis_prefix, budget)
    )
    await _record(redis_url, redis_prefix, "e1", 11, SpendSubject(SubjectKind.API_KEY, "k1"))

    assert await complete(gateway, "k1") is None
    assert metric(gateway, "llmgw_gateway_budget_decisions_total", decision="alerted") == 1


async def test_unreachable_redis_fails_open_or_closed_as_configured(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    budget = {"id": "b", "key": "k1", "amount_nanos": 10}
    opened = await start_limited(
        start_gateway, replica, tmp_path, budget=_config(DEAD_REDIS, "x:", budget)
    )
    closed = await start_limited(
        start_gateway,
        replica,
        tmp_path,
        budget=_config(DEAD_REDIS, "x:", budget, on_redis_error="fail_closed"),
    )

    assert await complete(opened, "k1") is None
    assert metric(opened, "llmgw_gateway_budget_decisions_total", decision="fail_open") == 1
    error = await complete(closed, "k1")
    assert_refused(error, grpc.StatusCode.UNAVAILABLE, "BUDGET_UNAVAILABLE")


async def test_with_rate_limits_first_a_refusal_by_either_leaves_the_other_clean(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    namespace = {"redis_url": redis_url, "namespace": f"{redis_prefix}llmgw"}
    rule = {"id": "r", "key": "k1", "requests_per_minute": 2, "tokens_per_minute": 2000}
    limits = {
        **namespace,
        "rules": [rule],
        "default_max_output_tokens": 500,  # a call reserves ~510 tokens: 15 s of the limit
        "correction_interval_seconds": 0.01,
    }
    budgets = {**namespace, "budgets": [{"id": "b", "key": "k1", "amount_nanos": 10}]}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, rate_limit=limits, budget=budgets
    )
    tokens_key = f"{redis_prefix}llmgw:ratelimit:{{k1}}:r:tokens"

    assert await complete(gateway, "k1") is None
    await _record(redis_url, redis_prefix, "e1", 10, SpendSubject(SubjectKind.API_KEY, "k1"))
    over = await complete(gateway, "k1")
    assert_refused(over, grpc.StatusCode.RESOURCE_EXHAUSTED, BUDGET_EXCEEDED)
    limited = await complete(gateway, "k1")  # the budget never sees it
    assert_refused(limited, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")

    decisions = "llmgw_gateway_budget_decisions_total"
    assert metric(gateway, decisions, decision="allowed") == 1
    assert metric(gateway, decisions, decision="blocked") == 1
    assert len(replica.seen) == 1
    # the refused call's token reservation is given back: only the first call's usage stays
    client = aioredis.Redis.from_url(redis_url)
    try:
        for _ in range(200):
            stored = await client.get(tokens_key)
            seconds, micros = await client.time()
            assert stored is not None
            ahead_ms = float(stored) - (seconds * 1000 + micros / 1000)
            if ahead_ms < 100 * 30:  # under 100 tokens at 30 ms each
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the reservation of the refused call was never given back")
    finally:
        await client.aclose()
