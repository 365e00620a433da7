"""The Kafka event bus on a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from llmgw.events.v1 import events_pb2
from services.kernel.events import (
    ConsumerConfig,
    Envelope,
    EventTypeRegistry,
    KafkaConfig,
    KafkaEventBus,
    RetryPolicy,
)
from services.kernel.events.cloudevents import parse_time

pytestmark = pytest.mark.integration

SOURCE = "//llmgw/tests"
WAIT_SECONDS = 20.0


class Collector:
    """A handler that records envelopes and lets a test wait for a count."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self._changed = asyncio.Event()

    async def __call__(self, envelope: Envelope) -> None:
        self.received.append(envelope)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async def reached() -> None:
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), WAIT_SECONDS)

    @property
    def request_ids(self) -> list[str]:
        return sorted(
            e.event.request_id
            for e in self.received
            if isinstance(e.event, events_pb2.UsageRecorded)
        )


def usage(request_id: str) -> events_pb2.UsageRecorded:
    event = events_pb2.UsageRecorded(request_id=request_id, project_id="proj")
    event.metadata.subject = request_id
    return event


@pytest.fixture
async def bus(kafka_bootstrap: str) -> AsyncIterator[KafkaEventBus]:
    config = KafkaConfig(
        kafka_bootstrap,
        client_id="llmgw-tests",
        consumer=ConsumerConfig(
            poll_timeout_ms=200,
            # Tansu answers a JoinGroup after about half the session timeout and,
            # as it numbers the first generation 0, aiokafka skips LeaveGroup, so
            # a member that stopped is only dropped when its session expires.
            # Real Kafka would refuse a value this low (group.min.session.timeout.ms).
            session_timeout_ms=1000,
            heartbeat_interval_ms=200,
            retry=RetryPolicy(initial_backoff_seconds=0.05, max_backoff_seconds=0.2),
        ),
    )
    async with KafkaEventBus(config, EventTypeRegistry.from_module(events_pb2), SOURCE) as bus:
        yield bus


async def test_committed_offsets_are_honoured_by_a_new_consumer(
    bus: KafkaEventBus, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("usage"), unique_name("aggregator")
    for n in range(6):
        await bus.publish(topic, usage(f"first-{n}"))

    first = Collector()
    subscription = await bus.subscribe([topic], group, first)
    await first.wait_for(6)
    await subscription.stop()
    assert first.request_ids == [f"first-{n}" for n in range(6)]

    for n in range(3):
        await bus.publish(topic, usage(f"later-{n}"))
    second = Collector()
    subscription = await bus.subscribe([topic], group, second)
    await second.wait_for(3)
    await asyncio.sleep(0.5)  # room for wrongly redelivered events to show up
    await subscription.stop()

    assert second.request_ids == [f"later-{n}" for n in range(3)]


async def test_every_group_sees_every_event(
    bus: KafkaEventBus, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("usage")
    audit, usage_group = Collector(), Collector()
    await bus.subscribe([topic], unique_name("audit"), audit)
    await bus.subscribe([topic], unique_name("usage"), usage_group)

    for n in range(4):
        await bus.publish(topic, usage(f"r{n}"))
    await audit.wait_for(4)
    await usage_group.wait_for(4)

    assert audit.request_ids == usage_group.request_ids == [f"r{n}" for n in range(4)]


async def test_failed_handler_is_retried_before_offsets_move(
    bus: KafkaEventBus, unique_name: Callable[[str], str]
) -> None:
    topic, group = unique_name("usage"), unique_name("flaky")
    attempts: list[str] = []
    succeeded = asyncio.Event()

    async def flaky(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if len(attempts) < 3:
            raise RuntimeError("downstream unavailable")
        succeeded.set()

    await bus.publish(topic, usage("r1"))
    subscription = await bus.subscribe([topic], group, flaky)
    await asyncio.wait_for(succeeded.wait(), WAIT_SECONDS)
    await subscription.stop()
    assert len(set(attempts)) == 1

    # Same key, same partition: a redelivered r1 would arrive before r2.
    await bus.publish(topic, usage("r2"), key=b"r1")
    after = Collector()
    subscription = await bus.subscribe([topic], group, after)
    await after.wait_for(1)
    await subscription.stop()
    assert after.request_ids == ["r2"], "the handled event was committed and must not come back"


async def test_records_carry_cloudevents_binary_mode_headers(
    bus: KafkaEventBus, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("usage")
    event = usage("req-42")
    event.metadata.id = "evt-42"
    await bus.publish(topic, event)
    await bus.publish(topic, usage("req-43"), key=b"explicit-key")

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        records: list[Any] = []
        while len(records) < 2:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), WAIT_SECONDS)
            records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()

    by_key = {record.key: record for record in records}
    record = by_key[b"req-42"]
    headers = {name: value.decode() for name, value in record.headers}
    payload = events_pb2.UsageRecorded.FromString(record.value)
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == "evt-42" == payload.metadata.id
    assert headers["ce_source"] == SOURCE == payload.metadata.source
    assert headers["ce_type"] == "llmgw.events.v1.UsageRecorded"
    assert headers["ce_subject"] == "req-42"
    assert headers["content-type"] == "application/protobuf"
    sent_at = parse_time(headers["ce_time"])
    assert sent_at == payload.metadata.time.ToDatetime(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 60
    assert payload.request_id == "req-42"
    assert b"explicit-key" in by_key
