"""A real registry server on loopback for the inference tests, and what they observe.

:func:`registry_server` serves the ModelRegistryService on a SQLite or PostgreSQL
database, on a given port so a test can stop it and start it again at the same
address. :class:`WatchLog` is a :class:`WatchListener` that keeps everything the
watch reported, in order.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from google.protobuf.message import Message
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2 as pb
from llmgw.models.v1 import models_pb2_grpc
from services.kernel.config import ServerSettings
from services.kernel.server import KernelServer, ServiceApp, ServiceRegistration
from services.models.app import SERVICE_NAME
from services.models.runtime import RegistryRuntime
from services.models.settings import ModelsSettings, RegistrySettings

ACTOR = (("x-llmgw-actor-type", "user"), ("x-llmgw-actor-id", "alice"))
POLL_SECONDS = 0.01


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Registry:
    """A served registry and a stub to it."""

    stub: models_pb2_grpc.ModelRegistryServiceAsyncStub
    address: str


@asynccontextmanager
async def registry_server(database_url: str, port: int = 0) -> AsyncIterator[Registry]:
    """Serve a registry on ``database_url`` at ``127.0.0.1:port`` until the block exits."""
    settings = ModelsSettings(
        database_url=database_url,
        registry=RegistrySettings(
            providers=("simulated",),
            watch_poll_interval_seconds=0.2,
            relay_poll_interval_seconds=0.2,
            relay_retry_seconds=0.2,
        ),
    )
    runtime = RegistryRuntime(settings, {}, _Discard())
    app = ServiceApp(
        name="models",
        services=(ServiceRegistration(SERVICE_NAME, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
    )
    server = KernelServer(
        app, ServerSettings(port=port, grace_period_seconds=0.2), CollectorRegistry()
    )
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Registry(
            models_pb2_grpc.ModelRegistryServiceStub(channel), f"127.0.0.1:{server.port}"
        )
    finally:
        await channel.close(None)
        await server.drain(grace_seconds=0)


class _Discard:
    """Publishes registry events nowhere (these tests watch the stream, not Kafka)."""

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Drop ``event``."""


def sim_version(model: str, **options: str) -> pb.ModelVersion:
    """A simulated version of ``model`` (no credential), with provider options."""
    version = pb.ModelVersion(
        model=model,
        provider="simulated",
        provider_model_id=f"sim-{model}",
        context_window=8192,
        max_output_tokens=1024,
        pricing=common_pb2.Pricing(currency_code="USD", input_per_million_nanos=1_000_000),
        capabilities=[common_pb2.CAPABILITY_CHAT, common_pb2.CAPABILITY_STREAMING],
    )
    version.provider_options.update(options)
    return version


async def create_model(
    stub: models_pb2_grpc.ModelRegistryServiceAsyncStub, name: str, versions: int, **options: str
) -> None:
    """Model ``name`` with versions "1".."versions"."""
    await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name=name)), metadata=ACTOR)
    for _ in range(versions):
        await stub.CreateModelVersion(
            pb.CreateModelVersionRequest(version=sim_version(name, **options)), metadata=ACTOR
        )


async def promote(
    stub: models_pb2_grpc.ModelRegistryServiceAsyncStub, model: str, version: str, alias: str
) -> None:
    """Point ``model@alias`` at ``version``."""
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model=model, version=version, alias=alias), metadata=ACTOR
    )


async def current_revision(stub: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> int:
    """The registry's revision now (the revision of a fresh snapshot)."""
    call = stub.WatchRegistry(pb.WatchRegistryRequest())
    try:
        first = await asyncio.wait_for(call.read(), 5)
    finally:
        call.cancel()
    assert isinstance(first, pb.WatchRegistryResponse)
    return first.revision


async def within(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` holds; AssertionError after ``timeout``."""
    began = time.monotonic()
    for _ in range(int(timeout / POLL_SECONDS) + 1):
        if check():
            return time.monotonic() - began
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"condition still false after {timeout}s")


@dataclass
class WatchLog:
    """Everything a registry watch reported, in order."""

    snapshots: list[int] = field(default_factory=list)
    changes: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)

    def snapshot_applied(self, revision: int) -> None:
        self.snapshots.append(revision)

    def change_applied(self, revision: int) -> None:
        self.changes.append(revision)

    def change_skipped(self, revision: int) -> None:
        self.skipped.append(revision)

    def table_published(self, revision: int) -> None:
        self.published.append(revision)

    def stream_lost(self, reason: str) -> None:
        self.losses.append(reason)
