"""The kernel's server interceptor: request ids, metrics, and the one error mapping.

Every RPC of every llmgw process passes through :class:`KernelInterceptor`. It

* binds a request id (the caller's ``x-request-id`` if well-formed, else a new one)
  so that logs of the call carry it;
* counts the call and its latency in :class:`~services.kernel.metrics.ServerMetrics`;
* turns a raised :class:`~services.kernel.errors.LlmgwError` into its status code with
  ``google.rpc`` details in ``grpc-status-details-bin``, and any other exception into a
  generic INTERNAL that reveals nothing of the exception's text.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar, cast

import grpc
from google.rpc import status_pb2
from grpc import aio

from services.kernel.context import REQUEST_ID_HEADER, bind_request_id, new_request_id
from services.kernel.errors import (
    STATUS_DETAILS_KEY,
    LlmgwError,
    grpc_code_of,
    status_from_exception,
)
from services.kernel.metrics import ServerMetrics

_log = logging.getLogger("llmgw.kernel.rpc")
MAX_CACHED_METHODS = 4096
"""Wrapped handlers kept per server; a proxy may see any method name, so it is bounded."""
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Behavior = Callable[..., Any]
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class _MethodMetrics:
    """The metric children of one method, bound once so a call does no label lookups."""

    def __init__(self, metrics: ServerMetrics, method: str, rpc_type: str) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        labels = (service, name, rpc_type)
        self._metrics = metrics
        self._labels = labels
        self.started = metrics.started.labels(*labels)
        self.latency = metrics.latency.labels(*labels)
        self.in_flight = metrics.in_flight.labels(service, name)
        self._handled: dict[grpc.StatusCode, Any] = {}

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._metrics.handled.labels(*self._labels, code.name)
        return child


class _CallScope:
    """One RPC as an async context: binds the request id, records metrics, maps errors.

    On leaving with a domain or unexpected exception it aborts the call with the
    mapped status (raising grpc's AbortError in place of the exception).
    """

    __slots__ = ("_context", "_method", "_metrics", "_started")

    def __init__(
        self, metrics: _MethodMetrics, method: str, context: aio.ServicerContext[Any, Any]
    ) -> None:
        self._metrics = metrics
        self._method = method
        self._context = context
        self._started = 0.0

    async def __aenter__(self) -> None:
        bind_request_id(_request_id_of(self._context))
        self._started = time.perf_counter()
        self._metrics.started.inc()
        self._metrics.in_flight.inc()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        mapped = exc if isinstance(exc, Exception) and not isinstance(exc, aio.AbortError) else None
        status = None if mapped is None else status_from_exception(mapped)
        try:
            if mapped is not None and status is not None:
                await self._abort(mapped, status)
        finally:
            self._metrics.in_flight.dec()
            self._metrics.handled(self._code(exc, status)).inc()
            self._metrics.latency.observe(time.perf_counter() - self._started)

    def _code(self, exc: BaseException | None, status: status_pb2.Status | None) -> grpc.StatusCode:
        if status is not None:
            return grpc_code_of(status)
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return grpc.StatusCode.CANCELLED
        # Set by context.abort or set_code; None when the handler set nothing.
        code: grpc.StatusCode | None = self._context.code()
        if code is not None:
            return code
        return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN

    async def _abort(self, exc: Exception, status: status_pb2.Status) -> None:
        if isinstance(exc, LlmgwError):
            _log.info("rpc failed", extra={"method": self._method, "reason": exc.reason})
        else:
            _log.error("rpc crashed", extra={"method": self._method}, exc_info=exc)
        await self._context.abort(
            grpc_code_of(status),
            status.message,
            trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
        )


class KernelInterceptor(aio.ServerInterceptor):
    """Wraps every method handler of a server; see the module docstring."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
                return None
            wrapped = self._wrap(handler, method)
            if len(self._wrapped) < MAX_CACHED_METHODS:
                self._wrapped[method] = wrapped
        return cast("grpc.RpcMethodHandler[_Req, _Resp]", wrapped)

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, "unary"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, "client_stream"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, "server_stream"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, "bidi_stream"),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap_unary(self, behavior: Behavior, method: str, rpc_type: str) -> Behavior:
        metrics = _MethodMetrics(self._metrics, method, rpc_type)

        async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            async with _CallScope(metrics, method, context):
                return await behavior(request, context)

        return call

    def _wrap_stream(self, behavior: Behavior, method: str, rpc_type: str) -> Behavior:
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with ``context.write`` and returns: same as unary.
            return self._wrap_unary(behavior, method, rpc_type)
        metrics = _MethodMetrics(self._metrics, method, rpc_type)

        async def stream(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with _CallScope(metrics, method, context):
                async for response in behavior(request, context):
                    yield response

        return stream


def _request_id_of(context: aio.ServicerContext[Any, Any]) -> str:
    return request_id_from(context.invocation_metadata() or ())


def request_id_from(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The caller's ``x-request-id`` when well-formed, else a new request id."""
    for key, value in metadata:
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID_PATTERN.match(value):
            return value
    return new_request_id()
