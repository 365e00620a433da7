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
        """Whether a call naming ``model`` counts against this rule."""
        return not self.models or model in self.models


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
