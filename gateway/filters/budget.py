"""The ``budget`` filter: refuses calls of keys and projects that spent their budget.

Before each call the caller's budgets (from the gateway's policy source, or the
filter's own ``budgets`` when the config lists any; see :mod:`gateway.limits.rules`)
are compared with the spend ledger the usage pipeline keeps in Redis
(:class:`services.kernel.spend.SpendLedger`): one MGET per currency, read live, so a
key over budget is refused by every replica as soon as its spend is recorded.

A ``BLOCK`` budget that is used up ends the call with RESOURCE_EXHAUSTED, reason
``BUDGET_EXCEEDED``, and RetryInfo until the period ends; an ``ALERT_ONLY`` budget
lets the call pass and counts it.

The read starts when the call arrives; calls of methods naming a model (the
inference calls) are decided on their first message, so with ``budget`` placed
after ``rate_limit`` in the chain the spend read and the rate-limit check travel
to Redis together and cost one round trip of time, not two.

While Redis is unreachable the filter lets calls pass (``fail_open``) or ends them
with UNAVAILABLE, reason ``BUDGET_UNAVAILABLE`` (``fail_closed``).

Metrics: ``llmgw_gateway_budget_decisions_total`` (by decision: allowed, blocked,
alerted, unavailable, fail_open) and ``llmgw_gateway_budget_redis_errors_total``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from gateway.filters.base import (
    Call,
    CallOutcome,
    FilterContext,
    FilterPlugin,
    GatewayFilter,
    Stop,
)
from gateway.limits.redis_access import (
    REDIS_ERRORS,
    OnRedisError,
    RedisLimitsConfig,
    RedisLink,
)
from gateway.limits.rules import BudgetRuleConfig, StaticPolicies
from gateway.model_field import ModelFieldReader
from gateway.policies import BudgetEnforcement, BudgetRule, PolicySource
from services.kernel.errors import ResourceExhausted, Unavailable
from services.kernel.spend import SpendLedger, period_window

EXCEEDED_REASON = "BUDGET_EXCEEDED"
UNAVAILABLE_REASON = "BUDGET_UNAVAILABLE"


class BudgetConfig(RedisLimitsConfig):
    """Config of the budget filter; ``budgets`` replaces the gateway's policies when set."""

    budgets: tuple[BudgetRuleConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class _Read:
    """A spend read started on a call's arrival, awaited on its first message."""

    rules: Sequence[BudgetRule]
    now: datetime
    spent: asyncio.Future[list[int] | None]


class Budget(GatewayFilter):
    """Checks every call against its caller's budgets (see the module)."""

    def __init__(
        self,
        config: BudgetConfig,
        policies: PolicySource,
        context: FilterContext,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._config = config
        self._policies = policies
        self._clock = clock or _utc_now
        self._link = RedisLink(config, "llmgw-gateway-budget")
        self._ledger: SpendLedger | None = None
        self._models = ModelFieldReader()
        self._reads: dict[int, _Read] = {}
        self._decisions = Counter(
            "llmgw_gateway_budget_decisions_total",
            "Budget checks, by decision (allowed, blocked, alerted, unavailable, fail_open).",
            ("decision",),
            registry=context.registry,
        )
        self._redis_errors = Counter(
            "llmgw_gateway_budget_redis_errors_total",
            "Budget checks that failed because Redis did not answer.",
            registry=context.registry,
        )
        self._allowed = self._decisions.labels("allowed")

    def reads_first_message_of(self, method: str) -> bool:
        """Calls of methods naming a model are decided on their first message (see above)."""
        return self._models.path(method) is not None

    async def on_request(self, call: Call) -> Stop | None:
        """Read the caller's spend; decide now, or on the first message when one comes."""
        rules = self._policies.budgets(call.principal)
        if not rules:
            return None
        now = self._clock()
        if self._models.path(call.method) is None:
            return self._decide(rules, await self._spent(rules, now), now)
        read = asyncio.ensure_future(self._spent(rules, now))
        self._reads[id(call)] = _Read(rules, now, read)
        return None

    async def on_first_message(self, call: Call, message: bytes) -> Stop | None:
        """Refuse the call when one of its ``BLOCK`` budgets is used up."""
        pending = self._reads.pop(id(call), None)
        if pending is None:
            return None
        return self._decide(pending.rules, await pending.spent, pending.now)

    def on_call_end(self, call: Call, outcome: CallOutcome) -> None:
        """Drop the read of a call that ended before its first message."""
        pending = self._reads.pop(id(call), None)
        if pending is not None:
            pending.spent.cancel()

    def _decide(
        self, rules: Sequence[BudgetRule], spent: list[int] | None, now: datetime
    ) -> Stop | None:
        if spent is None:
            if self._config.on_redis_error is OnRedisError.FAIL_CLOSED:
                self._decisions.labels("unavailable").inc()
                return Stop.of(
                    Unavailable(
                        "budgets cannot be checked right now",
                        reason=UNAVAILABLE_REASON,
                        retry_after_seconds=self._config.retry_after_seconds,
                    )
                )
            self._decisions.labels("fail_open").inc()
            return None
        alerted = False
        for rule, used in zip(rules, spent, strict=True):
            if used < rule.amount_nanos:
                continue
            if rule.enforcement is BudgetEnforcement.BLOCK:
                self._decisions.labels("blocked").inc()
                return Stop.of(_exceeded(rule, used, now))
            alerted = True
        if alerted:
            self._decisions.labels("alerted").inc()
        else:
            self._allowed.inc()
        return None

    async def _spent(self, rules: Sequence[BudgetRule], now: datetime) -> list[int] | None:
        """Spend of each rule (in order), or None when Redis cannot be read."""
        client = self._link.client
        if client is None:
            return None
        if self._ledger is None:
            self._ledger = SpendLedger(client, namespace=self._config.namespace)
        by_currency: dict[str, list[int]] = defaultdict(list)
        for index, rule in enumerate(rules):
            by_currency[rule.currency].append(index)
        spent = [0] * len(rules)
        try:
            for currency, indexes in by_currency.items():
                queries = [(rules[i].subject, rules[i].period) for i in indexes]
                values = await self._ledger.spent(currency, queries, now)
                for index, value in zip(indexes, values, strict=True):
                    spent[index] = value
        except REDIS_ERRORS:
            self._redis_errors.inc()
            self._link.failed()
            return None
        return spent

    async def start(self) -> None:
        """Open the Redis client (or keep retrying it in the background)."""
        await self._link.start()

    async def stop(self) -> None:
        """Close the Redis client."""
        await self._link.stop()


def _exceeded(rule: BudgetRule, spent: int, now: datetime) -> ResourceExhausted:
    _, end = period_window(rule.period, now)
    return ResourceExhausted(
        f"budget exceeded: {rule.subject.kind.value} {rule.subject.id!r} spent "
        f"{spent} of {rule.amount_nanos} nanos {rule.currency} this {rule.period.value}",
        reason=EXCEEDED_REASON,
        retry_after_seconds=(end - now).total_seconds(),
        metadata={"budget_id": rule.id, "period": rule.period.value},
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build(config: BudgetConfig, context: FilterContext) -> Budget:
    """The budget filter: its own ``budgets`` when configured, else the gateway's policies."""
    policies: PolicySource = (
        StaticPolicies.of(budget_rules=config.budgets) if config.budgets else context.policies
    )
    return Budget(config, policies, context)


plugin = FilterPlugin(config_model=BudgetConfig, build=build)
