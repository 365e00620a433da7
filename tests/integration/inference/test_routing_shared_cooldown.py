"""Deployment cooldowns shared by two routers through one real Redis."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from llmgw.models.v1 import models_pb2
from provider_adapters.errors import ProviderServerError
from services.inference.engine import CallContext
from services.inference.routing import Router, RoutingOptions
from services.kernel.errors import Unavailable
from tests.unit.inference.routing_support import (
    RecordingClock,
    ScriptedAdapter,
    adapters,
    request,
    snapshot,
    trip_cooldown,
    version,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def _table() -> models_pb2.RegistrySnapshot:
    return snapshot(
        versions=[version("flaky", options={"fail_first": "-1"}), version("steady")],
        groups=[
            {
                "name": "g",
                "deployments": [
                    {"id": "flaky", "model_ref": "flaky", "priority": 0},
                    {"id": "steady", "model_ref": "steady", "priority": 1},
                ],
            }
        ],
    )


async def test_cooldown_is_shared_between_replicas(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    options = RoutingOptions(
        max_retries=0,
        cooldown_failures=2,
        cooldown_seconds=30,
        health_cache_seconds=0,
        redis_key_prefix=redis_prefix,
    )
    clock = RecordingClock()
    one = await Router.create(
        snapshot(versions=[version("flaky", options={"fail_first": "-1"})]),
        options,
        redis_client,
        adapters=adapters(),
        clock=clock,
    )
    two = await Router.create(
        _table(), options, redis_client, adapters=adapters(), clock=clock, rng=random.Random(1)
    )
    try:
        await trip_cooldown(one, "flaky", failures=2)

        # The other replica never called "flaky" and still skips it.
        result = await two.complete(request("g"), CallContext("r"))
        assert (result.served_by.deployment_id, result.served_by.attempt_count) == ("steady", 1)
        flaky = two.table.targets["flaky/versions/1"].adapter
        assert isinstance(flaky, ScriptedAdapter)
        assert flaky.calls == []

        ttl = await redis_client.pttl(f"{redis_prefix}{{flaky/versions/1}}:cooldown")
        assert 0 < ttl <= 30_000
    finally:
        await one.aclose()
        await two.aclose()


async def test_failures_from_both_replicas_add_up_and_success_resets(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    options = RoutingOptions(
        max_retries=0,
        cooldown_failures=3,
        health_cache_seconds=0,
        redis_key_prefix=redis_prefix,
    )
    flaky_then_fine = snapshot(versions=[version("bot", options={"fail_first": "1"})])
    one = await Router.create(flaky_then_fine, options, redis_client, adapters=adapters())
    two = await Router.create(flaky_then_fine, options, redis_client, adapters=adapters())
    failures = f"{redis_prefix}{{bot/versions/1}}:failures"
    try:
        for router in (one, two):
            with pytest.raises(ProviderServerError):
                await router.complete(request("bot"), CallContext("r"))
        assert await redis_client.get(failures) == b"2"
        await one.complete(request("bot"), CallContext("r"))
        assert await redis_client.get(failures) is None
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_outage_falls_back_to_in_process_health(redis_prefix: str) -> None:
    broken = aioredis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    options = RoutingOptions(max_retries=0, cooldown_failures=1, redis_key_prefix=redis_prefix)
    router = await Router.create(
        snapshot(versions=[version("bot", options={"fail_first": "1"})]),
        options,
        broken,
        adapters=adapters(),
    )
    try:
        with pytest.raises(ProviderServerError):
            await router.complete(request("bot"), CallContext("r"))
        with pytest.raises(Unavailable):
            await router.complete(request("bot"), CallContext("r"))
    finally:
        await router.aclose()
        await broken.aclose()
