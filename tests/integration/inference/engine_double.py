"""A small :class:`CompletionEngine` over the simulated provider, for servicer tests.

Models (each a simulated deployment with its own options):

* ``sim``: answers at once with 16 tokens;
* ``sim-slow``: 40 tokens at 20 tokens per second (about 2 s per answer);
* ``sim-down``: fails before any output (upstream 503, UNAVAILABLE);
* ``sim-breaks``: streams 3 chunks, then ends with an error result (usage so far).

Every request's upstream work is tracked, so a test can tell that a cancellation
reached the provider: ``upstream_cancelled`` holds the request ids whose
provider call was cancelled or closed before it finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import Deployment
from provider_adapters.simulated.adapter import SimulatedAdapter
from services.inference.engine import (
    CallContext,
    CompletionChunk,
    CompletionRequest,
    CompletionResult,
    StreamEvent,
)
from services.kernel.errors import NotFound, Unavailable

PRICING = common_pb2.Pricing(
    currency_code="USD",
    input_per_million_nanos=1_000_000_000,
    output_per_million_nanos=2_000_000_000,
)
_OPTIONS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "sim": {},
        "sim-slow": {"output_tokens": "40", "tokens_per_second": "20"},
        "sim-down": {"error_rate": "1", "error_status": "503"},
        "sim-breaks": {"output_tokens": "10"},
    }
)
BREAK_AFTER_CHUNKS = 3


def cost_of(usage: common_pb2.Usage) -> common_pb2.Cost:
    """Cost at :data:`PRICING` (1 USD per million input tokens, 2 per million output)."""
    input_nanos = usage.input_tokens * PRICING.input_per_million_nanos // 1_000_000
    output_nanos = usage.output_tokens * PRICING.output_per_million_nanos // 1_000_000
    return common_pb2.Cost(
        currency_code="USD",
        input_nanos=input_nanos,
        output_nanos=output_nanos,
        total_nanos=input_nanos + output_nanos,
    )


class SimulatedEngine:
    """The engine double; see the module docstring."""

    def __init__(self) -> None:
        self.adapters = {
            name: SimulatedAdapter(Deployment(provider="simulated", model=name, options=options))
            for name, options in _OPTIONS.items()
        }
        self.calls: list[str] = []
        self.upstream_started: set[str] = set()
        self.upstream_cancelled: set[str] = set()
        self.closed = False

    def _adapter(self, model: str) -> SimulatedAdapter:
        adapter = self.adapters.get(model)
        if adapter is None:
            raise NotFound("model", model)
        return adapter

    def _finish(self, result: CompletionResult, model: str, attempts: int = 1) -> CompletionResult:
        result.served_by.model = model
        result.served_by.model_version = "1"
        result.served_by.deployment_id = f"{model}-1"
        result.served_by.attempt_count = attempts
        result.cost.CopyFrom(cost_of(result.usage))
        return result

    async def complete(self, request: CompletionRequest, call: CallContext) -> CompletionResult:
        adapter = self._adapter(request.model)
        self.calls.append(call.request_id)
        self.upstream_started.add(call.request_id)
        try:
            result = await adapter.complete(request)
        except asyncio.CancelledError:
            self.upstream_cancelled.add(call.request_id)
            raise
        except Exception as exc:
            raise Unavailable(f"upstream failed: {exc}") from exc
        return self._finish(result, request.model)

    async def stream(
        self, request: CompletionRequest, call: CallContext
    ) -> AsyncIterator[StreamEvent]:
        adapter = self._adapter(request.model)
        self.calls.append(call.request_id)
        self.upstream_started.add(call.request_id)
        chunks = 0
        finished = False
        upstream = adapter.stream(request)
        try:
            try:
                first = await anext(upstream)
            except Exception as exc:
                raise Unavailable(f"upstream failed: {exc}") from exc
            event: StreamEvent = first
            while True:
                if isinstance(event, CompletionChunk):
                    chunks += 1
                    yield event
                    if request.model == "sim-breaks" and chunks == BREAK_AFTER_CHUNKS:
                        finished = True
                        yield self._broken(request, chunks)
                        return
                else:
                    finished = True
                    yield self._finish(event, request.model)
                    return
                event = await anext(upstream)
        finally:
            await upstream.aclose()  # type: ignore[attr-defined]
            if not finished:
                self.upstream_cancelled.add(call.request_id)

    def _broken(self, request: CompletionRequest, chunks: int) -> CompletionResult:
        result = CompletionResult(
            finish_reason=common_pb2.FINISH_REASON_ERROR,
            usage=common_pb2.Usage(input_tokens=5, output_tokens=chunks, total_tokens=5 + chunks),
            error=Unavailable("the provider closed the stream").to_status(),
        )
        result.served_by.provider = "simulated"
        return self._finish(result, request.model)

    async def embed(
        self, request: inference_pb2.EmbedRequest, call: CallContext
    ) -> inference_pb2.EmbedResponse:
        response = await self._adapter(request.model).embed(request)
        response.served_by.model = request.model
        response.cost.CopyFrom(cost_of(response.usage))
        return response

    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest
    ) -> inference_pb2.CountTokensResponse:
        adapter = self._adapter(request.model)
        counted = await adapter.count_tokens(
            CompletionRequest(model=request.model, messages=request.messages)
        )
        return inference_pb2.CountTokensResponse(input_tokens=counted or 0, estimated=True)

    def list_models(self) -> list[inference_pb2.ModelInfo]:
        capabilities = [common_pb2.CAPABILITY_CHAT, common_pb2.CAPABILITY_STREAMING]
        models = [
            inference_pb2.ModelInfo(
                name=name, capabilities=capabilities, context_window=8192, pricing=PRICING
            )
            for name in self.adapters
        ]
        models.append(
            inference_pb2.ModelInfo(
                name="sim-embed", capabilities=[common_pb2.CAPABILITY_EMBEDDINGS], pricing=PRICING
            )
        )
        return models

    async def aclose(self) -> None:
        self.closed = True
