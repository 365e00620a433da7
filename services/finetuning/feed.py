"""The ``WatchJob`` stream and the event relay to the bus.

:class:`JobFeed` streams a job's events after a given sequence, in order,
without gaps or duplicates (a reconnecting client passes the last sequence it
received), and ends after the event that moved the job to a terminal state.
New events are noticed at once when this process wrote them
(:meth:`JobFeed.notify`), else within the poll interval.

:class:`EventRelay` publishes the event log (the outbox) as ``FineTuneJobEvent``
(id = the job event id, subject = the job id), and, for the event that ends a
job that trained tokens, one ``UsageRecorded`` (id = the job id, operation
FINE_TUNE, input tokens = trained tokens). Delivery is at least once; the ids
are stable so consumers drop duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.store import TERMINAL_STATES, FineTuningStore, StoredEvent
from services.kernel.waiting import wait_or_timeout

_log = logging.getLogger(__name__)

SOURCE = "//llmgw/finetuning"


class JobFeed:
    """Watch streams over the job event log."""

    def __init__(
        self, store: FineTuningStore, poll_interval_seconds: float, batch_size: int = 500
    ) -> None:
        """Serve watches of ``store``."""
        self._store = store
        self._poll = poll_interval_seconds
        self._batch = batch_size
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Wake every watcher: an event was committed."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def watch(self, job_id: str, after_sequence: int) -> AsyncIterator[StoredEvent]:
        """Events after ``after_sequence`` until the terminal one (module docstring)."""
        last = after_sequence
        while True:
            wake = self._wake
            batch = await asyncio.shield(self._store.events(job_id, last, self._batch))
            for stored in batch:
                yield stored
                last = stored.event.sequence
                if (
                    stored.event.type == ft.JOB_EVENT_TYPE_STATE_CHANGED
                    and stored.event.state in TERMINAL_STATES
                ):
                    return
            if not batch:
                job = await asyncio.shield(self._store.job(job_id))
                if (
                    job is not None
                    and job.state in TERMINAL_STATES
                    and job.last_event_sequence <= last
                ):
                    return
            if len(batch) < self._batch:
                await wait_or_timeout(wake, self._poll)


class Publisher(Protocol):
    """Where events go: the ``publish`` of an :class:`~services.kernel.events.EventBus`."""

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Send ``event`` to ``topic``; return once accepted durably, raise otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Topics, polling and retry of the relay."""

    topic: str = "llmgw.finetuning.v1"
    usage_topic: str = "llmgw.usage.v1"
    poll_interval_seconds: float = 1.0
    retry_seconds: float = 2.0
    batch_size: int = 200


def job_event(stored: StoredEvent) -> events_pb2.FineTuneJobEvent:
    """The bus event of one job event."""
    event = events_pb2.FineTuneJobEvent(event=stored.event, job=stored.job)
    event.metadata.id = stored.event.id
    event.metadata.source = SOURCE
    event.metadata.subject = stored.job.id
    event.metadata.time.CopyFrom(stored.event.create_time)
    return event


def usage_recorded(job: ft.Job) -> events_pb2.UsageRecorded:
    """The usage event of a finished job: trained tokens as input tokens, and their cost."""
    event = events_pb2.UsageRecorded(
        request_id=job.id,
        operation=events_pb2.INFERENCE_OPERATION_FINE_TUNE,
        project_id=job.project_id,
        requested_model=job.base_model,
        served_by=common_pb2.ServingInfo(
            provider=job.backend, model=job.base_model_name, model_version=job.base_model_version
        ),
        usage=common_pb2.Usage(
            input_tokens=job.trained_tokens,
            total_tokens=job.trained_tokens,
            source=common_pb2.USAGE_SOURCE_PROVIDER,
        ),
        cost=common_pb2.Cost(
            currency_code=job.cost.currency_code,
            input_nanos=job.cost.amount_nanos,
            total_nanos=job.cost.amount_nanos,
        ),
        tags=dict(job.labels),
    )
    event.metadata.id = job.id
    event.metadata.source = SOURCE
    event.metadata.subject = job.id
    event.metadata.time.CopyFrom(job.end_time)
    event.start_time.CopyFrom(job.create_time)
    if job.state == ft.JOB_STATE_FAILED:
        event.error.CopyFrom(job.error)
    return event


class EventRelay:
    """Publishes the outbox; run :meth:`run` as a task and :meth:`notify` after commits."""

    def __init__(self, store: FineTuningStore, publisher: Publisher, config: RelayConfig) -> None:
        """Relay ``store``'s events to ``publisher``."""
        self._store = store
        self._publisher = publisher
        self._config = config
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """An event was committed; publish soon."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish every unpublished event now; returns how many."""
        total = 0
        while True:
            batch = await self._store.unpublished(self._config.batch_size)
            if not batch:
                return total
            done: list[ft.JobEvent] = []
            try:
                for stored in batch:
                    await self._publisher.publish(self._config.topic, job_event(stored))
                    ended = (
                        stored.event.type == ft.JOB_EVENT_TYPE_STATE_CHANGED
                        and stored.event.state in TERMINAL_STATES
                    )
                    if ended and stored.job.trained_tokens > 0:
                        await self._publisher.publish(
                            self._config.usage_topic, usage_recorded(stored.job)
                        )
                    done.append(stored.event)
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
                _log.warning("publishing fine-tuning events failed; retrying", exc_info=True)
                delay = self._config.retry_seconds
            await wait_or_timeout(self._wake, delay)
