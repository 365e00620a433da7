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

import grpc
from google.rpc import status_pb2

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.kernel.errors import grpc_code_of

CompletionRequest = inference_pb2.CompletionRequest
CompletionChunk = inference_pb2.CompletionChunk
CompletionResult = inference_pb2.CompletionResult
StreamEvent = CompletionChunk | CompletionResult


def chunk_text(chunk: CompletionChunk) -> str:
    """The output a chunk carries, as text to count tokens from: text, reasoning,
    refusal, and each tool call's name and arguments."""
    parts = [chunk.text_delta, chunk.reasoning_delta, chunk.refusal_delta]
    parts.extend(delta.function_name + delta.arguments_delta for delta in chunk.tool_call_deltas)
    return "".join(parts)


_STOPPED = frozenset({grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED})


def failed_finish_reason(error: status_pb2.Status) -> common_pb2.FinishReason.ValueType:
    """The finish reason of a request that ended with ``error``.

    CANCELLED when the caller stopped it (cancellation, deadline), ERROR otherwise,
    as ``llmgw.common.v1.FinishReason`` defines them.
    """
    if grpc_code_of(error) in _STOPPED:
        return common_pb2.FINISH_REASON_CANCELLED
    return common_pb2.FINISH_REASON_ERROR


@dataclass(frozen=True, slots=True)
class Placement:
    """The deployment a request runs on, and what its tokens cost there.

    ``cached`` is True when the engine replays a stored answer (``pricing`` is then
    zero: a cache hit has no provider cost).
    """

    served_by: common_pb2.ServingInfo
    pricing: common_pb2.Pricing
    cached: bool = False


class PlacementNote:
    """Where an engine placed a request, noted as soon as it is known.

    An engine calls :meth:`place` before each attempt on a deployment (so before
    a stream's first chunk), again when a retry or fallback moves it. The
    servicer reads :attr:`placement` when the request ends without the engine's
    result (failure, cancellation, deadline, disconnect): to say where it ran,
    and to price what was streamed at the deployment that produced it.
    """

    __slots__ = ("placement",)

    def __init__(self) -> None:
        """Nothing placed yet."""
        self.placement: Placement | None = None

    def place(self, placement: Placement) -> None:
        """Note that the request now runs as ``placement`` says."""
        self.placement = placement


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who asks and until when; built once per request by the servicer.

    ``deadline`` is an absolute ``time.monotonic()`` value (None: no deadline);
    retries and fallbacks must finish before it. ``placement`` is the one part
    the engine writes to (see :class:`PlacementNote`).
    """

    request_id: str
    deadline: float | None = None
    api_key_id: str = ""
    project: str = ""
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    placement: PlacementNote = field(default_factory=PlacementNote)


class CompletionEngine(Protocol):
    """Runs completions, embeddings and token counts for resolved model names.

    Errors are raised as ``services.kernel.errors`` exceptions. ``stream`` yields
    chunks and then exactly one :class:`CompletionResult`; a failure before the
    first chunk is raised (the caller may still fall back or report it), a failure
    after it ends the stream with a result whose ``error`` is set and whose usage
    counts what was generated. Every result carries usage, cost and ``served_by``.
    Every attempt is noted in ``call.placement`` before it starts.
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

    def resolution_of(self, model: str) -> str:
        """An identity of what ``model`` resolves to now (its versions).

        It changes when an alias or group moves to other versions, so answers
        cached for the old target are not served for the new one.
        """
        ...

    async def aclose(self) -> None:
        """Release adapters and connections."""
        ...
