"""The ``WatchRegistry`` stream: a snapshot, then every change in revision order.

A watcher that starts at 0 (or asks for a revision the feed cannot continue
from: newer than the registry, or older than the oldest change kept) first
gets a snapshot taken under the revision lock, so it is exactly the state at
its revision. Then it gets every change with a larger revision, one message
per revision, strictly increasing: resuming with the last revision received
yields no gap and no duplicate.

New changes are noticed at once when they were made by this process
(:meth:`ChangeFeed.notify`), and within ``poll_interval_seconds`` when another
replica of the registry made them.

Database reads are shielded from the watcher's cancellation (a client that
goes away mid-read), so a connection is always returned to the pool whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from llmgw.models.v1 import models_pb2
from services.kernel.waiting import wait_or_timeout
from services.models.store import RegistryStore, StoredChange


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """How often to look for changes of other replicas, and how many to read at once."""

    poll_interval_seconds: float = 0.5
    batch_size: int = 500


class ChangeFeed:
    """Watch streams over the change log of one store."""

    def __init__(self, store: RegistryStore, config: FeedConfig) -> None:
        """Serve watches of ``store``."""
        self._store = store
        self._config = config
        self._wake = asyncio.Event()
        self._cached: tuple[int, models_pb2.RegistrySnapshot] | None = None

    def notify(self) -> None:
        """Wake every watcher: a change was committed."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def snapshot(self) -> tuple[int, models_pb2.RegistrySnapshot]:
        """The whole registry and the revision it is at (a fresh copy the caller owns)."""
        async with self._store.consistent_read() as reader:
            return await reader.revision(), await reader.snapshot()

    async def current(self) -> tuple[int, models_pb2.RegistrySnapshot]:
        """Like :meth:`snapshot`, but shared and reused while the revision stays the same.

        The caller must not modify the returned snapshot. Checking the revision
        takes no lock, so readers of an unchanged registry never wait for writers.
        """
        async with self._store.read() as reader:
            revision = await reader.revision()
        cached = self._cached
        if cached is not None and cached[0] == revision:
            return cached
        fresh = await asyncio.shield(self.snapshot())
        if self._cached is None or self._cached[0] < fresh[0]:
            self._cached = fresh
        return fresh

    async def watch(self, after_revision: int) -> AsyncIterator[models_pb2.WatchRegistryResponse]:
        """The stream described in the module docstring; runs until the caller stops it."""
        last = after_revision
        if await asyncio.shield(self._needs_snapshot(after_revision)):
            revision, snapshot = await asyncio.shield(self.snapshot())
            yield models_pb2.WatchRegistryResponse(revision=revision, snapshot=snapshot)
            last = revision
        while True:
            wake = self._wake
            changes = await asyncio.shield(self._changes_after(last))
            for stored in changes:
                yield models_pb2.WatchRegistryResponse(
                    revision=stored.revision, change=stored.change
                )
                last = stored.revision
            if len(changes) < self._config.batch_size:
                await wait_or_timeout(wake, self._config.poll_interval_seconds)

    async def _changes_after(self, revision: int) -> list[StoredChange]:
        async with self._store.read() as reader:
            return await reader.changes_after(revision, self._config.batch_size)

    async def _needs_snapshot(self, after_revision: int) -> bool:
        if after_revision <= 0:
            return True
        async with self._store.read() as reader:
            current = await reader.revision()
            oldest = await reader.oldest_change()
        if after_revision > current:
            return True
        return after_revision < current and (oldest == 0 or oldest > after_revision + 1)
