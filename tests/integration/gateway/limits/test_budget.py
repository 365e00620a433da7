"""The budget filter against a real Redis spend ledger, through real gateways."""

from __future__ import annotations

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
