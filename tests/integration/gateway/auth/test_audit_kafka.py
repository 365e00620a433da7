"""Audit events of refused calls and admin actions arrive on a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from llmgw.admin.v1 import admin_pb2 as pb
from llmgw.events.v1 import events_pb2
from services.kernel.events import Envelope, EventTypeRegistry, KafkaConfig, KafkaEventBus
from tests.integration.gateway.auth.support import (
    admin_key,
    bearer,
    completion,
    secure_gateway,
)
from tests.integration.models.rpc_errors import failure
from tests.unit.gateway.raw_upstream import RawReplica

pytestmark = pytest.mark.integration


async def test_audit_events_arrive_on_kafka(
    sqlite_url: str,
    upstream: RawReplica,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
) -> None:
    topic = unique_name("audit")
    key_file = tmp_path / "admin.key"
    async with secure_gateway(
        sqlite_url,
        [upstream.address],
        key_file,
        kafka_bootstrap=kafka_bootstrap,
        audit_topic=topic,
    ) as gateway:
        await failure(gateway.complete()(completion(), metadata=bearer("nope"), timeout=5))
        await gateway.admin.CreateProject(
            pb.CreateProjectRequest(project=pb.Project(id="audited")),
            metadata=bearer(admin_key(key_file)),
        )
        await gateway.security.audit.aclose()

    received: list[Envelope] = []
    done = asyncio.Event()

    async def handle(envelope: Envelope) -> None:
        received.append(envelope)
        if len(received) >= 2:
            done.set()

    bus = KafkaEventBus(
        KafkaConfig(bootstrap_servers=kafka_bootstrap),
        EventTypeRegistry.from_module(events_pb2),
        "//tests",
    )
    await bus.start()
    try:
        await bus.subscribe([topic], unique_name("group"), handle)
        await asyncio.wait_for(done.wait(), 60)
    finally:
        await bus.close()
    events = [envelope.event for envelope in received]
    assert all(isinstance(event, events_pb2.AuditRecorded) for event in events)
    entries = [event.entry for event in events if isinstance(event, events_pb2.AuditRecorded)]
    # keyed by resource, so the two may sit on different partitions: no order between them
    assert sorted((e.action, e.resource) for e in entries) == [
        ("admin.projects.create", "projects/audited"),
        ("gateway.calls.authenticate", "/llmgw.inference.v1.InferenceService/Complete"),
    ]
    assert [envelope.id for envelope in received] == [e.id for e in entries]
    assert {envelope.source for envelope in received} == {"//llmgw/gateway"}


async def test_the_gateway_serves_while_the_broker_is_away(
    sqlite_url: str, upstream: RawReplica, tmp_path: Path
) -> None:
    key_file = tmp_path / "admin.key"
    async with secure_gateway(
        sqlite_url, [upstream.address], key_file, kafka_bootstrap="127.0.0.1:1"
    ) as gateway:
        error = await failure(gateway.complete()(completion(), metadata=bearer("x"), timeout=5))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        await gateway.admin.CreateProject(
            pb.CreateProjectRequest(project=pb.Project(id="offline")),
            metadata=bearer(admin_key(key_file)),
            timeout=5,
        )
        await gateway.complete()(completion(), metadata=bearer(admin_key(key_file)), timeout=5)
