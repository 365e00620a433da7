"""Rate-limit and budget rules written in config, served as a :class:`PolicySource`.

A deployment without the admin API (or a test) lists its limits in the filter's
config::

    - name: rate_limit
      config:
        rules:
          - {id: team-a, project: team-a, requests_per_minute: 600, tokens_per_minute: 200000}
          - {id: key-1-gpt, key: key-1, models: [gpt-4o], tokens_per_minute: 10000}

Each rule names exactly one subject: ``key`` (an API key id) or ``project``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import Field, model_validator

from gateway.policies import BudgetEnforcement, BudgetRule, RateLimitRule
from services.kernel.config import Section
from services.kernel.identity import Principal
from services.kernel.spend import BudgetPeriod, SpendSubject, SubjectKind

RuleT = TypeVar("RuleT", RateLimitRule, BudgetRule)


class _SubjectConfig(Section):
    """One subject: ``key`` or ``project``, never both."""

    id: str = Field(min_length=1)
    key: str = ""
    project: str = ""

    @model_validator(mode="after")
    def _one_subject(self) -> _SubjectConfig:
        if bool(self.key) == bool(self.project):
            raise ValueError(f"rule {self.id!r} must name exactly one of key or project")
        return self

    def subject(self) -> SpendSubject:
        """The API key or project the rule limits."""
        if self.key:
            return SpendSubject(SubjectKind.API_KEY, self.key)
        return SpendSubject(SubjectKind.PROJECT, self.project)


class RateLimitRuleConfig(_SubjectConfig):
    """A :class:`RateLimitRule` in config; 0 means unlimited."""

    models: tuple[str, ...] = ()
    requests_per_minute: int = Field(default=0, ge=0)
    tokens_per_minute: int = Field(default=0, ge=0)
    max_concurrent_requests: int = Field(default=0, ge=0)

    def rule(self) -> RateLimitRule:
        """The rule this entry describes."""
        return RateLimitRule(
            id=self.id,
            subject=self.subject(),
            models=self.models,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            max_concurrent_requests=self.max_concurrent_requests,
        )


class BudgetRuleConfig(_SubjectConfig):
    """A :class:`BudgetRule` in config: ``amount_nanos`` of ``currency`` per ``period``."""

    amount_nanos: int = Field(ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    period: BudgetPeriod = BudgetPeriod.MONTH
    enforcement: BudgetEnforcement = BudgetEnforcement.BLOCK

    def rule(self) -> BudgetRule:
        """The rule this entry describes."""
        return BudgetRule(
            id=self.id,
            subject=self.subject(),
            amount_nanos=self.amount_nanos,
            currency=self.currency,
            period=self.period,
            enforcement=self.enforcement,
        )


@dataclass(frozen=True, slots=True)
class StaticPolicies:
    """A :class:`~gateway.policies.PolicySource` over a fixed set of rules."""

    rate_rules: tuple[RateLimitRule, ...] = ()
    budget_rules: tuple[BudgetRule, ...] = ()
    _rates: dict[SpendSubject, tuple[RateLimitRule, ...]] = field(
        init=False, repr=False, compare=False
    )
    _budgets: dict[SpendSubject, tuple[BudgetRule, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rates", _by_subject(self.rate_rules))
        object.__setattr__(self, "_budgets", _by_subject(self.budget_rules))

    @classmethod
    def of(
        cls,
        rate_rules: Iterable[RateLimitRuleConfig] = (),
        budget_rules: Iterable[BudgetRuleConfig] = (),
    ) -> StaticPolicies:
        """The source holding the rules written in config."""
        return cls(
            tuple(entry.rule() for entry in rate_rules),
            tuple(entry.rule() for entry in budget_rules),
        )

    def rate_limits(self, principal: Principal) -> Sequence[RateLimitRule]:
        """The rules of the principal's API key, then those of its project."""
        return _of(self._rates, principal)

    def budgets(self, principal: Principal) -> Sequence[BudgetRule]:
        """The budgets of the principal's API key, then those of its project."""
        return _of(self._budgets, principal)


def _by_subject(
    rules: Iterable[RuleT],
) -> dict[SpendSubject, tuple[RuleT, ...]]:
    grouped: dict[SpendSubject, list[RuleT]] = defaultdict(list)
    for rule in rules:
        grouped[rule.subject].append(rule)
    return {subject: tuple(found) for subject, found in grouped.items()}


def _of(rules: dict[SpendSubject, tuple[RuleT, ...]], principal: Principal) -> tuple[RuleT, ...]:
    found: tuple[RuleT, ...] = ()
    if principal.api_key_id:
        found += rules.get(SpendSubject(SubjectKind.API_KEY, principal.api_key_id), ())
    if principal.project_id:
        found += rules.get(SpendSubject(SubjectKind.PROJECT, principal.project_id), ())
    return found
