"""The InferenceService servicer: gRPC messages in, a :class:`CompletionEngine`, messages out.

It is thin on purpose. Per request it builds the :class:`CallContext` (request
id, caller, deadline), starts a tracker that reports the outcome (usage event,
metrics) exactly once, calls the engine, and puts usage and cost into the
trailing metadata of unary and server-streaming calls
(:mod:`services.inference.call_metadata`). Errors are raised as
:mod:`services.kernel.errors` exceptions and mapped by the kernel interceptor;
``Chat`` keeps them inside the stream (:mod:`services.inference.chat`).

Cancellation: when the client cancels, disconnects or its deadline passes,
grpc cancels the handler task; the engine call awaited in it is cancelled with
it, and so is the upstream provider request. A request's own
``options.timeout`` ends it with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import grpc
from grpc import aio

from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference.call_metadata import caller_of, usage_trailers
from services.inference.calls import RequestStarter, RpcScope, closing_stream
from services.inference.chat import ChatSession
from services.inference.engine import CompletionChunk, CompletionEngine, CompletionResult
from services.inference.outcome import OutcomeSink, RequestTracker
from services.kernel.context import current_request_id, new_request_id
from services.kernel.errors import (
    STATUS_DETAILS_KEY,
    DeadlineExceeded,
    FieldViolation,
    Internal,
    InvalidArgument,
    LlmgwError,
    grpc_code_of,
)

_log = logging.getLogger(__name__)

T = TypeVar("T")
Context = aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Serves ``llmgw.inference.v1.InferenceService`` over ``engine``."""

    def __init__(self, engine: CompletionEngine, sinks: Sequence[OutcomeSink]) -> None:
        """Serve ``engine``; every request's outcome goes to each of ``sinks``."""
        self._engine = engine
        self._starter = RequestStarter(sinks)

    async def Complete(  # noqa: N802 - the generated method name
        self, request: inference_pb2.CompleteRequest, context: Context
    ) -> inference_pb2.CompleteResponse:
        """One whole completion; usage and cost also in the trailing metadata."""
        completion = request.completion
        _ensure_request_id(completion)
        tracker = self._starter.completion(
            events_pb2.INFERENCE_OPERATION_COMPLETE, "Complete", completion, _scope(context)
        )
        result = await _tracked(tracker, self._engine.complete(completion, tracker.info.call))
        result = tracker.succeeded(result)
        context.set_trailing_metadata(_trailers_of(result))
        if result.HasField("error"):
            await _abort_with(context, result)
        return inference_pb2.CompleteResponse(result=result)

    async def StreamComplete(  # noqa: N802 - the generated method name
        self, request: inference_pb2.StreamCompleteRequest, context: Context
    ) -> AsyncIterator[inference_pb2.StreamCompleteResponse]:
        """Deltas, then one final; see the service documentation for errors."""
        completion = request.completion
        _ensure_request_id(completion)
        tracker = self._starter.completion(
            events_pb2.INFERENCE_OPERATION_STREAM_COMPLETE,
            "StreamComplete",
            completion,
            _scope(context),
        )
        call = tracker.info.call
        final: CompletionResult | None = None
        try:
            stream = self._engine.stream(completion, call)
            async with closing_stream(stream):
                events = stream if call.deadline is None else _until(call.deadline, stream)
                async for event in events:
                    if isinstance(event, CompletionChunk):
                        tracker.saw_chunk(event)
                        yield inference_pb2.StreamCompleteResponse(delta=event)
                    else:
                        final = tracker.succeeded(event)
                        break
            if final is None:
                raise Internal("the engine ended a stream without a result")
        except (asyncio.CancelledError, GeneratorExit):
            tracker.cancelled()
            raise
        except Exception as exc:
            failed = tracker.failed(exc)
            if not failed.HasField("time_to_first_token"):
                raise  # nothing was sent yet: the call ends with the error's status
            if not isinstance(exc, LlmgwError):
                _log.error("stream %s crashed after output", completion.request_id, exc_info=exc)
            final = failed
        context.set_trailing_metadata(_trailers_of(final))
        yield inference_pb2.StreamCompleteResponse(final=final)
        if final.HasField("error"):
            await _abort_with(context, final)

    async def Chat(  # noqa: N802 - the generated method name
        self, request_iterator: AsyncIterator[inference_pb2.ChatRequest], context: Context
    ) -> AsyncIterator[inference_pb2.ChatResponse]:
        """Concurrent completions on one stream; see :mod:`services.inference.chat`."""
        scope = _scope(context)

        def start(request: inference_pb2.CompletionRequest) -> RequestTracker:
            return self._starter.completion(
                events_pb2.INFERENCE_OPERATION_CHAT, "Chat", request, scope
            )

        session = ChatSession(self._engine, start)
        async with contextlib.aclosing(session.run(request_iterator)) as responses:
            async for response in responses:
                yield response

    async def Embed(  # noqa: N802 - the generated method name
        self, request: inference_pb2.EmbedRequest, context: Context
    ) -> inference_pb2.EmbedResponse:
        """Embeddings; usage and cost also in the trailing metadata."""
        _ensure_request_id(request)
        tracker = self._starter.embedding(
            events_pb2.INFERENCE_OPERATION_EMBED, request, _scope(context)
        )
        response = await _tracked(tracker, self._engine.embed(request, tracker.info.call))
        response.request_id = request.request_id
        tracker.embedded(response)
        context.set_trailing_metadata(
            usage_trailers(response.usage, response.cost, cached=response.cached)
        )
        return response

    async def CountTokens(  # noqa: N802 - the generated method name
        self, request: inference_pb2.CountTokensRequest, context: Context
    ) -> inference_pb2.CountTokensResponse:
        """Input tokens a completion would use."""
        return await self._engine.count_tokens(request)

    async def ListModels(  # noqa: N802 - the generated method name
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        """One page of the callable models, filtered by capabilities, ordered by name."""
        wanted = set(request.capabilities)
        models = sorted(
            (m for m in self._engine.list_models() if wanted <= set(m.capabilities)),
            key=lambda m: m.name,
        )
        if request.page_size < 0:
            raise InvalidArgument(
                "page_size must not be negative",
                [FieldViolation("page_size", "must be >= 0", "NEGATIVE")],
            )
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = _decode_page_token(request.page_token)
        page = [m for m in models if m.name > after][:size] if after else models[:size]
        next_token = ""
        if page and page[-1].name != models[-1].name:
            next_token = _encode_page_token(page[-1].name)
        return inference_pb2.ListModelsResponse(models=page, next_page_token=next_token)


def _scope(context: Context) -> RpcScope:
    return RpcScope.of(caller_of(context.invocation_metadata()), context.time_remaining())


def _ensure_request_id(
    request: inference_pb2.CompletionRequest | inference_pb2.EmbedRequest,
) -> None:
    """Give ``request`` the call's request id, or a new one, when it has none."""
    if not request.request_id:
        request.request_id = current_request_id() or new_request_id()


async def _tracked(tracker: RequestTracker, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` within the request's deadline (DEADLINE_EXCEEDED after it).

    A failure or cancellation is reported through ``tracker`` and raised again;
    a success is left for the caller to report.
    """
    timeout = asyncio.timeout_at(tracker.info.call.deadline)
    try:
        async with timeout:
            return await awaitable
    except asyncio.CancelledError:
        tracker.cancelled()
        raise
    except Exception as exc:
        if not timeout.expired():
            tracker.failed(exc)
            raise
        error = DeadlineExceeded("the request's deadline passed")
        tracker.failed(error)
        raise error from None


async def _until(deadline: float, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """``stream``, ending with DEADLINE_EXCEEDED when ``deadline`` (monotonic) passes."""
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                item = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded("the request's deadline passed") from None
        yield item


def _trailers_of(result: CompletionResult) -> tuple[tuple[str, str], ...]:
    return usage_trailers(result.usage, result.cost, cached=result.cached)


async def _abort_with(context: Context, result: CompletionResult) -> None:
    """End the call with the status in ``result.error``, keeping the usage trailers."""
    status = result.error
    await context.abort(
        grpc_code_of(status) if status.code else grpc.StatusCode.UNKNOWN,
        status.message,
        trailing_metadata=(
            *_trailers_of(result),
            (STATUS_DETAILS_KEY, status.SerializeToString()),
        ),
    )


def _encode_page_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def _decode_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except ValueError:
        raise InvalidArgument(
            "page_token is not a token this server issued",
            [FieldViolation("page_token", "pass back next_page_token unchanged", "INVALID")],
        ) from None
