"""The event bus contract shared by the Kafka and the in-process implementations.

Delivery is at-least-once: a subscription acknowledges (commits) an event
only after its handler returned. When a handler raises, the same event is
handed to it again after a backoff, and later events of the same partition
wait; handlers must therefore be idempotent (de-duplicate by
``envelope.id``) and should catch what they can handle themselves.

Records that are not decodable events (unknown ``ce_type``, broken headers or
payload) are logged and skipped, so one foreign record cannot block a topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from google.protobuf.message import Message


@dataclass(frozen=True, slots=True)
class Envelope:
    """One delivered event with its CloudEvents attributes and where it came from.

    ``partition`` and ``offset`` locate the record in its topic (the
    in-process bus uses partition 0 and a per-topic sequence number).
    """

    id: str
    type: str
    source: str
    time: datetime
    subject: str | None
    event: Message
    topic: str
    key: bytes | None
    partition: int
    offset: int


EventHandler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff between redeliveries of an event whose handler raised."""

    initial_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 30.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before redelivery number ``attempt`` (1-based)."""
        delay = self.initial_backoff_seconds * self.multiplier ** max(attempt - 1, 0)
        return float(min(delay, self.max_backoff_seconds))


class Subscription:
    """A running consumer: one background task that feeds a handler.

    Returned by :meth:`EventBus.subscribe`. :meth:`stop` lets the event being
    handled finish (and be committed), then ends the task.
    """

    def __init__(
        self, name: str, run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    ) -> None:
        """Start ``run(stopping)`` as a task; ``run`` must return soon after ``stopping`` is set."""
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(run(self._stopping), name=name)

    @property
    def running(self) -> bool:
        """``True`` until the task ended (stopped or failed)."""
        return not self._task.done()

    async def wait(self) -> None:
        """Wait until the subscription ends; re-raise the error that ended it, if any."""
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Ask the task to finish and wait for it.

        Re-raises the error that ended the task early, if any.
        """
        self._stopping.set()
        await asyncio.wait({self._task})
        if not self._task.cancelled() and (error := self._task.exception()) is not None:
            raise error


class EventBus(Protocol):
    """Publishes protobuf events to topics and feeds them to consumer groups.

    Every subscription of the same ``group_id`` shares the topic's events
    (each event goes to one of them); every group gets every event.
    """

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Send ``event`` to ``topic``; return once the bus has accepted it durably.

        ``key`` selects the partition, so events with equal keys stay in order;
        it defaults to the event's ``metadata.subject`` (none when that is empty).
        """
        ...

    async def subscribe(
        self, topics: Sequence[str], group_id: str, handler: EventHandler
    ) -> Subscription:
        """Start feeding ``handler`` with the events of ``topics`` for ``group_id``."""
        ...

    async def close(self) -> None:
        """Stop every subscription and release connections; idempotent."""
        ...
