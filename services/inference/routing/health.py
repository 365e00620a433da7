"""Per-deployment cooldown (a circuit breaker), shared across replicas through Redis.

After ``cooldown_failures`` consecutive failures of a deployment (counted by every
replica together, within ``failure_window_seconds``) the deployment is skipped for
``cooldown_seconds``; a success resets the count. In Redis each deployment has two
keys in one hash slot: a failure counter and a cooldown flag that expires by
itself. A failure is one Lua call (count, and trip the breaker at the threshold);
reading the state of a request's deployments is one pipelined round trip, and
each replica trusts what it read for ``health_cache_seconds``. Without Redis the
same rules run in process; so they do while Redis fails, and a replica that met a
Redis error leaves Redis alone for ``redis_retry_seconds`` instead of paying for
the failure on every request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from services.inference.routing.clock import Clock
from services.inference.routing.options import RoutingOptions
from services.kernel.cache import LuaScript

_log = logging.getLogger("llmgw.inference.routing")

_RECORD_FAILURE = """
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return {failures, 1}
end
return {failures, 0}
"""


class HealthBoard(Protocol):
    """Which deployments are cooling down, and what happened to each call."""

    async def cooling(self, keys: Sequence[str]) -> frozenset[str]:
        """The subset of ``keys`` in cooldown now."""
        ...

    async def failure(self, key: str) -> bool:
        """Count a failure of ``key``; True when this put it in cooldown."""
        ...

    async def success(self, key: str) -> None:
        """Reset the consecutive-failure count of ``key``."""
        ...


@dataclass(slots=True)
class _Local:
    failures: int = 0
    last_failure: float = 0.0
    cooling_until: float = 0.0


class LocalHealth:
    """The cooldown rules in process, for one replica."""

    def __init__(self, options: RoutingOptions, clock: Clock) -> None:
        self._options = options
        self._clock = clock
        self._by_key: dict[str, _Local] = {}

    async def cooling(self, keys: Sequence[str]) -> frozenset[str]:
        now = self._clock.monotonic()
        return frozenset(
            k for k in keys if (e := self._by_key.get(k)) is not None and e.cooling_until > now
        )

    async def failure(self, key: str) -> bool:
        now = self._clock.monotonic()
        entry = self._by_key.setdefault(key, _Local())
        if now - entry.last_failure > self._options.failure_window_seconds:
            entry.failures = 0
        entry.failures += 1
        entry.last_failure = now
        if entry.failures >= self._options.cooldown_failures:
            entry.failures = 0
            entry.cooling_until = now + self._options.cooldown_seconds
            return True
        return False

    async def success(self, key: str) -> None:
        entry = self._by_key.get(key)
        if entry is not None:
            entry.failures = 0


@dataclass(slots=True)
class _Known:
    read_at: float
    cooling_until: float
    failures: int


class RedisHealth:
    """The cooldown rules in Redis, shared by every replica using the same prefix."""

    def __init__(self, client: redis.Redis, options: RoutingOptions, clock: Clock) -> None:
        self._client = client
        self._options = options
        self._clock = clock
        self._fallback = LocalHealth(options, clock)
        self._known: dict[str, _Known] = {}
        self._down_until = 0.0
        self._record = LuaScript(client, _RECORD_FAILURE, decode=_pair)

    def _keys(self, key: str) -> tuple[str, str]:
        tag = f"{self._options.redis_key_prefix}{{{key}}}"
        return f"{tag}:failures", f"{tag}:cooldown"

    def _usable(self, now: float) -> bool:
        return now >= self._down_until

    def _failed(self, exc: Exception) -> None:
        _log.warning("deployment health unavailable from redis: %s", exc)
        self._down_until = self._clock.monotonic() + self._options.redis_retry_seconds

    async def cooling(self, keys: Sequence[str]) -> frozenset[str]:
        now = self._clock.monotonic()
        if not self._usable(now):
            return await self._fallback.cooling(keys)
        fresh = self._options.health_cache_seconds
        stale = [k for k in keys if (e := self._known.get(k)) is None or now - e.read_at >= fresh]
        if stale:
            try:
                await self._refresh(stale, now)
            except (RedisError, OSError) as exc:
                self._failed(exc)
                return await self._fallback.cooling(keys)
        return frozenset(k for k in keys if self._known[k].cooling_until > now) | (
            await self._fallback.cooling(keys)
        )

    async def _refresh(self, keys: Sequence[str], now: float) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            failures, cooldown = self._keys(key)
            pipe.get(failures)
            pipe.pttl(cooldown)
        replies = await pipe.execute()
        for index, key in enumerate(keys):
            failures_raw, ttl_ms = replies[2 * index], replies[2 * index + 1]
            until = now + int(ttl_ms) / 1000 if int(ttl_ms) > 0 else 0.0
            self._known[key] = _Known(now, until, int(failures_raw or 0))

    async def failure(self, key: str) -> bool:
        if not self._usable(self._clock.monotonic()):
            return await self._fallback.failure(key)
        failures, cooldown = self._keys(key)
        try:
            count, tripped = await self._record(
                keys=(failures, cooldown),
                args=(
                    self._options.cooldown_failures,
                    round(self._options.failure_window_seconds * 1000),
                    round(self._options.cooldown_seconds * 1000),
                ),
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return await self._fallback.failure(key)
        now = self._clock.monotonic()
        until = now + self._options.cooldown_seconds if tripped else 0.0
        self._known[key] = _Known(now, until, 0 if tripped else count)
        return tripped

    async def success(self, key: str) -> None:
        await self._fallback.success(key)
        known = self._known.get(key)
        if known is None or known.failures == 0 or not self._usable(self._clock.monotonic()):
            return
        known.failures = 0
        try:
            await self._client.delete(self._keys(key)[0])
        except (RedisError, OSError) as exc:
            self._failed(exc)


def _pair(reply: Any) -> tuple[int, bool]:
    return int(reply[0]), bool(int(reply[1]))
