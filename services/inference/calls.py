"""Turning one incoming request into a :class:`CallContext` and a :class:`RequestTracker`.

The deadline of a request is the earlier of the RPC's gRPC deadline and its own
``options.timeout``; both are absolute ``time.monotonic()`` values, which is
also the clock of the asyncio loop, so :func:`asyncio.timeout_at` can enforce it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from llmgw.inference.v1 import inference_pb2
from services.inference.call_metadata import Caller
from services.inference.engine import CallContext
from services.inference.outcome import Operation, OutcomeSink, RequestInfo, RequestTracker

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RpcScope:
    """What all requests of one RPC share: the caller and the RPC's deadline."""

    caller: Caller
    deadline: float | None

    @classmethod
    def of(cls, caller: Caller, time_remaining: float | None) -> RpcScope:
        """The scope of an RPC with ``time_remaining`` seconds left (None: no deadline)."""
        deadline = None if time_remaining is None else time.monotonic() + time_remaining
        return cls(caller, deadline)


def request_deadline(scope: RpcScope, options: inference_pb2.RequestOptions) -> float | None:
    """The earlier of the RPC deadline and ``options.timeout`` from now."""
    if not options.HasField("timeout"):
        return scope.deadline
    own = time.monotonic() + options.timeout.ToNanoseconds() / 1e9
    return own if scope.deadline is None else min(own, scope.deadline)


class RequestStarter:
    """Builds the context and tracker of each request; holds the outcome sinks."""

    def __init__(self, sinks: Sequence[OutcomeSink]) -> None:
        """Report every request's outcome to ``sinks``."""
        self._sinks = tuple(sinks)

    def completion(
        self,
        operation: Operation,
        method: str,
        request: inference_pb2.CompletionRequest,
        scope: RpcScope,
    ) -> RequestTracker:
        """The tracker of a completion; ``request.request_id`` must be set."""
        call = self._call(request.request_id, request.options, scope)
        info = RequestInfo(
            operation=operation,
            method=method,
            requested_model=request.model,
            call=call,
            end_user_id=request.options.end_user_id,
            completion=request,
        )
        return RequestTracker(info, self._sinks)

    def embedding(
        self, operation: Operation, request: inference_pb2.EmbedRequest, scope: RpcScope
    ) -> RequestTracker:
        """The tracker of an embedding call; ``request.request_id`` must be set."""
        call = self._call(request.request_id, request.options, scope)
        info = RequestInfo(
            operation=operation,
            method="Embed",
            requested_model=request.model,
            call=call,
            end_user_id=request.options.end_user_id,
        )
        return RequestTracker(info, self._sinks)

    @staticmethod
    def _call(
        request_id: str, options: inference_pb2.RequestOptions, scope: RpcScope
    ) -> CallContext:
        return CallContext(
            request_id=request_id,
            deadline=request_deadline(scope, options),
            api_key_id=scope.caller.api_key_id,
            project=scope.caller.project,
            tags=MappingProxyType(dict(options.tags)),
        )


@contextlib.asynccontextmanager
async def closing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Use ``stream`` and close it on the way out, so an abandoned stream cancels upstream."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
