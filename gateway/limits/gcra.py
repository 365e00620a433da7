"""The rate limiter: GCRA counters and concurrency leases, in Redis or in process.

Each limit of a rule is one GCRA state (its *theoretical arrival time*, TAT, in ms):
a limit of ``L`` per minute has an emission interval ``T = 60000 / L`` ms and a
burst tolerance of one minute, so a quiet subject may spend its whole minute at
once and then ``L`` per minute. A charge of ``n`` (1 request, or ``n`` tokens) is
allowed when ``max(TAT, now) + n*T - 60000 <= now``; then the TAT moves to
``max(TAT, now) + n*T``. A refused charge changes nothing and waits
``max(TAT, now) + n*T - 60000 - now`` ms.

A :class:`Charge` holds every limit a call counts against; it is taken all or
nothing. :class:`RedisLimiter` does that in one Lua script (one round trip) with
the server's clock, so every gateway replica shares one exact count.
:class:`LocalLimiter` does the same in process (the fail-open fallback).

Concurrency limits are leases: a sorted set of lease ids scored by their expiry.
A gateway renews its leases while their calls run (:meth:`RedisLimiter.renew`),
so a lease of a gateway that died frees itself within ``lease_ttl``.

Key layout (``<tag>`` keeps one caller's keys in one Redis Cluster slot)::

    <namespace>:ratelimit:{<tag>}:<rule id>:<requests|tokens|concurrency>
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as redis

from services.kernel.cache import LuaScript

WINDOW_MS = 60_000.0
"""The period every per-minute limit is measured over."""
_SLACK_MS = 0.001
"""Rounding slack: ``T * L`` may exceed the window by a float ulp."""


class LimitKind(enum.Enum):
    """What a limit counts; names the reason of a refusal."""

    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"


@dataclass(frozen=True, slots=True)
class RateCharge:
    """``cost`` units against a limit of ``per_minute`` under ``key``."""

    key: str
    kind: LimitKind
    rule_id: str
    per_minute: int
    cost: int

    @property
    def interval_ms(self) -> float:
        """The GCRA emission interval of the limit."""
        return WINDOW_MS / self.per_minute


@dataclass(frozen=True, slots=True)
class LeaseCharge:
    """One lease of at most ``max_leases`` under ``key``."""

    key: str
    rule_id: str
    max_leases: int


@dataclass(frozen=True, slots=True)
class Charge:
    """Everything one call counts against, taken all or nothing."""

    rates: tuple[RateCharge, ...] = ()
    leases: tuple[LeaseCharge, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rates or self.leases)

    def scaled(self, share: float) -> Charge:
        """The same charge against ``share`` of each limit (at least 1)."""
        if share == 1.0:
            return self
        return Charge(
            tuple(
                RateCharge(r.key, r.kind, r.rule_id, max(1, int(r.per_minute * share)), r.cost)
                for r in self.rates
            ),
            tuple(
                LeaseCharge(lease.key, lease.rule_id, max(1, int(lease.max_leases * share)))
                for lease in self.leases
            ),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a charge: allowed, or which limit refused it and for how long."""

    allowed: bool
    kind: LimitKind | None = None
    rule_id: str = ""
    retry_after_seconds: float = 0.0
    larger_than_limit: bool = False
    """The charge alone is more than the refusing limit grants in a minute."""


ALLOWED = Decision(True)


def rate_key(namespace: str, tag: str, rule_id: str, kind: LimitKind) -> str:
    """The Redis key of one limit of one rule (see the module docstring)."""
    return f"{namespace}:ratelimit:{{{tag}}}:{rule_id}:{kind.value}"


class Limiter(Protocol):
    """Takes charges, corrects token charges and releases leases."""

    async def acquire(self, charge: Charge, lease_id: str) -> Decision:
        """Take ``charge`` whole (leases under ``lease_id``) or refuse it, changing nothing."""
        ...

    async def adjust(self, corrections: Sequence[tuple[RateCharge, int]]) -> None:
        """Add ``delta`` units (negative: give back) to each charge's limit."""
        ...

    async def release(self, leases: Sequence[LeaseCharge], lease_id: str) -> None:
        """Free the leases ``lease_id`` holds."""
        ...


# KEYS = rate states (n of them), then lease sets.
# ARGV[1] = n, ARGV[2] = lease id, ARGV[3] = lease ttl ms,
# ARGV[4..3+2n] = interval ms and cost of each rate key, then the max of each lease set.
# Reply: {1} allowed, or {0, index of the refusing key (1-based), wait ms}.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local rates = tonumber(ARGV[1])
local window = 60000
local tats = {}
local worst, worst_index = -1, 0
for i = 1, rates do
  local interval = tonumber(ARGV[2 + 2 * i])
  local cost = tonumber(ARGV[3 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local wait = new_tat - window - now
  if wait > 0.001 and wait > worst then worst, worst_index = wait, i end
  tats[i] = new_tat
end
if worst_index > 0 then
  return {0, worst_index, math.ceil(worst)}
end
local ttl = tonumber(ARGV[3])
for i = rates + 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + 2 * rates + (i - rates)]) then
    local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local wait = 1000
    if first[2] then wait = math.min(wait, tonumber(first[2]) - now) end
    return {0, i, math.ceil(wait)}
  end
end
for i = 1, rates do
  redis.call('SET', KEYS[i], string.format('%.17g', tats[i]), 'PX', math.ceil(tats[i] - now) + 1)
end
for i = rates + 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return {1}
"""

# KEYS = rate states; ARGV[i] = ms to move the TAT of KEYS[i] by (negative: give back).
_ADJUST = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + tonumber(ARGV[i])
  if new_tat > now then
    redis.call('SET', KEYS[i], string.format('%.17g', new_tat), 'PX', math.ceil(new_tat - now) + 1)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""

# KEYS = lease sets; ARGV[1] = lease ttl ms, ARGV[2..] = lease ids to renew (when held).
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
"""


def _acquire_reply(reply: Any) -> tuple[int, int, int]:
    values = [int(value) for value in reply]
    return values[0], values[1] if len(values) > 1 else 0, values[2] if len(values) > 2 else 0


class RedisLimiter:
    """The limiter shared by every replica: one Lua script per check (see the module)."""

    def __init__(self, client: redis.Redis, *, lease_ttl_seconds: float = 30.0) -> None:
        """Run on ``client``; a lease nobody renews frees itself after ``lease_ttl_seconds``."""
        self._client = client
        self._lease_ttl_ms = max(1, round(lease_ttl_seconds * 1000))
        self._acquire = LuaScript(client, _ACQUIRE, decode=_acquire_reply)
        self._adjust = LuaScript(client, _ADJUST, decode=int)
        self._renew = LuaScript(client, _RENEW, decode=int)

    async def acquire(self, charge: Charge, lease_id: str) -> Decision:
        """Take ``charge`` atomically on the server; raises a Redis error when unreachable."""
        keys = [rate.key for rate in charge.rates] + [lease.key for lease in charge.leases]
        args: list[str | int | float] = [len(charge.rates), lease_id, self._lease_ttl_ms]
        for rate in charge.rates:
            args += [repr(rate.interval_ms), rate.cost]
        args += [lease.max_leases for lease in charge.leases]
        allowed, index, wait_ms = await self._acquire(keys=keys, args=args)
        if allowed:
            return ALLOWED
        return _refusal(charge, index - 1, wait_ms / 1000)

    async def adjust(self, corrections: Sequence[tuple[RateCharge, int]]) -> None:
        """Move each limit by its delta in one script; raises a Redis error when unreachable."""
        wanted = [(rate, delta) for rate, delta in corrections if delta]
        if wanted:
            await self._adjust(
                keys=[rate.key for rate, _ in wanted],
                args=[repr(delta * rate.interval_ms) for rate, delta in wanted],
            )

    async def release(self, leases: Sequence[LeaseCharge], lease_id: str) -> None:
        """Remove ``lease_id`` from each lease set (one pipelined round trip)."""
        if not leases:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for lease in leases:
                pipe.zrem(lease.key, lease_id)
            await pipe.execute()

    async def renew(self, held: Sequence[tuple[LeaseCharge, str]]) -> None:
        """Push back the expiry of every ``(lease, lease id)`` still held, in one script."""
        if held:
            await self._renew(
                keys=[lease.key for lease, _ in held],
                args=[self._lease_ttl_ms, *(lease_id for _, lease_id in held)],
            )


def _refusal(charge: Charge, index: int, wait_seconds: float) -> Decision:
    if index < len(charge.rates):
        rate = charge.rates[index]
        if rate.cost > rate.per_minute:  # never fits; a window is the honest hint
            return Decision(
                False, rate.kind, rate.rule_id, WINDOW_MS / 1000, larger_than_limit=True
            )
        return Decision(False, rate.kind, rate.rule_id, min(wait_seconds, WINDOW_MS / 1000))
    lease = charge.leases[index - len(charge.rates)]
    return Decision(False, LimitKind.CONCURRENCY, lease.rule_id, max(wait_seconds, 0.0))


@dataclass
class LocalLimiter:
    """The same limits in this process only (when Redis is unreachable).

    Keys are forgotten once their state is back to empty, so memory stays bounded by
    the callers active in the last minute.
    """

    clock: Callable[[], float] = time.monotonic
    _tats: dict[str, float] = field(default_factory=dict)
    _leases: dict[str, set[str]] = field(default_factory=dict)

    async def acquire(self, charge: Charge, lease_id: str) -> Decision:
        """Take ``charge`` whole or refuse it; never raises."""
        now = self.clock() * 1000
        self._forget_before(now)
        tats: list[float] = []
        worst, worst_index = -1.0, -1
        for index, rate in enumerate(charge.rates):
            new_tat = max(self._tats.get(rate.key, now), now) + rate.cost * rate.interval_ms
            wait = new_tat - WINDOW_MS - now
            if wait > _SLACK_MS and wait > worst:
                worst, worst_index = wait, index
            tats.append(new_tat)
        if worst_index >= 0:
            return _refusal(charge, worst_index, worst / 1000)
        for index, lease in enumerate(charge.leases):
            if len(self._leases.get(lease.key, ())) >= lease.max_leases:
                return _refusal(charge, len(charge.rates) + index, 1.0)
        for rate, new_tat in zip(charge.rates, tats, strict=True):
            self._tats[rate.key] = new_tat
        for lease in charge.leases:
            self._leases.setdefault(lease.key, set()).add(lease_id)
        return ALLOWED

    async def adjust(self, corrections: Sequence[tuple[RateCharge, int]]) -> None:
        """Move each limit by its delta."""
        now = self.clock() * 1000
        for rate, delta in corrections:
            new_tat = max(self._tats.get(rate.key, now), now) + delta * rate.interval_ms
            if new_tat > now:
                self._tats[rate.key] = new_tat
            else:
                self._tats.pop(rate.key, None)

    async def release(self, leases: Sequence[LeaseCharge], lease_id: str) -> None:
        """Free the leases ``lease_id`` holds."""
        for lease in leases:
            held = self._leases.get(lease.key)
            if held is not None:
                held.discard(lease_id)
                if not held:
                    del self._leases[lease.key]

    def _forget_before(self, now: float) -> None:
        if len(self._tats) > 4096:
            for key in [key for key, tat in self._tats.items() if tat <= now]:
                del self._tats[key]
