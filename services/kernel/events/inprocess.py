"""The event bus inside one process, for ``make run`` and unit tests.

Same contract and wire format as the Kafka bus (events are encoded and
decoded, so handlers never share a message object with the publisher), with
the limits of memory:

- a consumer group receives the events published after it subscribed;
  events published to a topic no group listens to are dropped;
- nothing survives the process;
- each group has a bounded queue: ``publish`` waits while it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import Message

from services.kernel.events.bus import Envelope, EventHandler, RetryPolicy, Subscription
from services.kernel.events.cloudevents import (
    EventDecodeError,
    EventTypeRegistry,
    decode_event,
    encode_event,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InProcessConfig:
    """Queue bound per consumer group and the redelivery backoff."""

    queue_size: int = 10_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: bytes | None
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(slots=True)
class _Group:
    topics: frozenset[str]
    queue: asyncio.Queue[_Record]
    members: int = field(default=0)


class InProcessEventBus:
    """:class:`~services.kernel.events.bus.EventBus` on asyncio queues.

    Subscriptions of one group compete for its queue; a group's topics are
    fixed by its first subscription.
    """

    def __init__(
        self,
        registry: EventTypeRegistry,
        source: str,
        config: InProcessConfig = InProcessConfig(),
    ) -> None:
        """Create an empty bus; it is usable at once."""
        self._registry = registry
        self._source = source
        self._config = config
        self._groups: dict[str, _Group] = {}
        self._next_offset: dict[str, int] = {}
        self._subscriptions: list[Subscription] = []
        self._closed = False

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Queue ``event`` for every group subscribed to ``topic``."""
        if self._closed:
            raise RuntimeError("publish() on a closed InProcessEventBus")
        offset = self._next_offset.get(topic, 0)
        self._next_offset[topic] = offset + 1
        readers = [group for group in self._groups.values() if topic in group.topics]
        if not readers:
            return  # like a topic nobody consumes: the event is not kept
        encoded = encode_event(event, default_source=self._source)
        record = _Record(topic, encoded.record_key(key), offset, encoded.value, encoded.headers)
        for group in readers:
            await group.queue.put(record)

    async def subscribe(
        self, topics: Sequence[str], group_id: str, handler: EventHandler
    ) -> Subscription:
        """Start feeding ``handler`` with the group's events.

        Raises :class:`ValueError` when ``group_id`` already exists with other topics.
        """
        if self._closed:
            raise RuntimeError("subscribe() on a closed InProcessEventBus")
        if not topics:
            raise ValueError("subscribe() needs at least one topic")
        wanted = frozenset(topics)
        group = self._groups.get(group_id)
        if group is None:
            group = _Group(wanted, asyncio.Queue(maxsize=self._config.queue_size))
            self._groups[group_id] = group
        elif group.topics != wanted:
            raise ValueError(
                f"group {group_id!r} consumes {sorted(group.topics)}, not {sorted(wanted)}"
            )
        group.members += 1
        loop = _GroupConsumer(group, handler, self._registry, self._config.retry)
        subscription = Subscription(f"inprocess:{group_id}", loop.run)
        self._subscriptions.append(subscription)
        return subscription

    async def drain(self) -> None:
        """Wait until every queued event has been handled (or skipped)."""
        await asyncio.gather(*(group.queue.join() for group in list(self._groups.values())))

    async def close(self) -> None:
        """Stop all subscriptions; queued events are dropped. Idempotent."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, []
        results = await asyncio.gather(*(s.stop() for s in subscriptions), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                _log.warning("subscription ended with an error: %r", result)


class _GroupConsumer:
    """One subscription's loop: take a record, hand it over until the handler succeeds."""

    def __init__(
        self, group: _Group, handler: EventHandler, registry: EventTypeRegistry, retry: RetryPolicy
    ) -> None:
        self._group = group
        self._handler = handler
        self._registry = registry
        self._retry = retry

    async def run(self, stopping: asyncio.Event) -> None:
        stop_requested = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                take = asyncio.ensure_future(self._group.queue.get())
                await asyncio.wait({take, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
                if not take.done():
                    take.cancel()
                    await asyncio.wait({take})
                    if take.cancelled():
                        break
                record = take.result()
                try:
                    await self._deliver(record, stopping)
                finally:
                    self._group.queue.task_done()
        finally:
            stop_requested.cancel()
            self._group.members -= 1

    async def _deliver(self, record: _Record, stopping: asyncio.Event) -> None:
        try:
            decoded = decode_event(record.value, record.headers, self._registry)
        except EventDecodeError as exc:
            _log.warning("skipping record %s@%d: %s", record.topic, record.offset, exc)
            return
        attributes = decoded.attributes
        envelope = Envelope(
            id=attributes.id,
            type=attributes.type,
            source=attributes.source,
            time=attributes.time,
            subject=attributes.subject,
            event=decoded.event,
            topic=record.topic,
            key=record.key,
            partition=0,
            offset=record.offset,
        )
        attempt = 0
        while True:
            try:
                await self._handler(envelope)
                return
            except Exception:
                attempt += 1
                _log.exception(
                    "handler failed for event %s (attempt %d); will retry", envelope.id, attempt
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._retry.backoff(attempt))
            if stopping.is_set():
                self._requeue(record)
                return

    def _requeue(self, record: _Record) -> None:
        """Give an unhandled record back to the group for its other members."""
        if self._group.members <= 1:
            _log.warning("dropping unhandled event at %s@%d on stop", record.topic, record.offset)
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._group.queue.put_nowait(record)
            return
        _log.warning("queue full, dropping unhandled event at %s@%d", record.topic, record.offset)
