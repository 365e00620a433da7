"""Running the real inference process (``services.inference.app.build``) in a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2_grpc
from services.inference.app import build
from services.inference.settings import InferenceSettings
from services.kernel.events import (
    ConsumerConfig,
    Envelope,
    EventTypeRegistry,
    KafkaConfig,
    KafkaEventBus,
    RetryPolicy,
)
from services.kernel.server import KernelServer
from tests.integration.inference.helpers import eventually

ROUTING = """
versions:
  - &sim
    model: sim
    version: "1"
    provider: simulated
    provider_model_id: sim-1
    context_window: 8192
    max_output_tokens: 1024
    capabilities: [CAPABILITY_CHAT, CAPABILITY_STREAMING]
    pricing:
      currency_code: USD
      input_per_million_nanos: "1000000000"
      output_per_million_nanos: "2000000000"
  - <<: *sim
    model: sim-slow
    provider_model_id: sim-slow-1
    provider_options: {output_tokens: "40", tokens_per_second: "20"}
"""


def write_routing(directory: Path) -> Path:
    path = directory / "routing.yaml"
    path.write_text(ROUTING, encoding="utf-8")
    return path


def settings_for(
    tmp_path: Path,
    *,
    redis_url: str | None = None,
    redis_prefix: str = "",
    kafka_bootstrap: str = "",
    topic: str = "llmgw.usage.v1",
    publish_timeout_seconds: float = 2.0,
    registry_address: str | None = None,
    registry_start_timeout_seconds: float = 10.0,
) -> InferenceSettings:
    data: dict[str, Any] = {
        "service": "inference",
        "server": {"port": 0, "grace_period_seconds": 1},
        "redis_url": redis_url,
        "kafka": {"bootstrap_servers": kafka_bootstrap},
        "routing": {
            "file": str(write_routing(tmp_path)),
            "redis_key_prefix": f"{redis_prefix}routing:",
            "registry_address": registry_address,
            "registry_start_timeout_seconds": registry_start_timeout_seconds,
            "registry_reconnect_base_seconds": 0.05,
            "registry_reconnect_max_seconds": 0.5,
        },
        "cache": {"key_prefix": f"{redis_prefix}cache:"},
        "usage": {
            "topic": topic,
            "spool_dir": str(tmp_path / "spool"),
            "publish_timeout_seconds": publish_timeout_seconds,
            "replay_interval_seconds": 0.2,
        },
    }
    return InferenceSettings.model_validate(data)


@dataclass
class RunningApp:
    server: KernelServer
    stub: inference_pb2_grpc.InferenceServiceAsyncStub
    registry: CollectorRegistry


@asynccontextmanager
async def running_app(settings: InferenceSettings) -> AsyncIterator[RunningApp]:
    registry = CollectorRegistry()
    server = KernelServer(build(settings, registry, env={}), settings.server, registry)
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield RunningApp(server, inference_pb2_grpc.InferenceServiceStub(channel), registry)
    finally:
        await channel.close(None)
        await server.drain(grace_seconds=1)


@dataclass
class UsageLog:
    """Every UsageRecorded event a consumer group received."""

    envelopes: list[Envelope] = field(default_factory=list)

    async def __call__(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> dict[str, events_pb2.UsageRecorded]:
        """By event id, de-duplicated."""
        found: dict[str, events_pb2.UsageRecorded] = {}
        for envelope in self.envelopes:
            assert isinstance(envelope.event, events_pb2.UsageRecorded)
            found[envelope.id] = envelope.event
        return found

    async def wait_for(self, ids: set[str], timeout: float = 30.0) -> None:
        await eventually(lambda: ids <= set(self.events()), timeout)


def consumer_bus(bootstrap: str) -> KafkaEventBus:
    config = KafkaConfig(
        bootstrap,
        client_id="llmgw-tests",
        consumer=ConsumerConfig(
            poll_timeout_ms=200,
            session_timeout_ms=1000,  # see tests/integration/kernel/test_kafka_event_bus.py
            heartbeat_interval_ms=200,
            retry=RetryPolicy(initial_backoff_seconds=0.05, max_backoff_seconds=0.5),
        ),
    )
    return KafkaEventBus(config, EventTypeRegistry.from_module(events_pb2), "//llmgw/tests")
