"""The retry budget of a cluster: retries may be only a fraction of the calls in flight."""

from __future__ import annotations

from gateway.settings import RetryBudgetSettings


class RetryBudget:
    """Envoy's budget: retries in flight <= max(min concurrency, percent of active calls)."""

    def __init__(self, settings: RetryBudgetSettings) -> None:
        self._fraction = settings.budget_percent / 100
        self._minimum = settings.min_retry_concurrency
        self.active_calls = 0
        self.active_retries = 0

    def try_acquire(self) -> bool:
        """Take a retry from the budget; False (nothing taken) when it is spent."""
        limit = max(self._minimum, self._fraction * self.active_calls)
        if self.active_retries >= limit:
            return False
        self.active_retries += 1
        return True

    def release(self) -> None:
        """Give back a retry taken with :meth:`try_acquire` once it has finished."""
        self.active_retries -= 1
