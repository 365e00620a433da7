"""One batch of Kafka records in, usage rollups, audit entries and spend out.

:meth:`Pipeline.handle` decodes each record with the kernel's CloudEvents
decoder and turns it into a fact (:mod:`services.usage.facts`). A record that
is not a well-formed event of its topic is copied to the dead-letter topic and
counted; the batch goes on. The facts are applied in one SQL transaction
(:meth:`~services.usage.store.UsageStore.apply`), then the spend of every
usage event is added to the spend ledger in Redis. The caller commits the
Kafka offsets only after ``handle`` returned; when it raises, nothing of the
batch may be considered done and the whole batch is handled again.

Spend is recorded for the events applied by this batch and also for
duplicates applied less than ``spend_recheck`` ago: if a process died after
the SQL commit but before Redis was written, the redelivered batch completes
the spend. The ledger is idempotent by event id for longer than that window,
so the second record of an event that did reach Redis changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from llmgw.events.v1 import events_pb2
from services.kernel.events import EventDecodeError, EventTypeRegistry, decode_event
from services.kernel.spend import SpendLedger, SpendSubject, SubjectKind
from services.usage.facts import AuditFact, MalformedEvent, UsageFact, audit_fact, usage_fact
from services.usage.metrics import PipelineMetrics
from services.usage.store import UsageStore

_log = logging.getLogger(__name__)

_SPEND_CONCURRENCY = 32
"""Spend records in flight at once (each is one Redis round trip)."""

DEAD_LETTER_REASON_HEADER = "llmgw-dead-letter-reason"
"""Header added to a dead-lettered record: why it was refused."""
DEAD_LETTER_ORIGIN_HEADER = "llmgw-dead-letter-origin"
"""Header added to a dead-lettered record: ``topic:partition@offset`` it came from."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as fetched from the broker."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class DeadLetters(Protocol):
    """Where malformed records go; ``send`` returns once the record is stored durably."""

    async def send(self, record: RawRecord, reason: str, detail: str) -> None:
        """Store ``record`` with why it was refused."""
        ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The topics the pipeline understands, the spend re-check window, and how long
    applied event ids are kept (pruned every ``prune_interval``; keep them longer
    than the topics keep events, and longer than ``spend_recheck``)."""

    usage_topic: str
    audit_topic: str
    spend_recheck: timedelta = timedelta(days=1)
    processed_retention: timedelta = timedelta(days=8)
    prune_interval: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Counts of one handled batch."""

    applied: int
    duplicates: int
    dead_lettered: int


EVENT_TYPES = EventTypeRegistry([events_pb2.UsageRecorded, events_pb2.AuditRecorded])
"""The events the pipeline decodes; any other ``ce_type`` is dead-lettered."""


class Pipeline:
    """Applies batches of records; see the module docstring for the guarantees."""

    def __init__(
        self,
        store: UsageStore,
        ledger: SpendLedger | None,
        *,
        dead_letters: DeadLetters,
        metrics: PipelineMetrics,
        config: PipelineConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Apply to ``store``; record spend in ``ledger`` (None: no budgets kept)."""
        self._store = store
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._next_prune = 0.0

    async def handle(self, records: Sequence[RawRecord]) -> BatchOutcome:
        """Apply ``records``; raises when any part failed (then retry the whole batch)."""
        usage: list[UsageFact] = []
        audit: list[AuditFact] = []
        topic_of: dict[str, str] = {}
        dead = 0
        for record in records:
            try:
                fact = self._fact(record)
            except (EventDecodeError, MalformedEvent) as exc:
                reason = "undecodable" if isinstance(exc, EventDecodeError) else "invalid"
                await self._dead_letters.send(record, reason, str(exc))
                self._metrics.dead_lettered.labels(topic=record.topic, reason=reason).inc()
                _log.warning(
                    "dead-lettered record %s:%d@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                dead += 1
                continue
            if isinstance(fact, UsageFact):
                usage.append(fact)
                topic_of.setdefault(fact.claim, record.topic)
            else:
                audit.append(fact)
                topic_of.setdefault(fact.claim, record.topic)
        if not usage and not audit:
            return BatchOutcome(0, 0, dead)
        now = int(self._clock())
        await self._prune(now)
        result = await self._store.apply(usage, audit, now)
        await self._record_spend(usage, result.new, result.duplicates, now)
        duplicates = 0
        counted: set[str] = set()
        for fact_id in [*(f.claim for f in usage), *(f.claim for f in audit)]:
            topic = topic_of[fact_id]
            if fact_id in result.new and fact_id not in counted:
                counted.add(fact_id)
                self._metrics.processed.labels(topic=topic).inc()
            else:
                duplicates += 1
                self._metrics.duplicates.labels(topic=topic).inc()
        return BatchOutcome(len(result.new), duplicates, dead)

    async def _prune(self, now: int) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + self._config.prune_interval.total_seconds()
        cutoff = now - int(self._config.processed_retention.total_seconds())
        forgotten = await self._store.forget_processed(cutoff)
        if forgotten:
            _log.info("forgot %d applied event ids older than the retention", forgotten)

    def _fact(self, record: RawRecord) -> UsageFact | AuditFact:
        decoded = decode_event(record.value, record.headers, EVENT_TYPES)
        attributes, event = decoded.attributes, decoded.event
        if isinstance(event, events_pb2.UsageRecorded) and record.topic == self._config.usage_topic:
            return usage_fact(attributes.id, attributes.time, event)
        if isinstance(event, events_pb2.AuditRecorded) and record.topic == self._config.audit_topic:
            return audit_fact(attributes.id, attributes.time, event)
        raise MalformedEvent(f"{attributes.type} does not belong on topic {record.topic}")

    async def _record_spend(
        self,
        usage: Sequence[UsageFact],
        new: frozenset[str],
        duplicates: dict[str, int],
        now: int,
    ) -> None:
        if self._ledger is None:
            return
        recheck_after = now - int(self._config.spend_recheck.total_seconds())
        recorded: set[str] = set()
        pending: list[tuple[UsageFact, list[SpendSubject]]] = []
        for fact in usage:
            if fact.event_id in recorded or not fact.total_nanos or not fact.currency_code:
                continue
            if fact.event_id not in new and duplicates.get(fact.event_id, 0) < recheck_after:
                continue
            subjects = [
                SpendSubject(kind, subject_id)
                for kind, subject_id in (
                    (SubjectKind.API_KEY, fact.api_key_id),
                    (SubjectKind.PROJECT, fact.project_id),
                )
                if subject_id
            ]
            if not subjects:
                continue
            recorded.add(fact.event_id)
            pending.append((fact, subjects))
        ledger = self._ledger
        for start in range(0, len(pending), _SPEND_CONCURRENCY):
            await asyncio.gather(
                *(
                    ledger.record(
                        fact.event_id,
                        fact.currency_code,
                        subjects,
                        fact.total_nanos,
                        datetime.fromtimestamp(fact.at, UTC),
                    )
                    for fact, subjects in pending[start : start + _SPEND_CONCURRENCY]
                )
            )
