"""One ``UsageRecorded`` event per request, published without ever holding a request up.

:meth:`UsageRecorder.record` only puts the event into a bounded in-memory buffer
and returns. A background task drains the buffer in batches onto the event bus.
When the bus does not take an event within the publish timeout (broker away,
not started yet), the event is appended to a disk :class:`~services.inference.spool.Spool`;
while the spool holds anything, new events go there too, and a second task
replays it, oldest first, as soon as the bus accepts events again. If the
buffer itself is full, ``record`` writes the event to the spool at once.

Delivery is at least once (a replay after a timeout may send an event twice);
the event id is the request id, so consumers de-duplicate by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from google.protobuf.message import DecodeError, Message

from llmgw.events.v1 import events_pb2
from services.inference.outcome import Outcome
from services.inference.spool import Spool, read_segment

_log = logging.getLogger(__name__)

SOURCE = "//llmgw/inference"
"""CloudEvents source of the events of this service."""

UsageRecorded = events_pb2.UsageRecorded


class Publisher(Protocol):
    """Where events go: an :class:`~services.kernel.events.EventBus` or anything with
    its ``publish``."""

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Send ``event`` to ``topic``; return once accepted, raise otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class UsageConfig:
    """Where events go and how hard to try; see :class:`UsageRecorder`."""

    spool_dir: Path
    topic: str = "llmgw.usage.v1"
    buffer_size: int = 10_000
    batch_size: int = 256
    publish_timeout_seconds: float = 5.0
    replay_interval_seconds: float = 1.0
    spool_segment_bytes: int = 8 * 1024 * 1024
    linger_seconds: float = 0.005


def usage_event(outcome: Outcome) -> UsageRecorded:
    """The ``UsageRecorded`` event of ``outcome``; its id and subject are the request id."""
    request = outcome.request
    call = request.call
    event = UsageRecorded(
        request_id=call.request_id,
        operation=request.operation,
        api_key_id=call.api_key_id,
        project_id=call.project,
        requested_model=request.requested_model,
        served_by=outcome.served_by,
        usage=outcome.usage,
        cost=outcome.cost,
        cached=outcome.cached,
        finish_reason=outcome.finish_reason,
        tags=dict(call.tags),
        end_user_id=request.end_user_id,
        start_time=outcome.start_time,
    )
    event.metadata.id = call.request_id
    event.metadata.subject = call.request_id
    event.metadata.source = SOURCE
    if outcome.error is not None:
        event.error.CopyFrom(outcome.error)
    if outcome.time_to_first_token_seconds is not None:
        event.time_to_first_token.FromNanoseconds(round(outcome.time_to_first_token_seconds * 1e9))
    latency_nanos = round(outcome.latency_seconds * 1e9)
    event.latency.FromNanoseconds(latency_nanos)
    event.metadata.time.FromNanoseconds(outcome.start_time.ToNanoseconds() + latency_nanos)
    return event


class UsageRecorder:
    """Buffers, publishes, spools and replays usage events; see the module docstring.

    Use ``async with UsageRecorder(bus, config):`` or :meth:`start` / :meth:`aclose`.
    It is also an :class:`~services.inference.outcome.OutcomeSink`.
    """

    def __init__(self, bus: Publisher, config: UsageConfig) -> None:
        """Open the spool (replaying what an earlier process left there once started)."""
        self._bus = bus
        self._config = config
        self._spool = Spool(config.spool_dir, config.spool_segment_bytes)
        self._buffer: asyncio.Queue[Outcome | UsageRecorded | None] = asyncio.Queue(
            config.buffer_size
        )
        self._replay_wanted = asyncio.Event()
        self._progress: dict[Path, int] = {}
        self._drain: asyncio.Task[None] | None = None
        self._replay: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> UsageRecorder:
        """Start the background tasks."""
        self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Flush and stop."""
        await self.aclose()

    @property
    def spool(self) -> Spool:
        """The disk spool (for inspection)."""
        return self._spool

    def start(self) -> None:
        """Start draining the buffer and replaying the spool."""
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_loop(), name="usage-drain")
            self._replay = asyncio.create_task(self._replay_loop(), name="usage-replay")
            if not self._spool.is_empty():
                self._replay_wanted.set()

    def observe(self, outcome: Outcome) -> None:
        """Record the usage event of ``outcome`` (built later, off the request's path)."""
        self.record(outcome)

    def record(self, item: Outcome | UsageRecorded) -> None:
        """Queue an event (or the outcome to make it from); never blocks, never raises."""
        if not self._closing:
            try:
                self._buffer.put_nowait(item)
                return
            except asyncio.QueueFull:
                _log.warning("usage buffer full; writing the event to the spool directly")
        self._spill_now([_as_event(item)])

    async def aclose(self) -> None:
        """Publish (or spool) everything buffered, then stop. Spooled events stay on disk."""
        if self._closing:
            return
        self._closing = True
        if self._drain is not None and not self._drain.done():
            await self._buffer.put(None)
            await self._drain
        if self._replay is not None:
            self._replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay
        self._spool.close()

    async def _drain_loop(self) -> None:
        while True:
            first = await self._buffer.get()
            if first is not None and self._config.linger_seconds > 0:
                # Let the request that queued it finish sending its response, and
                # more events arrive to share one batch.
                await asyncio.sleep(self._config.linger_seconds)
            items: list[Outcome | UsageRecorded] = []
            stop = first is None
            if first is not None:
                items.append(first)
            while not stop and len(items) < self._config.batch_size:
                try:
                    item = self._buffer.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stop = True
                else:
                    items.append(item)
            if items:
                await self._deliver_safely(items)
            if stop:
                return

    async def _deliver_safely(self, items: Sequence[Outcome | UsageRecorded]) -> None:
        """Deliver; an unexpected failure spools the batch and never ends the drain task."""
        batch: list[UsageRecorded] = []
        try:
            batch = [_as_event(item) for item in items]
            await self._deliver(batch)
        except Exception:
            _log.exception("delivering %d usage events failed; spooling them", len(items))
            self._spill_now(batch)

    async def _deliver(self, batch: Sequence[UsageRecorded]) -> None:
        if not self._spool.is_empty():
            await self._spill(batch)  # keep order behind what waits on disk
            return
        failed = await self._publish_all(batch)
        if failed:
            _log.warning("event bus did not take %d usage events; spooling them", len(failed))
            await self._spill(failed)

    async def _publish_all(self, events: Sequence[UsageRecorded]) -> list[UsageRecorded]:
        """Publish ``events`` concurrently; return those the bus did not accept in time.

        When the time runs out, every event of the batch counts as not accepted
        (some may have been: they are sent again, and consumers de-duplicate).
        """
        topic = self._config.topic
        try:
            async with asyncio.timeout(self._config.publish_timeout_seconds):
                if len(events) == 1:
                    await self._bus.publish(topic, events[0])
                    return []
                results = await asyncio.gather(
                    *(self._bus.publish(topic, event) for event in events),
                    return_exceptions=True,
                )
        except Exception:
            return list(events)
        return [
            event
            for event, result in zip(events, results, strict=True)
            if isinstance(result, Exception)
        ]

    async def _spill(self, events: Sequence[UsageRecorded]) -> None:
        try:
            await asyncio.to_thread(self._spool.append, [e.SerializeToString() for e in events])
        except OSError:
            _log.exception("cannot write %d usage events to the spool; they are lost", len(events))
        self._replay_wanted.set()

    def _spill_now(self, events: Sequence[UsageRecorded]) -> None:
        try:
            self._spool.append([e.SerializeToString() for e in events])
        except OSError:
            _log.exception("cannot write %d usage events to the spool; they are lost", len(events))
        self._replay_wanted.set()

    async def _replay_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._replay_wanted.wait(), self._config.replay_interval_seconds
                )
            self._replay_wanted.clear()
            if self._spool.is_empty():
                continue
            try:
                done = await self._replay_once()
            except Exception:
                _log.exception("replaying the usage spool failed; will retry")
                done = False
            if done:
                _log.info("usage spool replayed")

    async def _replay_once(self) -> bool:
        """Send spooled events, oldest first; True when the spool was emptied."""
        for segment in await asyncio.to_thread(self._spool.seal):
            start = self._progress.get(segment, 0)
            records = await asyncio.to_thread(_read_all, segment, start)
            position = start
            for index in range(0, len(records), self._config.batch_size):
                chunk = records[index : index + self._config.batch_size]
                events = [event for event in (_parse(p) for _, p in chunk) if event is not None]
                # Probe with one event first so a still-absent broker costs one timeout.
                if events and await self._publish_all(events[:1]):
                    self._progress[segment] = position
                    return False
                if await self._publish_all(events[1:]):
                    self._progress[segment] = position
                    return False
                position = chunk[-1][0]
            await asyncio.to_thread(self._spool.remove, segment)
            self._progress.pop(segment, None)
        return self._spool.is_empty()


def _as_event(item: Outcome | UsageRecorded) -> UsageRecorded:
    return item if isinstance(item, UsageRecorded) else usage_event(item)


def _read_all(segment: Path, start: int) -> list[tuple[int, bytes]]:
    return list(read_segment(segment, start))


def _parse(payload: bytes) -> UsageRecorded | None:
    event = UsageRecorded()
    try:
        event.ParseFromString(payload)
    except DecodeError:
        _log.warning("skipping an unreadable usage event in the spool")
        return None
    return event
