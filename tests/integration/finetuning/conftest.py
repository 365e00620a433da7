"""A real registry and a real fine-tuning service on loopback, sharing one event bus.

Both run on this test's fresh database (SQLite and PostgreSQL) inside the
test process, on an in-process event bus, so the registry consumes the job
events the fine-tuning service publishes; the Kafka path runs in the
end-to-end test. ``Pair.published`` keeps every event the fine-tuning
service published, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf.message import Message
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.finetuning.v1 import finetuning_pb2_grpc
from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.finetuning.app import SERVICE_NAME as FINETUNING_SERVICE
from services.finetuning.runtime import FineTuningRuntime
from services.finetuning.settings import (
    FineTuningSection,
    FineTuningSettings,
    OpenAIBackendSettings,
    SimulatedBackendSettings,
)
from services.kernel.config import ServerSettings
from services.kernel.events import EventTypeRegistry, InProcessEventBus
from services.kernel.server import KernelServer, ServiceApp, ServiceRegistration
from services.models.app import SERVICE_NAME as MODELS_SERVICE
from services.models.runtime import RegistryRuntime
from services.models.settings import ModelsSettings, RegistrySettings

ACTOR = (
    ("llmgw-actor-type", "user"),
    ("llmgw-actor-id", "alice"),
    ("llmgw-project-id", "support"),
)
BASE_MODEL = "support-bot"
CONTEXT_WINDOW = 512


@dataclass
class Recorder:
    """Publishes to the shared bus and keeps (topic, event) in order."""

    bus: InProcessEventBus
    published: list[tuple[str, Message]] = field(default_factory=list)

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Keep ``event`` and pass it on."""
        self.published.append((topic, event))
        await self.bus.publish(topic, event, key)

    def of_topic(self, topic: str) -> list[Message]:
        """The events of one topic, in publish order."""
        return [event for t, event in self.published if t == topic]


@dataclass
class Pair:
    """The served registry and fine-tuning service."""

    models: models_pb2_grpc.ModelRegistryServiceAsyncStub
    finetuning: finetuning_pb2_grpc.FineTuningServiceAsyncStub
    events: Recorder
    registry_address: str
    metrics: CollectorRegistry


async def _serve(app: ServiceApp, stack: AsyncExitStack, port: int = 0) -> int:
    server = KernelServer(
        app, ServerSettings(port=port, grace_period_seconds=1), CollectorRegistry()
    )
    await server.start()
    stack.push_async_callback(server.drain, 0)
    return server.port


FAST = SimulatedBackendSettings(step_seconds=0.0, steps_per_epoch=3)
"""Nine steps (three epochs, auto) without waiting."""


def section(
    blob_dir: Path,
    registry_address: str = "",
    simulated: SimulatedBackendSettings = FAST,
    max_concurrent_jobs: int = 2,
    openai: OpenAIBackendSettings | None = None,
) -> FineTuningSection:
    """Fast settings for tests: short steps, quick polling."""
    return FineTuningSection(
        registry_address=registry_address or "127.0.0.1:1",
        blob_dir=blob_dir,
        max_concurrent_jobs=max_concurrent_jobs,
        relay_poll_interval_seconds=0.2,
        relay_retry_seconds=0.2,
        watch_poll_interval_seconds=0.2,
        simulated=simulated,
        openai=openai or OpenAIBackendSettings(),
    )


@asynccontextmanager
async def serving_registry(
    database_url: str,
    bus: InProcessEventBus | None,
    stack: AsyncExitStack,
    finetuning_address: str | None = None,
    port: int = 0,
) -> AsyncIterator[tuple[models_pb2_grpc.ModelRegistryServiceAsyncStub, str]]:
    """A registry consuming ``bus``, with model ``support-bot`` (version 1, alias production)."""
    settings = ModelsSettings(
        database_url=database_url,
        registry=RegistrySettings(
            providers=("simulated", "ollama"),
            watch_poll_interval_seconds=0.2,
            relay_poll_interval_seconds=0.2,
            relay_retry_seconds=0.2,
            finetuning_address=finetuning_address,
            finetuning_poll_interval_seconds=0.1,
        ),
    )
    runtime = RegistryRuntime(settings, {}, bus=bus)
    app = ServiceApp(
        name="models",
        services=(ServiceRegistration(MODELS_SERVICE, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
    )
    port = await _serve(app, stack, port)
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    stack.push_async_callback(channel.close)
    stub = models_pb2_grpc.ModelRegistryServiceStub(channel)
    await seed(stub)
    yield stub, f"127.0.0.1:{port}"


async def seed(stub: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> None:
    """Model ``support-bot`` with a simulated version 1 behind alias ``production``."""
    await stub.CreateModel(
        models_pb2.CreateModelRequest(model=models_pb2.Model(name=BASE_MODEL)), metadata=ACTOR
    )
    await stub.CreateModelVersion(
        models_pb2.CreateModelVersionRequest(
            version=models_pb2.ModelVersion(
                model=BASE_MODEL,
                version="1",
                provider="simulated",
                provider_model_id="sim-small",
                context_window=CONTEXT_WINDOW,
                max_output_tokens=128,
                pricing=common_pb2.Pricing(
                    currency_code="USD",
                    input_per_million_nanos=150_000_000,
                    output_per_million_nanos=600_000_000,
                ),
                capabilities=[common_pb2.CAPABILITY_CHAT],
            )
        ),
        metadata=ACTOR,
    )
    await stub.PromoteVersion(
        models_pb2.PromoteVersionRequest(model=BASE_MODEL, version="1", alias="production"),
        metadata=ACTOR,
    )


@asynccontextmanager
async def serving_finetuning(
    database_url: str,
    settings: FineTuningSection,
    publisher: Recorder,
    port: int = 0,
    metrics: CollectorRegistry | None = None,
) -> AsyncIterator[finetuning_pb2_grpc.FineTuningServiceAsyncStub]:
    """The fine-tuning service; stops when the block exits."""
    async with AsyncExitStack() as own:
        runtime = FineTuningRuntime(
            FineTuningSettings(database_url=database_url, finetuning=settings),
            {},
            publisher,
            metrics,
        )
        app = ServiceApp(
            name="finetuning",
            services=(ServiceRegistration(FINETUNING_SERVICE, runtime.add_to_server),),
            lifespans=(runtime.lifespan,),
        )
        port = await _serve(app, own, port)
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        own.push_async_callback(channel.close)
        yield finetuning_pb2_grpc.FineTuningServiceStub(channel)


@asynccontextmanager
async def serving_pair(
    database_url: str,
    blob_dir: Path,
    simulated: SimulatedBackendSettings = FAST,
    max_concurrent_jobs: int = 2,
    openai: OpenAIBackendSettings | None = None,
) -> AsyncIterator[Pair]:
    """A registry and a fine-tuning service on one database and one bus."""
    async with AsyncExitStack() as stack:
        bus = InProcessEventBus(EventTypeRegistry.from_module(events_pb2), "//tests")
        stack.push_async_callback(bus.close)
        recorder = Recorder(bus)
        registry = await stack.enter_async_context(serving_registry(database_url, bus, stack))
        stub, address = registry
        metrics = CollectorRegistry()
        finetuning = await stack.enter_async_context(
            serving_finetuning(
                database_url,
                section(blob_dir, address, simulated, max_concurrent_jobs, openai),
                recorder,
                metrics=metrics,
            )
        )
        yield Pair(stub, finetuning, recorder, address, metrics)


@pytest.fixture
async def pair(database_url: str, tmp_path: Path) -> AsyncIterator[Pair]:
    """A registry and a fine-tuning service on this test's fresh database."""
    async with serving_pair(database_url, tmp_path / "blobs") as running:
        yield running


CHAT_LINE = (
    '{"messages": [{"role": "system", "content": "You answer tickets."},'
    ' {"role": "user", "content": "Where is my order?"},'
    ' {"role": "assistant", "content": "It ships tomorrow."}]}'
)


def chat_dataset(lines: int = 5) -> bytes:
    """A valid chat dataset of ``lines`` examples."""
    return ("\n".join([CHAT_LINE] * lines) + "\n").encode()


async def upload(
    stub: finetuning_pb2_grpc.FineTuningServiceAsyncStub,
    content: bytes,
    *,
    metadata: ft.DatasetMetadata | None = None,
    chunk_size: int = 64,
    actor: Sequence[tuple[str, str]] = ACTOR,
) -> ft.Dataset:
    """Upload ``content`` in small chunks after ``metadata``, as ``actor``."""
    messages: Sequence[ft.UploadDatasetRequest] = [
        ft.UploadDatasetRequest(
            metadata=metadata or ft.DatasetMetadata(display_name="train.jsonl")
        ),
        *(
            ft.UploadDatasetRequest(chunk=content[i : i + chunk_size])
            for i in range(0, len(content), chunk_size)
        ),
    ]

    async def stream() -> AsyncIterator[ft.UploadDatasetRequest]:
        for message in messages:
            yield message

    response = await stub.UploadDataset(stream(), metadata=actor)
    return response.dataset


async def watch_to_end(
    stub: finetuning_pb2_grpc.FineTuningServiceAsyncStub, job_id: str, after: int = 0
) -> list[ft.WatchJobResponse]:
    """Every WatchJob message until the stream ends."""
    return [
        message
        async for message in stub.WatchJob(
            ft.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=60
        )
    ]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll the async ``check`` until it returns True (the test fails after ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)
