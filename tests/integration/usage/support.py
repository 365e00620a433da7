"""Building usage and audit events, and running the real usage process, in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.usage.v1 import usage_pb2, usage_pb2_grpc
from services.kernel.events import EventTypeRegistry, KafkaConfig, KafkaEventBus
from services.kernel.server import KernelServer
from services.usage.app import build
from services.usage.settings import UsageSettings

BASE_TIME = int(time.time()) // 86400 * 86400
"""Midnight (UTC) of today, the start of every test's events (spend counters of
periods long past expire at once, so the events are recent)."""


def usage_event(
    request_id: str,
    *,
    api_key_id: str = "key-a",
    project_id: str = "proj-1",
    model: str = "sim",
    provider: str = "simulated",
    input_tokens: int = 10,
    output_tokens: int = 5,
    cost_nanos: int = 1000,
    currency: str = "USD",
    at: int = BASE_TIME,
    tags: Mapping[str, str] | None = None,
    cached: bool = False,
    failed: bool = False,
) -> events_pb2.UsageRecorded:
    """A ``UsageRecorded`` whose id and subject are ``request_id``."""
    event = events_pb2.UsageRecorded(
        request_id=request_id,
        api_key_id=api_key_id,
        project_id=project_id,
        requested_model=model,
        served_by=common_pb2.ServingInfo(provider=provider, model=model),
        usage=common_pb2.Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        ),
        cost=common_pb2.Cost(
            currency_code=currency,
            input_nanos=cost_nanos // 2,
            output_nanos=cost_nanos - cost_nanos // 2,
            total_nanos=cost_nanos,
        ),
        cached=cached,
        tags=dict(tags or {}),
    )
    if failed:
        event.error.code = 14
        event.error.message = "upstream unavailable"
    event.metadata.id = request_id
    event.metadata.subject = request_id
    event.metadata.source = "//llmgw/tests"
    event.metadata.time.FromSeconds(at + 1)
    event.start_time.FromSeconds(at)
    return event


def audit_event(
    entry_id: str,
    *,
    actor_id: str = "alice",
    project_id: str = "proj-1",
    action: str = "models.aliases.update",
    resource: str = "models/bot/aliases/prod",
    at_micros: int = BASE_TIME * 1_000_000,
) -> events_pb2.AuditRecorded:
    """An ``AuditRecorded`` whose id is ``entry_id``."""
    event = events_pb2.AuditRecorded(
        entry=common_pb2.AuditEntry(
            id=entry_id,
            actor=common_pb2.Actor(
                type=common_pb2.ACTOR_TYPE_USER, id=actor_id, project_id=project_id
            ),
            action=action,
            resource=resource,
        )
    )
    event.entry.time.FromMicroseconds(at_micros)
    event.metadata.id = entry_id
    event.metadata.subject = resource
    event.metadata.source = "//llmgw/tests"
    return event


def time_range(start: int, end: int | None = None) -> common_pb2.TimeRange:
    """``[start, end)`` in epoch seconds; no end means now."""
    value = common_pb2.TimeRange()
    value.start_time.FromSeconds(start)
    if end is not None:
        value.end_time.FromSeconds(end)
    return value


def producer_bus(bootstrap: str) -> KafkaEventBus:
    """A bus for publishing test events."""
    return KafkaEventBus(
        KafkaConfig(bootstrap, client_id="llmgw-tests"),
        EventTypeRegistry.from_module(events_pb2),
        "//llmgw/tests",
    )


def settings_for(
    database_url: str,
    *,
    kafka_bootstrap: str = "",
    redis_url: str | None = None,
    usage_topic: str = "llmgw.usage.v1",
    audit_topic: str = "llmgw.audit.v1",
    dead_letter_topic: str = "llmgw.usage.deadletter.v1",
    group_id: str = "llmgw-usage",
    spend_namespace: str = "llmgw",
    max_batch_records: int = 500,
) -> UsageSettings:
    """Settings of a usage process on a free port with test-friendly timings."""
    return UsageSettings.model_validate(
        {
            "server": {"port": 0, "grace_period_seconds": 1},
            "database_url": database_url,
            "redis_url": redis_url,
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "pipeline": pipeline_section(
                usage_topic=usage_topic,
                audit_topic=audit_topic,
                dead_letter_topic=dead_letter_topic,
                group_id=group_id,
                spend_namespace=spend_namespace,
                max_batch_records=max_batch_records,
            ),
        }
    )


def pipeline_section(**values: Any) -> dict[str, Any]:
    """The ``pipeline`` settings with short timeouts (see the kernel's Kafka bus test)."""
    return {
        "poll_timeout_ms": 200,
        "session_timeout_ms": 1000,
        "heartbeat_interval_ms": 200,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.5,
        **values,
    }


@dataclass
class RunningUsage:
    """A served usage process."""

    server: KernelServer
    stub: usage_pb2_grpc.UsageServiceAsyncStub
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the process's metrics (0 when absent)."""
        value = self.registry.get_sample_value(name, labels)
        return value or 0.0

    async def totals(self, start: int = BASE_TIME - 86400) -> usage_pb2.UsageTotals:
        """The totals of everything from ``start`` until now."""
        response = await self.stub.QueryUsage(
            usage_pb2.QueryUsageRequest(time_range=time_range(start))
        )
        return response.totals


@asynccontextmanager
async def running_usage(settings: UsageSettings) -> AsyncIterator[RunningUsage]:
    """Serve the real usage process until the block exits."""
    registry = CollectorRegistry()
    server = KernelServer(build(settings, registry, env={}), settings.server, registry)
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub: usage_pb2_grpc.UsageServiceAsyncStub = usage_pb2_grpc.UsageServiceStub(channel)
        yield RunningUsage(server, stub, registry)
    finally:
        await channel.close(None)
        await server.drain(grace_seconds=1)


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> None:
    """Wait until the coroutine function or function ``check`` returns a true value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.1)
