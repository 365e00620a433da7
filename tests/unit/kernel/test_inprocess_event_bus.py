"""The single-process event bus keeps the bus contract on asyncio queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from google.protobuf.duration_pb2 import Duration

from llmgw.events.v1 import events_pb2
from services.kernel.events import (
    Envelope,
    EventHandler,
    EventTypeRegistry,
    InProcessConfig,
    InProcessEventBus,
    RetryPolicy,
)

TOPIC = "llmgw.usage.v1"
FAST_RETRY = RetryPolicy(initial_backoff_seconds=0.01, max_backoff_seconds=0.05)


@pytest.fixture
async def bus() -> AsyncIterator[InProcessEventBus]:
    registry = EventTypeRegistry.from_module(events_pb2)
    bus = InProcessEventBus(registry, "//llmgw/tests", InProcessConfig(retry=FAST_RETRY))
    yield bus
    await bus.close()


def usage(request_id: str) -> events_pb2.UsageRecorded:
    event = events_pb2.UsageRecorded(request_id=request_id)
    event.metadata.subject = request_id
    return event


def request_ids(envelopes: list[Envelope]) -> list[str]:
    return [e.event.request_id for e in envelopes if isinstance(e.event, events_pb2.UsageRecorded)]


async def test_subscriber_receives_a_decoded_copy_with_attributes(bus: InProcessEventBus) -> None:
    received: list[Envelope] = []

    async def handle(envelope: Envelope) -> None:
        received.append(envelope)

    await bus.subscribe([TOPIC], "usage-aggregator", handle)
    event = usage("r1")
    await bus.publish(TOPIC, event)
    await asyncio.wait_for(bus.drain(), 5)

    [envelope] = received
    assert envelope.event is not event
    assert request_ids(received) == ["r1"]
    assert envelope.type == "llmgw.events.v1.UsageRecorded"
    assert envelope.source == "//llmgw/tests"
    assert envelope.subject == "r1"
    assert envelope.key == b"r1"
    assert envelope.topic == TOPIC
    assert (envelope.partition, envelope.offset) == (0, 0)
    assert isinstance(envelope.event, events_pb2.UsageRecorded)
    assert envelope.event.metadata.id == envelope.id


async def test_every_group_gets_every_event_and_members_share_them(
    bus: InProcessEventBus,
) -> None:
    audit: list[Envelope] = []
    usage_members: list[list[Envelope]] = [[], []]

    async def handle_audit(envelope: Envelope) -> None:
        audit.append(envelope)

    def member(index: int) -> EventHandler:
        async def handle(envelope: Envelope) -> None:
            usage_members[index].append(envelope)
            await asyncio.sleep(0)

        return handle

    await bus.subscribe([TOPIC], "audit", handle_audit)
    await bus.subscribe([TOPIC], "usage", member(0))
    await bus.subscribe([TOPIC], "usage", member(1))
    for n in range(20):
        await bus.publish(TOPIC, usage(f"r{n}"))
    await asyncio.wait_for(bus.drain(), 5)

    expected = [f"r{n}" for n in range(20)]
    assert request_ids(audit) == expected
    shared = request_ids(usage_members[0]) + request_ids(usage_members[1])
    assert sorted(shared) == sorted(expected)
    assert all(usage_members), "both members of the group should have worked"


async def test_failing_handler_gets_the_same_event_again(bus: InProcessEventBus) -> None:
    attempts: list[str] = []

    async def flaky(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if len(attempts) < 3:
            raise RuntimeError("downstream unavailable")

    await bus.subscribe([TOPIC], "flaky", flaky)
    await bus.publish(TOPIC, usage("r1"))
    await asyncio.wait_for(bus.drain(), 5)

    assert len(attempts) == 3
    assert len(set(attempts)) == 1


async def test_unknown_event_types_are_skipped(bus: InProcessEventBus) -> None:
    received: list[Envelope] = []

    async def handle(envelope: Envelope) -> None:
        received.append(envelope)

    await bus.subscribe([TOPIC], "g", handle)
    await bus.publish(TOPIC, Duration(seconds=1))
    await bus.publish(TOPIC, usage("r1"))
    await asyncio.wait_for(bus.drain(), 5)

    assert request_ids(received) == ["r1"]


async def test_events_without_subscribers_are_dropped(bus: InProcessEventBus) -> None:
    await bus.publish("nobody.listens", usage("r1"))
    await asyncio.wait_for(bus.drain(), 5)


async def test_group_topics_are_fixed_by_the_first_subscription(bus: InProcessEventBus) -> None:
    async def handle(envelope: Envelope) -> None:
        return None

    await bus.subscribe([TOPIC], "g", handle)
    with pytest.raises(ValueError, match="consumes"):
        await bus.subscribe(["other"], "g", handle)


async def test_close_stops_subscriptions_and_refuses_publishing(bus: InProcessEventBus) -> None:
    async def handle(envelope: Envelope) -> None:
        return None

    subscription = await bus.subscribe([TOPIC], "g", handle)
    await bus.close()

    assert not subscription.running
    with pytest.raises(RuntimeError, match="closed"):
        await bus.publish(TOPIC, usage("r1"))


async def test_stop_waits_for_the_event_in_hand(bus: InProcessEventBus) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(envelope: Envelope) -> None:
        started.set()
        await asyncio.sleep(0.05)
        finished.append(envelope.id)

    subscription = await bus.subscribe([TOPIC], "g", slow)
    await bus.publish(TOPIC, usage("r1"))
    await asyncio.wait_for(started.wait(), 5)
    await subscription.stop()

    assert len(finished) == 1


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_seconds=0.1, max_backoff_seconds=0.5, multiplier=2)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
