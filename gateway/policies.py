"""Rate-limit and budget policies as the gateway's limit filters read them.

The admin API stores policies (``llmgw.admin.v1.RateLimitPolicy`` and ``Budget``);
the gateway keeps them in memory and hands the filters a :class:`PolicySource`
(``FilterContext.policies``), so deciding which limits apply to a call costs no
round trip. Lookups are synchronous on purpose: a source answers from memory.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.kernel.identity import Principal
from services.kernel.spend import BudgetPeriod, SpendSubject


def model_name_of(ref: str) -> str:
    """The model a reference names: ``m`` for ``m``, ``m@alias`` and ``m/versions/v``."""
    return ref.partition("@")[0].partition("/versions/")[0]


def model_matches(ref: str, entries: Sequence[str]) -> bool:
    """Whether ``entries`` (empty: every model) cover the model reference ``ref``.

    An entry covers the reference itself, every alias and version of the model it
    names (``gpt-4o`` covers ``gpt-4o@production`` and ``gpt-4o/versions/3``), and,
    ending in ``*``, every reference starting with what precedes it. A group is a
    name of its own: an entry naming a model does not cover groups that hold it.
    """
    if not entries:
        return True
    name = model_name_of(ref)
    for entry in entries:
        if entry in (ref, name):
            return True
        if entry.endswith("*") and ref.startswith(entry[:-1]):
            return True
    return False


class BudgetEnforcement(enum.Enum):
    """What happens when a budget is used up."""

    BLOCK = "block"
    ALERT_ONLY = "alert_only"


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """Request and token limits per minute of one key or project; 0 means unlimited.

    ``models`` restricts the rule to calls naming one of them; empty counts every
    call of the subject together.
    """

    id: str
    subject: SpendSubject
    models: tuple[str, ...] = ()
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_concurrent_requests: int = 0

    def applies_to(self, model: str) -> bool:
        """Whether a call naming ``model`` counts against this rule (see :func:`model_matches`)."""
        return model_matches(model, self.models)


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A spending limit of one key or project per period, in nanos of ``currency``."""

    id: str
    subject: SpendSubject
    amount_nanos: int
    currency: str
    period: BudgetPeriod
    enforcement: BudgetEnforcement = BudgetEnforcement.BLOCK


class PolicySource(Protocol):
    """The limits that apply to a caller, answered from memory."""

    def rate_limits(self, principal: Principal) -> Sequence[RateLimitRule]:
        """Every rate-limit rule of the principal's API key and of its project."""
        ...

    def budgets(self, principal: Principal) -> Sequence[BudgetRule]:
        """Every budget of the principal's API key and of its project."""
        ...


@dataclass(frozen=True, slots=True)
class NoPolicies:
    """A source with no policies at all (nothing is limited)."""

    def rate_limits(self, principal: Principal) -> Sequence[RateLimitRule]:
        """No rules."""
        return ()

    def budgets(self, principal: Principal) -> Sequence[BudgetRule]:
        """No budgets."""
        return ()
