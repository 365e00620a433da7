"""The Redis limiter's scripts on a real Redis: leases, renewals, corrections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.limits.gcra import Charge, LeaseCharge, LimitKind, RateCharge, RedisLimiter

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def test_a_lease_nobody_renews_frees_itself(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    lease = LeaseCharge(f"{redis_prefix}c", "conc", 1)
    dead_gateway = RedisLimiter(client, lease_ttl_seconds=0.2)
    live_gateway = RedisLimiter(client, lease_ttl_seconds=30)

    assert (await dead_gateway.acquire(Charge(leases=(lease,)), "held")).allowed
    refused = await live_gateway.acquire(Charge(leases=(lease,)), "next")
    assert refused.kind is LimitKind.CONCURRENCY
    assert 0 < refused.retry_after_seconds <= 1

    deadline = time.monotonic() + 5
    while not (await live_gateway.acquire(Charge(leases=(lease,)), "next")).allowed:
        assert time.monotonic() < deadline, "the dead gateway's lease never expired"
        await asyncio.sleep(0.05)


async def test_renewing_pushes_a_held_lease_back_and_skips_released_ones(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    lease = LeaseCharge(f"{redis_prefix}c", "conc", 5)
    limiter = RedisLimiter(client, lease_ttl_seconds=10)
    await limiter.acquire(Charge(leases=(lease,)), "a")
    before = await client.zscore(lease.key, "a")

    await limiter.renew([(lease, "a"), (lease, "gone")])

    after = await client.zscore(lease.key, "a")
    assert before is not None and after is not None and after >= before
    assert await client.zscore(lease.key, "gone") is None
    await limiter.release([lease], "a")
    assert await client.zcard(lease.key) == 0


async def test_a_full_refund_empties_the_limit(client: aioredis.Redis, redis_prefix: str) -> None:
    tokens = RateCharge(f"{redis_prefix}t", LimitKind.TOKENS, "tpm", 1000, 600)
    limiter = RedisLimiter(client)

    assert (await limiter.acquire(Charge((tokens,)), "")).allowed
    assert not (await limiter.acquire(Charge((tokens,)), "")).allowed
    await limiter.adjust([(tokens, -600)])

    assert await client.exists(tokens.key) == 0
    assert (await limiter.acquire(Charge((tokens,)), "")).allowed


async def test_a_charge_larger_than_its_limit_is_refused_with_a_minute_to_wait(
    client: aioredis.Redis, redis_prefix: str
) -> None:
    tokens = RateCharge(f"{redis_prefix}t", LimitKind.TOKENS, "tpm", 100, 101)
    refused = await RedisLimiter(client).acquire(Charge((tokens,)), "")
    assert refused.kind is LimitKind.TOKENS
    assert refused.retry_after_seconds == 60
    assert refused.larger_than_limit
    assert await client.exists(tokens.key) == 0
