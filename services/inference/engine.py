"""The contract between the inference servicer and the routing core.

The servicer (``services.inference.servicer``) is thin: it turns gRPC calls into
calls on a :class:`CompletionEngine` and results back into messages. The engine
(``services.inference.routing``) resolves the model, picks deployments, counts and
limits tokens, retries, falls back, and prices the result. Wrappers such as the
response cache are engines too, so they stack: ``CachingEngine(Router(...))``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from llmgw.inference.v1 import inference_pb2

CompletionRequest = inference_pb2.CompletionRequest
CompletionChunk = inference_pb2.CompletionChunk
CompletionResult = inference_pb2.CompletionResult
StreamEvent = CompletionChunk | CompletionResult


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who asks and until when; built once per request by the servicer.

    ``deadline`` is an absolute ``time.monotonic()`` value (None: no deadline);
    retries and fallbacks must finish before it.
    """

    request_id: str
    deadline: float | None = None
    api_key_id: str = ""
    project: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class CompletionEngine(Protocol):
    """Runs completions, embeddings and token counts for resolved model names.

    Errors are raised as ``services.kernel.errors`` exceptions. ``stream`` yields
    chunks and then exactly one :class:`CompletionResult`; a failure before the
    first chunk is raised (the caller may still fall back or report it), a failure
    after it ends the stream with a result whose ``error`` is set and whose usage
    counts what was generated. Every result carries usage, cost and ``served_by``.
    """

    async def complete(self, request: CompletionRequest, call: CallContext) -> CompletionResult:
        """One whole completion."""
        ...

    def stream(self, request: CompletionRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        """One streamed completion: chunks, then exactly one result."""
        ...

    async def embed(
        self, request: inference_pb2.EmbedRequest, call: CallContext
    ) -> inference_pb2.EmbedResponse:
        """Embeddings of ``request.inputs`` with usage, cost and ``served_by``."""
        ...

    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest
    ) -> inference_pb2.CountTokensResponse:
        """Input tokens the completion would use, and how they were counted."""
        ...

    def list_models(self) -> list[inference_pb2.ModelInfo]:
        """The model names callers may use, from the live routing table."""
        ...

    async def aclose(self) -> None:
        """Release adapters and connections."""
        ...
