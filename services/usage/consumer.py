"""The Kafka side of the pipeline: fetch a batch, hand it over, then commit.

:class:`BatchConsumer` runs one ``AIOKafkaConsumer`` of the consumer group
(auto-commit off) on the usage and audit topics. Each fetched batch goes to
:meth:`~services.usage.pipeline.Pipeline.handle` whole; only when that returns
are the batch's offsets committed. When it raises (database or Redis away),
the consumer seeks back to the start of the batch and hands it over again
after a backoff, so nothing is skipped; when the commit fails (a rebalance
moved the partitions), the next owner gets the batch again and the pipeline's
de-duplication makes that harmless. Start more replicas with the same
``group_id`` to share the partitions.

:class:`KafkaDeadLetters` copies refused records, value and headers as they
were plus two headers saying why and where from, to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from services.kernel.events import KafkaConfig, RetryPolicy, connection_kwargs
from services.usage.metrics import PipelineMetrics
from services.usage.pipeline import (
    DEAD_LETTER_ORIGIN_HEADER,
    DEAD_LETTER_REASON_HEADER,
    Pipeline,
    RawRecord,
)

_log = logging.getLogger(__name__)

_POSITION_WAIT_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Which topics and group, how much per batch, and the retry backoff."""

    topics: tuple[str, ...]
    group_id: str
    max_batch_records: int = 500
    poll_timeout_ms: int = 500
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    commit_timeout_seconds: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class KafkaDeadLetters:
    """Copies refused records to ``topic``; connects on first use."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        """Prepare; nothing connects before the first :meth:`send`."""
        self._config = config
        self._topic = topic
        self._producer: Any = None

    async def send(self, record: RawRecord, reason: str, detail: str) -> None:
        """Write ``record`` and wait for the brokers' acknowledgement."""
        if self._producer is None:
            producer = AIOKafkaProducer(
                **connection_kwargs(self._config), acks="all", enable_idempotence=False
            )
            await producer.start()
            self._producer = producer
        headers = [
            *record.headers,
            (DEAD_LETTER_REASON_HEADER, f"{reason}: {detail}".encode()),
            (
                DEAD_LETTER_ORIGIN_HEADER,
                f"{record.topic}:{record.partition}@{record.offset}".encode(),
            ),
        ]
        try:
            await self._producer.send_and_wait(
                self._topic, record.value, key=record.key, headers=headers
            )
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the producer, if one is open."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()


class BatchConsumer:
    """Feeds whole batches of the group's records to a pipeline; see the module docstring."""

    def __init__(
        self,
        kafka: KafkaConfig,
        settings: ConsumerSettings,
        pipeline: Pipeline,
        metrics: PipelineMetrics,
    ) -> None:
        """Prepare; :meth:`run` connects."""
        self._kafka = kafka
        self._settings = settings
        self._pipeline = pipeline
        self._metrics = metrics

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set, then leave the group."""
        consumer = await self._connect(stopping)
        if consumer is None:
            return
        stop_requested = asyncio.ensure_future(stopping.wait())
        failures = 0
        try:
            while not stopping.is_set():
                fetch = asyncio.ensure_future(
                    consumer.getmany(
                        timeout_ms=self._settings.poll_timeout_ms,
                        max_records=self._settings.max_batch_records,
                    )
                )
                await asyncio.wait({fetch, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.wait({fetch})
                    break
                try:
                    ok = await self._handle(consumer, fetch.result())
                except KafkaError as exc:
                    _log.warning("fetching usage events failed, will retry: %r", exc)
                    ok = False
                except Exception:
                    _log.exception("the usage consumer hit an unexpected error; will retry")
                    ok = False
                failures = 0 if ok else failures + 1
                if not ok:
                    delay = self._settings.retry.backoff(failures)
                    await asyncio.wait({stop_requested}, timeout=delay)
        finally:
            stop_requested.cancel()
            await consumer.stop()

    async def _connect(self, stopping: asyncio.Event) -> Any:
        """A started consumer, retrying while the broker is away; None when stopped first."""
        attempt = 0
        while not stopping.is_set():
            consumer = AIOKafkaConsumer(
                *self._settings.topics,
                **{
                    **connection_kwargs(self._kafka),
                    "client_id": f"{self._kafka.client_id}-{self._settings.group_id}",
                },
                group_id=self._settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._settings.session_timeout_ms,
                heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
            )
            try:
                await consumer.start()
                return consumer
            except (KafkaError, OSError) as exc:
                await consumer.stop()
                attempt += 1
                _log.warning("event broker not reachable, will retry: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._settings.retry.backoff(attempt))
        return None

    async def _handle(self, consumer: Any, batch: dict[TopicPartition, list[Any]]) -> bool:
        """Apply and commit one batch; False when it must be fetched again."""
        records = [_raw(record) for records in batch.values() for record in records]
        if records:
            try:
                with self._metrics.batch_seconds.time():
                    await self._pipeline.handle(records)
            except Exception:
                _log.exception("applying a batch of %d usage records failed", len(records))
                self._metrics.batch_failures.inc()
                for partition, fetched in batch.items():
                    if fetched:
                        consumer.seek(partition, fetched[0].offset)
                return False
            offsets = {tp: fetched[-1].offset + 1 for tp, fetched in batch.items() if fetched}
            try:
                await asyncio.wait_for(
                    consumer.commit(offsets), self._settings.commit_timeout_seconds
                )
            except (KafkaError, TimeoutError) as exc:
                # The partitions moved to another member, or the broker lost the topic:
                # whoever reads them next gets the batch again and skips it as duplicates.
                _log.warning("offset commit failed, the batch may be redelivered: %r", exc)
        await self._refresh_lag(consumer)
        return True

    async def _refresh_lag(self, consumer: Any) -> None:
        for tp in consumer.assignment():
            with contextlib.suppress(KafkaError, AssertionError, TimeoutError):
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                # Known at once after a fetch; right after a rebalance it may not be yet.
                position = await asyncio.wait_for(consumer.position(tp), _POSITION_WAIT_SECONDS)
                self._metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(highwater - position, 0)
                )


def _raw(record: Any) -> RawRecord:
    return RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers or ()),
    )
