"""A real KernelServer on loopback serving the registry on a fresh SQLite or PostgreSQL.

``registry`` yields a :class:`Running` registry with a stub and the events its
relay published (an in-memory publisher, so tests can read them back in order;
the Kafka path has its own test).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf.message import Message
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.kernel.config import ServerSettings
from services.kernel.server import KernelServer, ServiceApp, ServiceRegistration
from services.models.app import SERVICE_NAME
from services.models.relay import Publisher
from services.models.runtime import RegistryRuntime
from services.models.settings import ModelsSettings, RegistrySettings

ACTOR = (
    ("llmgw-actor-type", "user"),
    ("llmgw-actor-id", "alice"),
    ("llmgw-project-id", "support"),
)


@dataclass
class EventLog:
    """Events the relay published, as (topic, event), in order."""

    published: list[tuple[str, Message]] = field(default_factory=list)

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Keep ``event``."""
        self.published.append((topic, event))

    def of_topic(self, topic: str) -> list[Message]:
        """The events of one topic, in publish order."""
        return [event for t, event in self.published if t == topic]


@dataclass
class Running:
    """A served registry."""

    stub: models_pb2_grpc.ModelRegistryServiceAsyncStub
    runtime: RegistryRuntime
    events: EventLog
    port: int


@asynccontextmanager
async def serving(
    database_url: str,
    publisher: Publisher | None = None,
    providers: Sequence[str] = ("simulated", "openai"),
    seed_file: Path | None = None,
    topics: tuple[str, str] = ("llmgw.models.v1", "llmgw.audit.v1"),
    *,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Running]:
    """Serve a registry on ``database_url`` until the block exits.

    ``env`` is the process environment the registry sees (empty by default).
    """
    events = EventLog()
    settings = ModelsSettings(
        database_url=database_url,
        registry=RegistrySettings(
            providers=tuple(providers),
            seed_file=seed_file,
            watch_poll_interval_seconds=0.2,
            relay_poll_interval_seconds=0.2,
            relay_retry_seconds=0.2,
            models_topic=topics[0],
            audit_topic=topics[1],
        ),
    )
    runtime = RegistryRuntime(settings, dict(env or {}), publisher or events)
    app = ServiceApp(
        name="models",
        services=(ServiceRegistration(SERVICE_NAME, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
    )
    server = KernelServer(app, ServerSettings(port=0, grace_period_seconds=1), CollectorRegistry())
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Running(
            models_pb2_grpc.ModelRegistryServiceStub(channel), runtime, events, server.port
        )
    finally:
        await channel.close()
        await server.drain(grace_seconds=0)


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Running]:
    """A registry on this test's fresh database (SQLite and PostgreSQL)."""
    async with serving(database_url) as running:
        yield running


PRICING = common_pb2.Pricing(
    currency_code="USD", input_per_million_nanos=150_000_000, output_per_million_nanos=600_000_000
)


def version(model: str, version_id: str = "", **fields: object) -> models_pb2.ModelVersion:
    """A valid simulated version of ``model``."""
    message = models_pb2.ModelVersion(
        model=model,
        version=version_id,
        provider="simulated",
        provider_model_id=f"sim-{model}",
        context_window=8192,
        max_output_tokens=1024,
        pricing=PRICING,
        capabilities=[common_pb2.CAPABILITY_CHAT, common_pb2.CAPABILITY_STREAMING],
        credential=models_pb2.CredentialRef(env_var="SIMULATED_API_KEY"),
    )
    for name, value in fields.items():
        if isinstance(value, Message):
            getattr(message, name).CopyFrom(value)
        elif isinstance(value, dict):
            getattr(message, name).update(value)
        else:
            setattr(message, name, value)
    return message


async def model_with_versions(
    stub: models_pb2_grpc.ModelRegistryServiceAsyncStub, name: str, count: int
) -> list[models_pb2.ModelVersion]:
    """Create model ``name`` with ``count`` versions "1".."count"."""
    await stub.CreateModel(
        models_pb2.CreateModelRequest(model=models_pb2.Model(name=name)), metadata=ACTOR
    )
    created = []
    for _ in range(count):
        response = await stub.CreateModelVersion(
            models_pb2.CreateModelVersionRequest(version=version(name)), metadata=ACTOR
        )
        created.append(response.version)
    return created
