"""``AuditRecorded`` events for admin actions and refused calls, never holding a call up.

:meth:`AuditPublisher.record` puts the entry into a bounded in-memory queue and
returns at once; a background task publishes the queue onto the event bus. When
the queue is full (the broker is slow or away and a flood of refusals arrives)
the entry is dropped and counted in ``llmgw_gateway_audit_events_total{outcome="dropped"}``;
a publish that fails or times out is counted as ``failed``. Entries carry no
secret: the actor is an id, the status a public message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2
from prometheus_client import CollectorRegistry, Counter

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from services.kernel.identity import Principal

_log = logging.getLogger(__name__)

SOURCE = "//llmgw/gateway"
"""CloudEvents source of the gateway's events."""

_ACTOR_TYPES: Mapping[str, common_pb2.ActorType.ValueType] = {
    "api_key": common_pb2.ACTOR_TYPE_API_KEY,
    "user": common_pb2.ACTOR_TYPE_USER,
    "service": common_pb2.ACTOR_TYPE_SERVICE,
    "system": common_pb2.ACTOR_TYPE_SYSTEM,
}


class Publisher(Protocol):
    """Where events go: an :class:`~services.kernel.events.EventBus` or anything with
    its ``publish``."""

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Send ``event`` to ``topic``; return once accepted, raise otherwise."""
        ...


class AuditSink(Protocol):
    """Takes audit entries without blocking."""

    def record(self, entry: common_pb2.AuditEntry) -> None:
        """Queue ``entry`` for publishing; never raises, never waits."""
        ...


@dataclass(frozen=True, slots=True)
class NoAudit:
    """A sink that keeps nothing (a gateway without an audit log)."""

    def record(self, entry: common_pb2.AuditEntry) -> None:
        """Drop ``entry``."""
        return None


def actor_of(principal: Principal) -> common_pb2.Actor:
    """The audit actor of ``principal`` (unspecified type when anonymous)."""
    return common_pb2.Actor(
        type=_ACTOR_TYPES.get(principal.actor_type, common_pb2.ACTOR_TYPE_UNSPECIFIED),
        id=principal.actor_id,
        project_id=principal.project_id,
        display_name=principal.display_name,
    )


def audit_entry(
    action: str,
    resource: str,
    status: status_pb2.Status,
    principal: Principal,
    *,
    request_id: str = "",
    client_address: str = "",
    user_agent: str = "",
    details: Mapping[str, str | float | bool] | None = None,
) -> common_pb2.AuditEntry:
    """A new entry (fresh id, time now) of ``action`` on ``resource`` ending in ``status``."""
    entry = common_pb2.AuditEntry(
        id=str(uuid.uuid4()),
        actor=actor_of(principal),
        action=action,
        resource=resource,
        status=status,
        request_id=request_id,
        client_address=client_address,
        user_agent=user_agent,
    )
    entry.time.GetCurrentTime()
    if details:
        struct = struct_pb2.Struct()
        struct.update(dict(details))
        entry.details.CopyFrom(struct)
    return entry


def audit_event(entry: common_pb2.AuditEntry) -> events_pb2.AuditRecorded:
    """The ``AuditRecorded`` event of ``entry`` (id = entry id, subject = resource)."""
    event = events_pb2.AuditRecorded(entry=entry)
    event.metadata.id = entry.id
    event.metadata.subject = entry.resource
    event.metadata.source = SOURCE
    event.metadata.time.CopyFrom(entry.time)
    return event


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Topic and limits of the publisher."""

    topic: str = "llmgw.audit.v1"
    buffer_size: int = 10_000
    publish_timeout_seconds: float = 5.0


class AuditPublisher:
    """Publishes audit entries in the background; see the module docstring."""

    def __init__(self, config: AuditConfig, registry: CollectorRegistry) -> None:
        """Queue entries at once; publish them once :meth:`start` named the bus.

        Counters go to ``registry``.
        """
        self._config = config
        self._queue: asyncio.Queue[common_pb2.AuditEntry] = asyncio.Queue(config.buffer_size)
        self._task: asyncio.Task[None] | None = None
        self._events = Counter(
            "llmgw_gateway_audit_events",
            "Audit events by outcome: published, dropped (queue full) or failed (bus refused).",
            ["outcome"],
            registry=registry,
        )

    def record(self, entry: common_pb2.AuditEntry) -> None:
        """Queue ``entry``; when the queue is full it is dropped and counted."""
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self._events.labels("dropped").inc()

    def start(self, bus: Publisher) -> None:
        """Start publishing to ``bus`` in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(bus), name="gateway-audit-publisher")

    async def aclose(self, flush_seconds: float = 5.0) -> None:
        """Publish what is queued (for at most ``flush_seconds``), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self, bus: Publisher) -> None:
        while True:
            entry = await self._queue.get()
            try:
                await asyncio.wait_for(
                    bus.publish(self._config.topic, audit_event(entry)),
                    self._config.publish_timeout_seconds,
                )
                self._events.labels("published").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._events.labels("failed").inc()
                _log.warning("an audit event was not published: %r", exc)
            finally:
                self._queue.task_done()
