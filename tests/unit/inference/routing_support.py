"""Helpers for routing tests: a scripted adapter plugin, a recording clock, builders.

The ``scripted`` provider is a real :class:`ProviderAdapter` whose behaviour comes
from its deployment options:

==========================  =======================================================
``fail_first``              the first N calls fail (``-1``: every call)
``status``                  HTTP status the failures simulate (default 503)
``retry_after``             seconds the failure asks to wait (default: none)
``fail_after_chunks``       streams fail after this many chunks (default: never)
``chunks``                  chunks per stream (default 5)
``context_window_error``    ``1``: failures are the provider's context-window error
==========================  =======================================================

The ``simulated`` provider is served by :class:`WatchedSimulatedAdapter`: the real
simulated adapter, which also notes the request ids whose calls started and those
whose calls were cancelled or closed before they finished, so a test can tell
that a cancellation reached the provider call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from llmgw.models.v1 import models_pb2
from provider_adapters.base import (
    ADAPTERS,
    AdapterPlugin,
    Capability,
    CompletionChunk,
    CompletionRequest,
    CompletionResult,
    Deployment,
    EmbedRequest,
    EmbedResponse,
    ProviderAdapter,
    StreamEvent,
)
from provider_adapters.errors import ProviderError, ProviderServerError, error_for_status
from provider_adapters.simulated import CAPABILITIES as SIMULATED_CAPABILITIES
from provider_adapters.simulated import PROVIDER as SIMULATED
from provider_adapters.simulated import SimulatedAdapter
from services.inference.engine import CallContext
from services.inference.routing import Router, RoutingOptions
from services.inference.routing.snapshot import parse_snapshot
from services.kernel.errors import Unavailable
from services.kernel.plugins import PluginRegistry


class ScriptedAdapter(ProviderAdapter):
    """Fails as its options say, otherwise answers ``"ok"`` (one token per chunk)."""

    capabilities = frozenset({Capability.STREAMING, Capability.EMBEDDINGS})

    def __init__(self, deployment: Deployment) -> None:
        options = deployment.options
        self.model = deployment.model
        self.fail_first = int(options.get("fail_first", "0"))
        self.status = int(options.get("status", "503"))
        self.retry_after = float(options["retry_after"]) if "retry_after" in options else None
        self.fail_after_chunks = int(options.get("fail_after_chunks", "-1"))
        self.chunks = int(options.get("chunks", "5"))
        self.context_window_error = options.get("context_window_error") == "1"
        self.calls: list[int] = []
        self.closed = False

    def _call(self) -> None:
        self.calls.append(time.monotonic_ns())
        if self.fail_first < 0 or len(self.calls) <= self.fail_first:
            raise self._error()

    def _error(self) -> ProviderError:
        return error_for_status(
            self.status,
            f"scripted failure {self.status}",
            provider="scripted",
            retry_after_seconds=self.retry_after,
            context_window=self.context_window_error,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        self._call()
        return CompletionResult(
            message=inference_pb2.Message(
                role=common_pb2.ROLE_ASSISTANT, content=[inference_pb2.ContentPart(text="ok")]
            ),
            finish_reason=common_pb2.FINISH_REASON_STOP,
            usage=common_pb2.Usage(
                input_tokens=1000,
                output_tokens=500,
                cached_input_tokens=200,
                total_tokens=1500,
                source=common_pb2.USAGE_SOURCE_PROVIDER,
            ),
        )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self._call()
        for index in range(self.chunks):
            if index == self.fail_after_chunks:
                raise self._error()
            yield CompletionChunk(text_delta="word " if index else "abcdefgh")
        yield CompletionResult(
            finish_reason=common_pb2.FINISH_REASON_STOP,
            usage=common_pb2.Usage(
                input_tokens=7, output_tokens=self.chunks, total_tokens=7 + self.chunks
            ),
        )

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self._call()
        response = EmbedResponse(
            usage=common_pb2.Usage(input_tokens=2_000_000, total_tokens=2_000_000)
        )
        for index, _ in enumerate(request.inputs):
            response.embeddings.add(index=index, values=[1.0, 0.0])
        return response

    async def aclose(self) -> None:
        self.closed = True


class WatchedSimulatedAdapter(SimulatedAdapter):
    """The simulated adapter, noting which calls started and which were cut short."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        self.started: set[str] = set()
        self.cancelled: set[str] = set()
        """Request ids whose call was cancelled, or whose stream was closed early."""

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        self.started.add(request.request_id)
        try:
            return await super().complete(request)
        except asyncio.CancelledError:
            self.cancelled.add(request.request_id)
            raise

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        self.started.add(request.request_id)
        finished = False
        try:
            async for event in super().stream(request):
                finished = isinstance(event, CompletionResult)
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:
                self.cancelled.add(request.request_id)
            raise


plugin = AdapterPlugin(
    name="scripted", create=ScriptedAdapter, capabilities=ScriptedAdapter.capabilities
)
watched_simulated = AdapterPlugin(
    name=SIMULATED, create=WatchedSimulatedAdapter, capabilities=SIMULATED_CAPABILITIES
)


def adapters() -> PluginRegistry[AdapterPlugin]:
    """The (watched) simulated and scripted adapter plugins, found like installed ones."""
    module = "tests.unit.inference.routing_support"
    return PluginRegistry(
        ADAPTERS,
        available=[
            EntryPoint(SIMULATED, f"{module}:watched_simulated", ADAPTERS.group),
            EntryPoint("scripted", f"{module}:plugin", ADAPTERS.group),
        ],
    )


FAST_RETRIES = RoutingOptions(
    backoff_base_seconds=0.01, backoff_max_seconds=0.04, cooldown_failures=100
)
"""Short backoffs and no cooldown, so retries stay quick and every call reaches its adapter."""


class RecordingClock:
    """A monotonic clock that only moves when slept on; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


PRICING: Mapping[str, Any] = {
    "currency_code": "USD",
    "input_per_million_nanos": "150000000",
    "output_per_million_nanos": "600000000",
    "cached_input_per_million_nanos": "75000000",
}


def version(
    model: str,
    number: str = "1",
    *,
    provider: str = "scripted",
    options: Mapping[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A ModelVersion entry of a snapshot document."""
    return {
        "model": model,
        "version": number,
        "provider": provider,
        "provider_model_id": fields.pop("provider_model_id", f"{model}-v{number}"),
        "provider_options": dict(options or {}),
        "pricing": fields.pop("pricing", PRICING),
        **fields,
    }


def snapshot(**sections: list[dict[str, Any]]) -> models_pb2.RegistrySnapshot:
    """A checked snapshot from section lists (versions, aliases, models, groups)."""
    return parse_snapshot(sections)


def request(model: str, text: str = "hello there", **sampling: Any) -> CompletionRequest:
    """A one-message completion request."""
    return CompletionRequest(
        model=model,
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_USER, content=[inference_pb2.ContentPart(text=text)]
            )
        ],
        sampling=inference_pb2.SamplingParameters(**sampling),
    )


async def trip_cooldown(router: Router, model: str, failures: int) -> Unavailable:
    """Fail ``failures`` calls of ``model`` (503s), then return the error of the next call,
    which the cooldown refuses."""
    for _ in range(failures):
        with pytest.raises(ProviderServerError):
            await router.complete(request(model), CallContext("r"))
    with pytest.raises(Unavailable) as refused:
        await router.complete(request(model), CallContext("r"))
    assert refused.value.reason == "DEPLOYMENTS_COOLING_DOWN"
    return refused.value
