"""A real KernelServer on loopback serving the InferenceServicer over the engine double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference.engine import CompletionEngine
from services.inference.metrics import InferenceMetrics
from services.inference.outcome import Outcome, OutcomeSink
from services.inference.servicer import InferenceServicer
from services.kernel.config import ServerSettings
from services.kernel.server import KernelServer, ServiceApp, grpc_service
from tests.integration.inference.engine_double import SimulatedEngine


@dataclass
class OutcomeLog:
    """A sink that keeps every outcome, for assertions."""

    outcomes: list[Outcome] = field(default_factory=list)

    def observe(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def by_request(self) -> dict[str, list[Outcome]]:
        found: dict[str, list[Outcome]] = {}
        for outcome in self.outcomes:
            found.setdefault(outcome.request.call.request_id, []).append(outcome)
        return found


@dataclass
class Running:
    server: KernelServer
    channel: aio.Channel
    stub: inference_pb2_grpc.InferenceServiceAsyncStub
    registry: CollectorRegistry


ServeFactory = Callable[
    [CompletionEngine, Sequence[OutcomeSink]], AbstractAsyncContextManager[Running]
]


@asynccontextmanager
async def serving(engine: CompletionEngine, sinks: Sequence[OutcomeSink]) -> AsyncIterator[Running]:
    """Serve ``engine`` on a free loopback port until the block ends."""
    registry = CollectorRegistry()
    servicer = InferenceServicer(engine, (*sinks, InferenceMetrics(registry)))
    app = ServiceApp(
        name="inference",
        services=(
            grpc_service(
                inference_pb2.DESCRIPTOR,
                "InferenceService",
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                servicer,
            ),
        ),
    )
    server = KernelServer(app, ServerSettings(port=0, grace_period_seconds=1), registry)
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Running(server, channel, inference_pb2_grpc.InferenceServiceStub(channel), registry)
    finally:
        await channel.close(None)
        await server.drain(grace_seconds=0)


@pytest.fixture
def engine() -> SimulatedEngine:
    return SimulatedEngine()


@pytest.fixture
def outcomes() -> OutcomeLog:
    return OutcomeLog()


@pytest.fixture
async def running(engine: SimulatedEngine, outcomes: OutcomeLog) -> AsyncIterator[Running]:
    async with serving(engine, [outcomes]) as running:
        yield running


@pytest.fixture
def stub(running: Running) -> inference_pb2_grpc.InferenceServiceAsyncStub:
    return running.stub
