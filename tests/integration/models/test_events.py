"""Every change is a ModelChanged and an AuditRecorded event, also through a real Kafka broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from google.protobuf import json_format

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.models.v1 import models_pb2 as pb
from services.kernel.events import (
    ConsumerConfig,
    Envelope,
    EventTypeRegistry,
    KafkaConfig,
    KafkaEventBus,
    RetryPolicy,
)
from services.models.relay import AUDIT_TOPIC, MODELS_TOPIC, SOURCE
from tests.integration.models.conftest import ACTOR, Running, model_with_versions, serving

pytestmark = pytest.mark.integration


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds, failing after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_each_change_is_one_model_changed_and_one_audit_event(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 2)
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="1", alias="production"), metadata=ACTOR
    )
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="2", alias="production"), metadata=ACTOR
    )
    events = registry.events
    await wait_for(lambda: len(events.of_topic(MODELS_TOPIC)) == 7)

    changed = [e for e in events.of_topic(MODELS_TOPIC) if isinstance(e, events_pb2.ModelChanged)]
    assert [e.metadata.id for e in changed] == [str(n) for n in range(1, 8)]
    assert [e.change.revision for e in changed] == list(range(1, 8))
    assert changed[-1].metadata.subject == "models/bot/aliases/production"
    assert changed[-1].metadata.source == SOURCE

    audits = [e for e in events.of_topic(AUDIT_TOPIC) if isinstance(e, events_pb2.AuditRecorded)]
    assert len(audits) == 7
    last = audits[-1].entry
    assert last.action == "models.aliases.promote"
    assert last.resource == "models/bot/aliases/production"
    assert last.actor == common_pb2.Actor(
        type=common_pb2.ACTOR_TYPE_USER, id="alice", project_id="support"
    )
    assert last.request_id
    details = json_format.MessageToDict(last.details)
    assert details["before"]["version"] == "1"
    assert details["after"]["version"] == "2"
    assert audits[-1].metadata.id == last.id
    created = audits[0].entry
    assert created.action == "models.create"
    assert json_format.MessageToDict(created.details)["before"] is None


async def test_events_reach_kafka(
    database_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    config = KafkaConfig(
        kafka_bootstrap,
        client_id="llmgw-models-tests",
        consumer=ConsumerConfig(
            poll_timeout_ms=200,
            session_timeout_ms=1000,
            heartbeat_interval_ms=200,
            retry=RetryPolicy(initial_backoff_seconds=0.05, max_backoff_seconds=0.2),
        ),
    )
    types = EventTypeRegistry.from_module(events_pb2)
    received: dict[str, Envelope] = {}

    async def keep(envelope: Envelope) -> None:
        received[f"{envelope.type}:{envelope.id}"] = envelope

    topics = (unique_name("models"), unique_name("audit"))
    async with (
        KafkaEventBus(config, types, SOURCE) as bus,
        serving(database_url, publisher=bus, topics=topics) as registry,
    ):
        await model_with_versions(registry.stub, "bot", 1)
        await registry.stub.PromoteVersion(
            pb.PromoteVersionRequest(model="bot", version="1", alias="production"),
            metadata=ACTOR,
        )
        subscription = await bus.subscribe(list(topics), unique_name("registry-events"), keep)
        try:
            await wait_for(lambda: len(received) >= 8, seconds=20)
        finally:
            await subscription.stop()
    model_changed = "llmgw.events.v1.ModelChanged"
    ids = sorted(int(k.split(":")[1]) for k in received if k.startswith(model_changed))
    assert ids == [1, 2, 3, 4]
    audits = [e for e in received.values() if isinstance(e.event, events_pb2.AuditRecorded)]
    assert {e.topic for e in audits} == {topics[1]}
    assert len(audits) == 4
    alias_event = received[f"{model_changed}:4"]
    assert alias_event.subject == "models/bot/aliases/production"
    assert alias_event.key == b"models/bot/aliases/production"
    assert isinstance(alias_event.event, events_pb2.ModelChanged)
    assert alias_event.event.change.alias.version == "1"
