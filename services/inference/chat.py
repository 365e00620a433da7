"""One ``Chat`` stream: many concurrent completions over one bidirectional call.

A reader task takes the client's messages. ``start`` runs the completion in a
task of its own that sends its deltas and then exactly one final, tagged with
the request id; ``cancel`` cancels that task, which cancels the upstream
request, and the request ends with a final whose finish reason and status are
CANCELLED. A request's error is its final's ``error``; the stream lives on.
A ``start`` without request_id or with the id of an in-flight request, or a
message with no action, gets a final carrying INVALID_ARGUMENT for that id.
Such a message starts no request and has no usage event of its own: the event
id is the request id, and a message without one (no ``start.request_id``, no
action at all) has none to give; a duplicate's id belongs to the in-flight
request, whose one event carries it (a second event under that id would be
merged with it by consumers that de-duplicate by id).

Half-closing the client side lets the in-flight requests finish, then the call
ends with OK. When the call itself ends early (client cancellation, deadline,
disconnect) every in-flight request is cancelled, upstream included, and
recorded as cancelled.

All responses go through one bounded queue, so a slow reader slows the
requests down instead of piling up memory; a request's final is queued after
its last delta and before it leaves the in-flight table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.inference.calls import closing_stream
from services.inference.engine import CompletionChunk, CompletionEngine, CompletionRequest
from services.inference.outcome import RequestTracker
from services.kernel.errors import (
    DeadlineExceeded,
    FieldViolation,
    Internal,
    InvalidArgument,
    LlmgwError,
)

_log = logging.getLogger(__name__)

ChatRequest = inference_pb2.ChatRequest
ChatResponse = inference_pb2.ChatResponse

OUTPUT_QUEUE_SIZE = 256
"""Responses buffered ahead of the client before requests wait."""


@dataclass(frozen=True, slots=True)
class _End:
    """Marks the end of the response stream; ``error`` ends it with that error."""

    error: BaseException | None = None


class _InFlight:
    """One running request of the stream."""

    __slots__ = ("cancel_requested", "finishing", "started", "task", "tracker")

    def __init__(self, tracker: RequestTracker) -> None:
        self.tracker = tracker
        self.task: asyncio.Task[None] | None = None
        self.started = False
        self.cancel_requested = False
        self.finishing = False


class ChatSession:
    """Serves one ``Chat`` call; create one per call and iterate :meth:`run`."""

    def __init__(
        self, engine: CompletionEngine, start: Callable[[CompletionRequest], RequestTracker]
    ) -> None:
        """Run requests on ``engine``; ``start`` makes each request's tracker."""
        self._engine = engine
        self._start = start
        self._out: asyncio.Queue[ChatResponse | _End] = asyncio.Queue(OUTPUT_QUEUE_SIZE)
        self._in_flight: dict[str, _InFlight] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    async def run(self, requests: AsyncIterator[ChatRequest]) -> AsyncGenerator[ChatResponse]:
        """The server's side of the call for the client's ``requests``."""
        reader = asyncio.create_task(self._read(requests), name="chat-reader")
        try:
            while True:
                item = await self._out.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            await self._tear_down(reader)

    async def _read(self, requests: AsyncIterator[ChatRequest]) -> None:
        try:
            async for message in requests:
                await self._handle(message)
            await self._idle.wait()
            await self._out.put(_End())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._out.put(_End(exc))

    async def _handle(self, message: ChatRequest) -> None:
        action = message.WhichOneof("action")
        if action == "start":
            await self._begin(message.start)
        elif action == "cancel":
            await self._cancel(message.cancel.request_id)
        else:
            await self._reject(
                "",
                InvalidArgument(
                    "a ChatRequest needs an action",
                    [FieldViolation("action", "set start or cancel", "REQUIRED")],
                ),
            )

    async def _begin(self, request: CompletionRequest) -> None:
        request_id = request.request_id
        if not request_id:
            await self._reject(
                "",
                InvalidArgument(
                    "start.request_id is required in Chat",
                    [FieldViolation("start.request_id", "must not be empty", "REQUIRED")],
                ),
            )
            return
        if request_id in self._in_flight:
            await self._reject(
                request_id,
                InvalidArgument(
                    f"request {request_id!r} is already in flight on this stream",
                    [
                        FieldViolation(
                            "start.request_id",
                            "must be unique among in-flight requests",
                            "DUPLICATE",
                        )
                    ],
                ),
            )
            return
        entry = _InFlight(self._start(request))
        self._in_flight[request_id] = entry
        self._idle.clear()
        entry.task = asyncio.create_task(self._serve(entry, request), name=f"chat:{request_id}")

    async def _cancel(self, request_id: str) -> None:
        entry = self._in_flight.get(request_id)
        if entry is None or entry.finishing or entry.task is None:
            return  # unknown or already finished: ignored
        entry.cancel_requested = True
        entry.task.cancel()
        if not entry.started:  # the task will never run its body; finish it here
            await self._finish(request_id, entry, entry.tracker.cancelled())

    async def _serve(self, entry: _InFlight, request: CompletionRequest) -> None:
        entry.started = True
        tracker = entry.tracker
        request_id = request.request_id
        try:
            final = await self._generate(request, tracker)
        except asyncio.CancelledError:
            if not entry.cancel_requested:
                tracker.cancelled()  # the whole call is going away
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            final = tracker.cancelled()
        except TimeoutError:
            final = tracker.failed(DeadlineExceeded("the request's deadline passed"))
        except Exception as exc:
            if not isinstance(exc, LlmgwError):
                _log.error("chat request %s crashed", request_id, exc_info=exc)
            final = tracker.failed(exc)
        await self._finish(request_id, entry, final)

    async def _generate(
        self, request: CompletionRequest, tracker: RequestTracker
    ) -> inference_pb2.CompletionResult:
        call = tracker.info.call
        request_id = request.request_id
        stream = self._engine.stream(request, call)
        async with closing_stream(stream), asyncio.timeout_at(call.deadline):
            async for event in stream:
                if isinstance(event, CompletionChunk):
                    tracker.saw_chunk(event)
                    await self._out.put(ChatResponse(request_id=request_id, delta=event))
                else:
                    return tracker.succeeded(event)
        raise Internal("the engine ended a stream without a result")

    async def _finish(
        self, request_id: str, entry: _InFlight, final: inference_pb2.CompletionResult
    ) -> None:
        entry.finishing = True
        try:
            await self._out.put(ChatResponse(request_id=request_id, final=final))
        finally:
            if self._in_flight.get(request_id) is entry:
                del self._in_flight[request_id]
            if not self._in_flight:
                self._idle.set()

    async def _reject(self, request_id: str, error: InvalidArgument) -> None:
        final = inference_pb2.CompletionResult(
            request_id=request_id,
            finish_reason=common_pb2.FINISH_REASON_ERROR,
            error=error.to_status(),
        )
        await self._out.put(ChatResponse(request_id=request_id, final=final))

    async def _tear_down(self, reader: asyncio.Task[None]) -> None:
        reader.cancel()
        entries = list(self._in_flight.values())
        tasks = [entry.task for entry in entries if entry.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(reader, *tasks, return_exceptions=True)
        for entry in entries:
            if not entry.tracker.done:
                entry.tracker.cancelled()
        self._in_flight.clear()
