"""A real KernelServer on loopback serving the InferenceServicer over the real router.

The router serves :data:`SNAPSHOT`, one version per model:

* ``sim``: simulated, answers at once with 16 tokens;
* ``sim-slow``: simulated, 40 tokens at 20 tokens per second (about 2 s per answer);
* ``sim-down``: simulated, every call fails with 503 (UNAVAILABLE) before any
  output; priced at ten times the others;
* ``sim-breaks``: the scripted provider, streams 3 chunks and then fails with 503;
* ``sim-embed``: simulated, embeddings only.

The simulated adapters are :class:`WatchedSimulatedAdapter`, so a test can see
through :func:`upstream` which provider calls were cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import pytest
from google.protobuf import json_format
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference.engine import CompletionEngine
from services.inference.metrics import InferenceMetrics
from services.inference.outcome import Outcome, OutcomeSink
from services.inference.routing import Router
from services.inference.servicer import InferenceServicer
from services.kernel.config import ServerSettings
from services.kernel.server import KernelServer, ServiceApp, grpc_service
from tests.unit.inference.routing_support import (
    FAST_RETRIES,
    WatchedSimulatedAdapter,
    adapters,
    snapshot,
    version,
)

PRICING = common_pb2.Pricing(
    currency_code="USD",
    input_per_million_nanos=1_000_000_000,
    output_per_million_nanos=2_000_000_000,
)
DOWN_PRICING = common_pb2.Pricing(
    currency_code="USD",
    input_per_million_nanos=10_000_000_000,
    output_per_million_nanos=20_000_000_000,
)
BREAK_AFTER_CHUNKS = 3
BROKEN_OUTPUT_TOKENS = 5
"""What the router counts for the text ``sim-breaks`` streams before it fails:
``"abcdefgh" + "word " * 2`` is 18 characters, a quarter of that rounded up."""

_CHAT = ("CAPABILITY_CHAT", "CAPABILITY_STREAMING")


def _model(
    name: str,
    options: dict[str, str],
    *,
    provider: str = "simulated",
    capabilities: Sequence[str] = _CHAT,
    pricing: common_pb2.Pricing = PRICING,
) -> dict[str, object]:
    return version(
        name,
        provider=provider,
        options=options,
        capabilities=list(capabilities),
        context_window=8192,
        pricing=json_format.MessageToDict(pricing, preserving_proto_field_name=True),
    )


SNAPSHOT = snapshot(
    versions=[
        _model("sim", {}),
        _model("sim-slow", {"output_tokens": "40", "tokens_per_second": "20"}),
        _model("sim-down", {"error_rate": "1", "error_status": "503"}, pricing=DOWN_PRICING),
        _model(
            "sim-breaks",
            {"chunks": "10", "fail_after_chunks": str(BREAK_AFTER_CHUNKS), "status": "503"},
            provider="scripted",
        ),
        _model("sim-embed", {}, capabilities=("CAPABILITY_EMBEDDINGS",)),
    ]
)


def upstream(router: Router, model: str) -> WatchedSimulatedAdapter:
    """The simulated adapter serving version 1 of ``model``."""
    return cast(WatchedSimulatedAdapter, router.table.targets[f"{model}/versions/1"].adapter)


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
async def router() -> AsyncIterator[Router]:
    router = await Router.create(SNAPSHOT, FAST_RETRIES, adapters=adapters())
    assert not router.table.problems
    try:
        yield router
    finally:
        await router.aclose()


@pytest.fixture
def outcomes() -> OutcomeLog:
    return OutcomeLog()


@pytest.fixture
async def running(router: Router, outcomes: OutcomeLog) -> AsyncIterator[Running]:
    async with serving(router, [outcomes]) as running:
        yield running


@pytest.fixture
def stub(running: Running) -> inference_pb2_grpc.InferenceServiceAsyncStub:
    return running.stub
