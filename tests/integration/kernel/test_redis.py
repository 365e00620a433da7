"""The Redis client and Lua scripts on a real Redis (or Valkey)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from services.kernel.cache import LuaScript, RedisConfig, connect_redis, is_healthy
from tests.harness.process import free_port

pytestmark = pytest.mark.integration

# Adds ARGV[2] to KEYS[1] only when it currently equals ARGV[1]; returns the
# new value, or -1 (and changes nothing) when the expectation does not hold.
COMPARE_AND_INCREMENT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then
  return -1
end
return redis.call('INCRBY', KEYS[1], ARGV[2])
"""

# Takes one unit while fewer than ARGV[1] are taken; 1 when taken, 0 when full.
TAKE_ONE = """
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
return 1
"""


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = await connect_redis(RedisConfig(redis_url))
    yield client
    await client.aclose()


async def test_connect_and_health(client: redis.Redis) -> None:
    assert await is_healthy(client)


async def test_unreachable_server_fails_fast_and_reports_unhealthy() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisConnectionError):
        await connect_redis(RedisConfig(url, connect_timeout_seconds=0.5))
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        assert not await is_healthy(client)
    finally:
        await client.aclose()


async def test_compare_and_increment(client: redis.Redis, redis_prefix: str) -> None:
    script = LuaScript(client, COMPARE_AND_INCREMENT, decode=int)
    key = f"{redis_prefix}counter"

    assert await script([key], [0, 5]) == 5
    assert await script([key], [0, 5]) == -1
    assert await script([key], [5, 2]) == 7
    assert await client.get(key) == b"7"


async def test_script_survives_script_flush(client: redis.Redis, redis_prefix: str) -> None:
    script = LuaScript(client, COMPARE_AND_INCREMENT, decode=int)
    key = f"{redis_prefix}counter"
    assert await script([key], [0, 1]) == 1
    assert (await client.script_exists(script.sha)) == [True]

    await client.script_flush()
    assert (await client.script_exists(script.sha)) == [False]

    assert await script([key], [1, 1]) == 2
    assert (await client.script_exists(script.sha)) == [True]


async def test_script_is_atomic_under_concurrency(client: redis.Redis, redis_prefix: str) -> None:
    script = LuaScript(client, TAKE_ONE, decode=int)
    key = f"{redis_prefix}slots"

    results = await asyncio.gather(*(script([key], [30]) for _ in range(100)))

    assert sum(results) == 30
    assert await client.get(key) == b"30"


async def test_script_errors_surface(client: redis.Redis, redis_prefix: str) -> None:
    script = LuaScript(client, "return redis.call('NOPE')", decode=lambda reply: reply)
    with pytest.raises(ResponseError):
        await script([f"{redis_prefix}x"])
