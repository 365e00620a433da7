"""API keys, projects and policies in memory, kept in step with SQL by revision.

Every admin write bumps one revision number in SQL in the same transaction.
Each gateway replica polls that number (one tiny query per
``poll_interval_seconds``, about 1 s) and, when it moved, reloads the whole
snapshot and swaps it in atomically. So a revocation, or any other change,
reaches every replica within about one poll interval, while a call's checks read
only memory. A failed poll keeps the last snapshot and is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.auth.grants import KeyRecord, ProjectRecord
from gateway.policies import BudgetRule, RateLimitRule
from services.kernel.identity import Principal
from services.kernel.spend import SpendSubject, SubjectKind

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Everything the hot path needs, as of one revision."""

    revision: int = -1
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)
    """Keys by lookup id."""
    projects: Mapping[str, ProjectRecord] = field(default_factory=dict)
    rate_limits: Mapping[SpendSubject, tuple[RateLimitRule, ...]] = field(default_factory=dict)
    budgets: Mapping[SpendSubject, tuple[BudgetRule, ...]] = field(default_factory=dict)


class SnapshotStore(Protocol):
    """Where snapshots come from (the admin store)."""

    async def revision(self) -> int:
        """The current revision."""
        ...

    async def snapshot(self) -> PolicySnapshot:
        """Everything, with the revision it was read at (or older)."""
        ...


def _subjects(principal: Principal) -> tuple[SpendSubject, ...]:
    subjects = []
    if principal.api_key_id:
        subjects.append(SpendSubject(SubjectKind.API_KEY, principal.api_key_id))
    if principal.project_id:
        subjects.append(SpendSubject(SubjectKind.PROJECT, principal.project_id))
    return tuple(subjects)


class PolicyCache:
    """The current snapshot; a :class:`~gateway.auth.grants.KeySource` and a
    :class:`~gateway.policies.PolicySource` answered from memory."""

    def __init__(self, poll_interval_seconds: float = 1.0) -> None:
        """An empty cache (no keys, no policies) until the first :meth:`refresh`."""
        self._poll_interval = poll_interval_seconds
        self._snapshot = PolicySnapshot()

    @property
    def revision(self) -> int:
        """The revision of the snapshot in use (-1 before the first load)."""
        return self._snapshot.revision

    async def refresh(self, store: SnapshotStore) -> bool:
        """Reload from ``store`` when its revision differs from ours; True when it reloaded."""
        if await store.revision() == self._snapshot.revision:
            return False
        snapshot = await store.snapshot()
        if snapshot.revision < self._snapshot.revision:
            return False  # a concurrent refresh already installed a newer one
        self._snapshot = snapshot
        return True

    async def run(self, store: SnapshotStore) -> None:
        """Poll ``store`` for changes until cancelled (see the module docstring)."""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                if await self.refresh(store):
                    _log.info("admin policies reloaded", extra={"revision": self.revision})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("cannot poll the admin policies; keeping the last ones: %r", exc)

    def key_by_lookup(self, lookup: str) -> KeyRecord | None:
        """The key whose lookup id is ``lookup``, or None."""
        return self._snapshot.keys.get(lookup)

    def project(self, project_id: str) -> ProjectRecord | None:
        """The project ``project_id``, or None."""
        return self._snapshot.projects.get(project_id)

    def rate_limits(self, principal: Principal) -> Sequence[RateLimitRule]:
        """Every rate-limit rule of the principal's API key and of its project."""
        snapshot = self._snapshot
        return tuple(
            rule
            for subject in _subjects(principal)
            for rule in snapshot.rate_limits.get(subject, ())
        )

    def budgets(self, principal: Principal) -> Sequence[BudgetRule]:
        """Every budget of the principal's API key and of its project."""
        snapshot = self._snapshot
        return tuple(
            rule for subject in _subjects(principal) for rule in snapshot.budgets.get(subject, ())
        )
