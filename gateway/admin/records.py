"""Stored admin protos as the frozen records the hot path reads (see :mod:`gateway.auth.cache`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from gateway.auth.cache import PolicySnapshot
from gateway.auth.grants import KeyRecord, ProjectRecord
from gateway.auth.scopes import scopes_of_protos
from gateway.policies import BudgetEnforcement, BudgetRule, RateLimitRule
from llmgw.admin.v1 import admin_pb2
from services.kernel.spend import BudgetPeriod, SpendSubject, SubjectKind

_PERIODS = {
    admin_pb2.BUDGET_PERIOD_DAY: BudgetPeriod.DAY,
    admin_pb2.BUDGET_PERIOD_WEEK: BudgetPeriod.WEEK,
    admin_pb2.BUDGET_PERIOD_MONTH: BudgetPeriod.MONTH,
}


def spend_subject(subject: admin_pb2.PolicySubject) -> SpendSubject | None:
    """The spend subject of a policy subject, None when unset."""
    kind = subject.WhichOneof("subject")
    if kind == "api_key_id":
        return SpendSubject(SubjectKind.API_KEY, subject.api_key_id)
    if kind == "project_id":
        return SpendSubject(SubjectKind.PROJECT, subject.project_id)
    return None


def key_record(key: admin_pb2.ApiKey, lookup: str, secret_hash: str) -> KeyRecord:
    """The hot-path record of a stored key."""
    return KeyRecord(
        id=key.id,
        lookup=lookup,
        secret_hash=secret_hash,
        project_id=key.project_id,
        display_name=key.display_name,
        scopes=scopes_of_protos(key.scopes),
        allowed_models=tuple(key.allowed_models),
        expire_at=key.expire_time.ToNanoseconds() / 1e9 if key.HasField("expire_time") else 0.0,
        revoked=key.revoked,
    )


def rate_limit_rule(policy: admin_pb2.RateLimitPolicy) -> RateLimitRule | None:
    """The rule of a stored rate-limit policy."""
    subject = spend_subject(policy.subject)
    if subject is None:
        return None
    return RateLimitRule(
        id=policy.id,
        subject=subject,
        models=tuple(policy.models),
        requests_per_minute=policy.requests_per_minute,
        tokens_per_minute=policy.tokens_per_minute,
        max_concurrent_requests=policy.max_concurrent_requests,
    )


def budget_rule(budget: admin_pb2.Budget) -> BudgetRule | None:
    """The rule of a stored budget."""
    subject = spend_subject(budget.subject)
    period = _PERIODS.get(budget.period)
    if subject is None or period is None:
        return None
    enforcement = (
        BudgetEnforcement.ALERT_ONLY
        if budget.enforcement == admin_pb2.BUDGET_ENFORCEMENT_ALERT_ONLY
        else BudgetEnforcement.BLOCK
    )
    return BudgetRule(
        id=budget.id,
        subject=subject,
        amount_nanos=budget.amount.amount_nanos,
        currency=budget.amount.currency_code,
        period=period,
        enforcement=enforcement,
    )


def snapshot_of(
    revision: int,
    projects: Iterable[admin_pb2.Project],
    keys: Iterable[tuple[admin_pb2.ApiKey, str, str]],
    budgets: Sequence[admin_pb2.Budget],
    limits: Sequence[admin_pb2.RateLimitPolicy],
) -> PolicySnapshot:
    """The snapshot of everything stored at ``revision``."""
    rate_limits: defaultdict[SpendSubject, list[RateLimitRule]] = defaultdict(list)
    for policy in sorted(limits, key=lambda p: p.id):
        if (rule := rate_limit_rule(policy)) is not None:
            rate_limits[rule.subject].append(rule)
    budget_rules: defaultdict[SpendSubject, list[BudgetRule]] = defaultdict(list)
    for budget in sorted(budgets, key=lambda b: b.id):
        if (budget_of := budget_rule(budget)) is not None:
            budget_rules[budget_of.subject].append(budget_of)
    return PolicySnapshot(
        revision=revision,
        keys={lookup: key_record(key, lookup, digest) for key, lookup, digest in keys},
        projects={
            p.id: ProjectRecord(id=p.id, allowed_models=tuple(p.allowed_models)) for p in projects
        },
        rate_limits={subject: tuple(rules) for subject, rules in rate_limits.items()},
        budgets={subject: tuple(rules) for subject, rules in budget_rules.items()},
    )
