"""The event relay: publishes each recorded change as ``ModelChanged`` and ``AuditRecorded``.

The change log (``registry_changes``) is the outbox: a change is written in
the same transaction as the resource, and this relay publishes the rows not
yet marked ``published``, in revision order, then marks them. Delivery is
therefore at least once, also across crashes and broker outages (the relay
retries with backoff); event ids are stable (the revision for ModelChanged,
the audit entry id for AuditRecorded), so consumers drop duplicates, also
those of several registry replicas publishing the same row concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from llmgw.events.v1 import events_pb2
from services.kernel.waiting import wait_or_timeout
from services.models.store import RegistryStore, StoredChange

_log = logging.getLogger(__name__)

SOURCE = "//llmgw/models"
MODELS_TOPIC = "llmgw.models.v1"
AUDIT_TOPIC = "llmgw.audit.v1"


class Publisher(Protocol):
    """Where events go: the ``publish`` of an :class:`~services.kernel.events.EventBus`."""

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Send ``event`` to ``topic``; return once accepted durably, raise otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Polling, batching and retry of the relay."""

    poll_interval_seconds: float = 1.0
    batch_size: int = 200
    retry_seconds: float = 2.0
    models_topic: str = MODELS_TOPIC
    audit_topic: str = AUDIT_TOPIC


def model_changed(stored: StoredChange) -> events_pb2.ModelChanged:
    """The ``ModelChanged`` event of one change: id = revision, subject = resource name."""
    event = events_pb2.ModelChanged(change=stored.change)
    event.metadata.id = str(stored.revision)
    event.metadata.source = SOURCE
    event.metadata.subject = stored.audit.resource
    event.metadata.time.CopyFrom(stored.change.change_time)
    return event


def audit_recorded(stored: StoredChange) -> events_pb2.AuditRecorded:
    """The ``AuditRecorded`` event of one change: id = entry id, subject = resource name."""
    event = events_pb2.AuditRecorded(entry=stored.audit)
    event.metadata.id = stored.audit.id
    event.metadata.source = SOURCE
    event.metadata.subject = stored.audit.resource
    event.metadata.time.CopyFrom(stored.audit.time)
    return event


class EventRelay:
    """Publishes the outbox; run :meth:`run` as a task and :meth:`notify` after commits."""

    def __init__(self, store: RegistryStore, publisher: Publisher, config: RelayConfig) -> None:
        """Relay ``store``'s changes to ``publisher``."""
        self._store = store
        self._publisher = publisher
        self._config = config
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """A change was committed; publish soon."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every unpublished change now; returns how many. Raises on a bus error
        (the changes published before it are marked)."""
        total = 0
        while True:
            async with self._store.read() as reader:
                batch = await reader.unpublished(self._config.batch_size)
            if not batch:
                return total
            done: list[int] = []
            try:
                for stored in batch:
                    await self._publisher.publish(self._config.models_topic, model_changed(stored))
                    await self._publisher.publish(self._config.audit_topic, audit_recorded(stored))
                    done.append(stored.revision)
            finally:
                await self._store.mark_published(done)
            total += len(done)

    async def run(self) -> None:
        """Publish until cancelled; waits for :meth:`notify` or the poll interval."""
        while True:
            self._wake.clear()
            try:
                await self.publish_pending()
                delay = self._config.poll_interval_seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.warning("publishing registry events failed; retrying", exc_info=True)
                delay = self._config.retry_seconds
            await wait_or_timeout(self._wake, delay)
