"""Limits created through the admin API apply to calls, with authentication in front."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc import aio

from gateway.settings import FilterSettings
from llmgw.admin.v1 import admin_pb2 as pb
from llmgw.common.v1 import common_pb2
from services.kernel.identity import API_KEY_ACTOR, Principal
from services.kernel.spend import SpendLedger, SpendSubject, SubjectKind
from tests.integration.gateway.auth.support import (
    SECURE_FILTERS,
    SecureGateway,
    admin_key,
    bearer,
    completion,
    secure_gateway,
)
from tests.integration.gateway.limits.helpers import reason_of
from tests.unit.gateway.raw_upstream import RawReplica

pytestmark = pytest.mark.integration


@pytest.fixture
async def upstream() -> AsyncIterator[RawReplica]:
    replica = RawReplica("a")
    await replica.start()
    yield replica
    await replica.stop()


async def _outcome(gateway: SecureGateway, secret: str) -> str:
    """``OK`` or the refusal reason of one call with ``secret``."""
    try:
        await gateway.complete()(completion(), metadata=bearer(secret), timeout=5)
    except aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
        return reason_of(error)
    return "OK"


async def _key(gateway: SecureGateway, auth: Any) -> tuple[str, str]:
    created = await gateway.admin.CreateApiKey(
        pb.CreateApiKeyRequest(
            api_key=pb.ApiKey(project_id="default", scopes=[pb.API_KEY_SCOPE_INFERENCE])
        ),
        metadata=auth,
    )
    return created.api_key.id, created.secret


async def _until_cached(gateway: SecureGateway, key_id: str, budgets: bool = False) -> None:
    principal = Principal(API_KEY_ACTOR, key_id, "default")
    cache = gateway.security.cache
    deadline = time.monotonic() + 10
    while not (cache.budgets(principal) if budgets else cache.rate_limits(principal)):
        assert time.monotonic() < deadline, "the policy never reached the gateway"
        await asyncio.sleep(0.02)


async def test_policies_from_the_admin_api_limit_calls(
    database_url: str, upstream: RawReplica, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    namespace = f"{redis_prefix}llmgw"
    redis_config = {"redis_url": redis_url, "namespace": namespace}
    filters = (
        *SECURE_FILTERS,
        FilterSettings(name="rate_limit", config=redis_config),
        FilterSettings(name="budget", config=redis_config),
    )
    key_file = tmp_path / "admin.key"
    async with secure_gateway(
        database_url, [upstream.address], key_file, filters=filters, spend_namespace=namespace
    ) as gateway:
        auth = bearer(admin_key(key_file))
        limited_id, limited = await _key(gateway, auth)
        await gateway.admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(
                policy=pb.RateLimitPolicy(
                    subject=pb.PolicySubject(api_key_id=limited_id), requests_per_minute=2
                )
            ),
            metadata=auth,
        )
        budgeted_id, budgeted = await _key(gateway, auth)
        await gateway.admin.CreateBudget(
            pb.CreateBudgetRequest(
                budget=pb.Budget(
                    subject=pb.PolicySubject(api_key_id=budgeted_id),
                    amount=common_pb2.Money(currency_code="USD", amount_nanos=1000),
                    period=pb.BUDGET_PERIOD_DAY,
                    enforcement=pb.BUDGET_ENFORCEMENT_BLOCK,
                )
            ),
            metadata=auth,
        )
        await _until_cached(gateway, limited_id)
        await _until_cached(gateway, budgeted_id, budgets=True)

        assert [await _outcome(gateway, limited) for _ in range(3)] == [
            "OK",
            "OK",
            "RATE_LIMITED_REQUESTS",
        ]

        assert await _outcome(gateway, budgeted) == "OK"
        client = aioredis.Redis.from_url(redis_url)
        try:
            ledger = SpendLedger(client, namespace=namespace)
            subject = SpendSubject(SubjectKind.API_KEY, budgeted_id)
            await ledger.record("usage-1", "USD", [subject], 1000, datetime.now(UTC))
        finally:
            await client.aclose()
        assert await _outcome(gateway, budgeted) == "BUDGET_EXCEEDED"
