"""The ``rate_limit`` filter: requests, tokens and concurrent calls per key and project.

The caller's rules come from the gateway's policy source (the admin API), or from
the filter's own ``rules`` when the config lists any (see
:mod:`gateway.limits.rules`). Every rule that applies to the call's model counts it;
the check of all of them is one Lua script, one Redis round trip, shared exactly by
every gateway replica (see :mod:`gateway.limits.gcra`).

Calls of methods whose requests name a model are checked on their first message,
which also gives the token reservation (:mod:`gateway.limits.estimate`), and every
later request of a ``Chat`` stream is charged too; other calls are checked on
arrival and reserve no tokens. At the end of a call the reservation
is corrected by the usage the upstream reports in its trailers (or given back
when the call never reached an upstream). Corrections are summed per limit and
written together every ``correction_interval_seconds`` (one script for all the
calls that ended meanwhile); ``stop`` writes what is left.

Refusals are RESOURCE_EXHAUSTED with RetryInfo and reason ``RATE_LIMITED_REQUESTS``,
``RATE_LIMITED_TOKENS`` or ``RATE_LIMITED_CONCURRENCY``. While Redis is unreachable
the filter fails open (an in-process limiter with the same rules) or closed
(UNAVAILABLE, reason ``RATE_LIMIT_UNAVAILABLE``), as configured. The in-process
limiter counts one replica's calls only: ``local_share`` (e.g. 1/3 with three
replicas) keeps the replicas' total near the limit while Redis is down.

Config::

    - name: rate_limit
      config:
        redis_url: redis://redis:6379/0
        on_redis_error: fail_open        # or fail_closed
        local_share: 0.34                # of each limit per replica while failing open
        default_max_output_tokens: 1024
        rules: [...]                     # optional; see gateway.limits.rules

Metrics: ``llmgw_gateway_rate_limit_decisions_total`` (by decision and reason),
``llmgw_gateway_rate_limit_redis_errors_total``,
``llmgw_gateway_rate_limit_fail_open_total`` (calls decided by the local limiter).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import Field, field_validator

from gateway.filters.base import (
    Call,
    CallOutcome,
    FilterContext,
    FilterPlugin,
    GatewayFilter,
    Stop,
)
from gateway.limits.estimate import TokenEstimator
from gateway.limits.gcra import (
    Charge,
    Decision,
    LeaseCharge,
    Limiter,
    LimitKind,
    LocalLimiter,
    RateCharge,
    RedisLimiter,
    rate_key,
)
from gateway.limits.redis_access import (
    REDIS_ERRORS,
    BackgroundWrites,
    OnRedisError,
    RedisLimitsConfig,
    RedisLink,
)
from gateway.limits.rules import RateLimitRuleConfig, StaticPolicies
from gateway.model_field import ModelFieldReader
from gateway.policies import PolicySource, RateLimitRule
from services.kernel.errors import ResourceExhausted, Unavailable

REASONS = {
    LimitKind.REQUESTS: "RATE_LIMITED_REQUESTS",
    LimitKind.TOKENS: "RATE_LIMITED_TOKENS",
    LimitKind.CONCURRENCY: "RATE_LIMITED_CONCURRENCY",
}
"""The ``ErrorInfo.reason`` of a refusal, by the limit that refused."""
UNAVAILABLE_REASON = "RATE_LIMIT_UNAVAILABLE"


class RateLimitConfig(RedisLimitsConfig):
    """Config of the rate-limit filter; see the module docstring."""

    rules: tuple[RateLimitRuleConfig, ...] = ()
    chars_per_token: float = Field(default=4.0, gt=0)
    default_max_output_tokens: int = Field(default=1024, ge=0)
    lease_ttl_seconds: float = Field(default=30.0, gt=0)
    correction_interval_seconds: float = Field(default=0.05, gt=0)
    local_share: float = Field(default=1.0, gt=0, le=1)
    """The share of each limit one replica grants on its own while failing open."""
    input_tokens_trailer: str = "llmgw-usage-input-tokens"
    output_tokens_trailer: str = "llmgw-usage-output-tokens"

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: tuple[RateLimitRuleConfig, ...]) -> tuple[RateLimitRuleConfig, ...]:
        """Rule ids name the counters in Redis: two rules with one id would share them."""
        ids = [rule.id for rule in rules]
        repeated = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if repeated:
            raise ValueError(f"rule ids must be unique; repeated: {repeated}")
        return rules


@dataclass(slots=True)
class _Taken:
    """What a call holds until it ends."""

    limiter: Limiter
    tokens: tuple[RateCharge, ...]
    leases: tuple[LeaseCharge, ...]
    lease_id: str
    reserved_tokens: int


class RateLimit(GatewayFilter):
    """Checks every call against its caller's rate-limit rules (see the module)."""

    def __init__(self, config: RateLimitConfig, policies: PolicySource, context: FilterContext):
        self._config = config
        self._policies = policies
        self._models = ModelFieldReader()
        self._estimator = TokenEstimator(
            chars_per_token=config.chars_per_token,
            default_max_output_tokens=config.default_max_output_tokens,
        )
        self._link = RedisLink(config, "llmgw-gateway-rate-limit")
        self._redis: RedisLimiter | None = None
        self._local = LocalLimiter()
        self._writes = BackgroundWrites()
        self._taken: dict[int, _Taken] = {}
        self._renewing: asyncio.Task[None] | None = None
        self._corrections: dict[str, tuple[RateCharge, int]] = {}
        self._correcting: asyncio.Task[None] | None = None
        registry = context.registry
        self._decisions = Counter(
            "llmgw_gateway_rate_limit_decisions_total",
            "Rate-limit checks, by decision (allowed, limited, unavailable) and reason.",
            ("decision", "reason"),
            registry=registry,
        )
        self._redis_errors = Counter(
            "llmgw_gateway_rate_limit_redis_errors_total",
            "Rate-limit checks and corrections that failed because Redis did not answer.",
            registry=registry,
        )
        self._fail_open = Counter(
            "llmgw_gateway_rate_limit_fail_open_total",
            "Calls decided by the in-process limiter while Redis was unreachable.",
            registry=registry,
        )
        self._allowed = self._decisions.labels("allowed", "")

    def reads_first_message_of(self, method: str) -> bool:
        """Methods whose requests name a model are checked on their first message."""
        return self._models.path(method) is not None

    def reads_every_message_of(self, method: str) -> bool:
        """Every request of a ``Chat`` stream is charged, not only the first."""
        return self._models.path(method) is not None

    async def on_stream_message(self, call: Call, message: bytes) -> Stop | None:
        """Charge a later request of a stream (a message naming a model) for one request
        and its token estimate; no usage comes back per request, so the estimate stands,
        and the stream's concurrency lease (taken by the first) covers it."""
        model = self._models.read(call.method, message)
        if not model:
            return None
        rules = self._rules(call, model)
        if not rules:
            return None
        tokens = self._estimator.estimate(call.method, message)
        return await self._check(call, model=model, tokens=tokens, rules=rules, hold=False)

    async def on_request(self, call: Call) -> Stop | None:
        """Check calls of methods without a model now (one request, no tokens)."""
        if self._models.path(call.method) is not None:
            return None
        return await self._check(call, model="", tokens=0)

    async def on_first_message(self, call: Call, message: bytes) -> Stop | None:
        """Check the call with its model and token estimate."""
        if not call.model:
            call.model = self._models.read(call.method, message)
        rules = self._rules(call, call.model)
        if not rules:
            return None
        tokens = self._estimator.estimate(call.method, message)
        return await self._check(call, model=call.model, tokens=tokens, rules=rules)

    def _rules(self, call: Call, model: str) -> tuple[RateLimitRule, ...]:
        return tuple(r for r in self._policies.rate_limits(call.principal) if r.applies_to(model))

    async def _check(
        self,
        call: Call,
        *,
        model: str,
        tokens: int,
        rules: tuple[RateLimitRule, ...] | None = None,
        hold: bool = True,
    ) -> Stop | None:
        """Charge the call; with ``hold`` it also takes leases and keeps what it took
        until the call ends (to correct tokens and free the leases)."""
        if rules is None:
            rules = self._rules(call, model)
        charge = self._charge(call, rules, tokens)
        if not hold:
            charge = Charge(charge.rates, ())
        if not charge:
            return None
        lease_id = uuid.uuid4().hex if charge.leases else ""
        redis_limiter = self._limiter()
        limiter: Limiter = self._local
        decision: Decision | None = None
        if redis_limiter is not None:
            limiter = redis_limiter
            try:
                decision = await redis_limiter.acquire(charge, lease_id)
            except REDIS_ERRORS:
                self._redis_errors.inc()
                self._link.failed()
        if decision is None:
            if self._config.on_redis_error is OnRedisError.FAIL_CLOSED:
                self._decisions.labels("unavailable", UNAVAILABLE_REASON).inc()
                return Stop.of(
                    Unavailable(
                        "rate limits cannot be checked right now",
                        reason=UNAVAILABLE_REASON,
                        retry_after_seconds=self._config.retry_after_seconds,
                    )
                )
            self._fail_open.inc()
            limiter = self._local
            charge = charge.scaled(self._config.local_share)
            decision = await limiter.acquire(charge, lease_id)
        if not decision.allowed:
            return self._refuse(decision)
        self._allowed.inc()
        token_charges = tuple(r for r in charge.rates if r.kind is LimitKind.TOKENS)
        if hold and (token_charges or charge.leases):
            self._taken[id(call)] = _Taken(limiter, token_charges, charge.leases, lease_id, tokens)
        return None

    def _charge(self, call: Call, rules: tuple[RateLimitRule, ...], tokens: int) -> Charge:
        principal = call.principal
        tag = principal.project_id or principal.actor_id
        namespace = self._config.namespace
        rates: list[RateCharge] = []
        leases: list[LeaseCharge] = []
        for rule in rules:
            if rule.requests_per_minute:
                key = rate_key(namespace, tag, rule.id, LimitKind.REQUESTS)
                rates.append(
                    RateCharge(key, LimitKind.REQUESTS, rule.id, rule.requests_per_minute, 1)
                )
            if rule.tokens_per_minute and tokens:
                key = rate_key(namespace, tag, rule.id, LimitKind.TOKENS)
                rates.append(
                    RateCharge(key, LimitKind.TOKENS, rule.id, rule.tokens_per_minute, tokens)
                )
            if rule.max_concurrent_requests:
                key = rate_key(namespace, tag, rule.id, LimitKind.CONCURRENCY)
                leases.append(LeaseCharge(key, rule.id, rule.max_concurrent_requests))
        return Charge(tuple(rates), tuple(leases))

    def _limiter(self) -> RedisLimiter | None:
        client = self._link.client
        if client is None:
            return None
        if self._redis is None:
            self._redis = RedisLimiter(client, lease_ttl_seconds=self._config.lease_ttl_seconds)
        return self._redis

    def _refuse(self, decision: Decision) -> Stop:
        assert decision.kind is not None
        reason = REASONS[decision.kind]
        self._decisions.labels("limited", reason).inc()
        what = (
            f"the request needs more {decision.kind.value} than rule {decision.rule_id!r} "
            "allows per minute"
            if decision.larger_than_limit
            else f"too many {decision.kind.value} for rule {decision.rule_id!r}"
        )
        return Stop.of(
            ResourceExhausted(
                f"rate limit exceeded: {what}",
                reason=reason,
                retry_after_seconds=decision.retry_after_seconds,
                metadata={"rule_id": decision.rule_id},
            )
        )

    def on_call_end(self, call: Call, outcome: CallOutcome) -> None:
        """Correct the token reservation and free the leases, in the background."""
        taken = self._taken.pop(id(call), None)
        if taken is None:
            return
        delta = self._used_tokens(outcome, taken.reserved_tokens) - taken.reserved_tokens
        if taken.tokens and delta:
            if taken.limiter is self._redis:
                for charge in taken.tokens:
                    pending = self._corrections.get(charge.key)
                    self._corrections[charge.key] = (charge, delta + (pending[1] if pending else 0))
            else:
                corrections = [(charge, delta) for charge in taken.tokens]
                self._writes.spawn(self._write(taken.limiter.adjust(corrections)))
        if taken.leases:
            self._writes.spawn(self._write(taken.limiter.release(taken.leases, taken.lease_id)))

    def _used_tokens(self, outcome: CallOutcome, reserved: int) -> int:
        """Tokens the call used: the upstream's report, none if it never ran, else the estimate."""
        reported = [
            _integer(outcome.trailer(self._config.input_tokens_trailer)),
            _integer(outcome.trailer(self._config.output_tokens_trailer)),
        ]
        if any(value is not None for value in reported):
            return sum(value or 0 for value in reported)
        if not outcome.attempts:
            return 0
        return reserved

    async def _write(self, write: Awaitable[None]) -> None:
        try:
            await write
        except REDIS_ERRORS:
            self._redis_errors.inc()

    async def start(self) -> None:
        """Open the Redis client (or keep retrying it) and renew held leases."""
        await self._link.start()
        self._renewing = asyncio.create_task(self._renew_leases())
        self._correcting = asyncio.create_task(self._write_corrections())

    async def _write_corrections(self) -> None:
        while True:
            await asyncio.sleep(self._config.correction_interval_seconds)
            await self._flush_corrections()

    async def _flush_corrections(self) -> None:
        if self._corrections and self._redis is not None:
            corrections, self._corrections = list(self._corrections.values()), {}
            await self._write(self._redis.adjust(corrections))

    async def _renew_leases(self) -> None:
        period = self._config.lease_ttl_seconds / 3
        while True:
            await asyncio.sleep(period)
            held = [
                (lease, taken.lease_id)
                for taken in self._taken.values()
                if taken.limiter is self._redis
                for lease in taken.leases
            ]
            if held and self._redis is not None:
                try:
                    await self._redis.renew(held)
                except REDIS_ERRORS:
                    self._redis_errors.inc()

    async def stop(self) -> None:
        """Finish the pending corrections, then close the client."""
        for task in (self._renewing, self._correcting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._flush_corrections()
        await self._writes.drain()
        await self._link.stop()


def _integer(value: str | bytes | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def build(config: RateLimitConfig, context: FilterContext) -> RateLimit:
    """The rate-limit filter: its own ``rules`` when configured, else the gateway's policies."""
    policies: PolicySource = StaticPolicies.of(config.rules) if config.rules else context.policies
    return RateLimit(config, policies, context)


plugin = FilterPlugin(config_model=RateLimitConfig, build=build)
