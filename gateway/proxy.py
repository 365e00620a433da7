"""The forwarding core: every call shape, as raw bytes, through the chain to an upstream.

For each call the proxy

1. builds the :class:`~gateway.filters.base.Call` and runs the filter chain
   (``on_request``, then ``on_first_message`` when a filter reads the method's first
   message: for streaming requests that message is then read before the upstream
   call starts);
2. picks an endpoint of the route's cluster and waits for its channel to connect;
   an endpoint that cannot be connected to is reported to outlier detection and
   another is tried, within the route's ``retries`` and the cluster's retry budget;
3. forwards messages both ways without decoding them, with the caller's metadata
   (see :mod:`gateway.metadata`), a timeout of the caller's remaining deadline or the
   route's timeout, whichever is shorter, and the upstream's initial metadata,
   trailers, status code, message and ``grpc-status-details-bin`` back;
4. cancels the upstream call when the caller goes away, and ends the caller's
   call with CANCELLED when the upstream cancels;
5. tells the filters how the call ended.

The caller's side of a call is a :class:`Downstream`: the grpc.aio servicer context
for the gRPC listener, or the HTTP edge's stand-in (:mod:`gateway.http.server`), which
calls :meth:`Proxy.unary`, :meth:`Proxy.server_stream` and :meth:`Proxy.client_stream`
in process.

A unary-request call is also retried on another endpoint when its upstream attempt
failed with UNAVAILABLE because the connection could not be made (nothing was
received); a call that reached an upstream is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeAlias

import grpc
from grpc import aio

from gateway.chain import FilterChain
from gateway.clusters.endpoint import Endpoint
from gateway.filters.base import Call, CallOutcome, CallShape, GatewayFilter, Metadata, Stop
from gateway.metadata import downstream_metadata, upstream_request_metadata
from gateway.routes import Route
from services.kernel.context import current_request_id
from services.kernel.errors import Unavailable

_log = logging.getLogger("llmgw.gateway.proxy")


class Downstream(Protocol):
    """The caller's side of one call, as the proxy uses it.

    A grpc.aio ``ServicerContext`` is one; the HTTP edge (:mod:`gateway.http`) gives its
    own, so that an HTTP request runs through the same chain, routes and clusters in
    process. ``abort`` must raise (it ends the call with a status and trailers).
    """

    def invocation_metadata(self) -> Any: ...

    def peer(self) -> str: ...

    def time_remaining(self) -> float | None: ...

    async def read(self) -> Any: ...

    async def write(self, message: bytes) -> None: ...

    async def send_initial_metadata(self, initial_metadata: Any) -> None: ...

    def set_trailing_metadata(self, trailing_metadata: Any) -> None: ...

    async def abort(
        self, code: grpc.StatusCode, details: str, trailing_metadata: Any
    ) -> NoReturn: ...


Context: TypeAlias = Downstream
UnaryBehavior: TypeAlias = Callable[[bytes, Downstream], Awaitable[bytes]]
"""Forwards one unary call: the request's bytes in, the response's bytes out."""
ServerStreamBehavior: TypeAlias = Callable[[bytes, Downstream], Awaitable[None]]
"""Forwards one server-streaming call; responses go to ``Downstream.write``."""
ClientStreamBehavior: TypeAlias = Callable[[Downstream], Awaitable[bytes]]
"""Forwards one client-streaming call: the requests come from ``Downstream.read`` (until it
returns a non-bytes end marker), the response's bytes out."""
Handler: TypeAlias = "grpc.RpcMethodHandler[bytes, bytes]"
_UpstreamCall: TypeAlias = (
    "aio.UnaryUnaryCall[bytes, bytes] | aio.UnaryStreamCall[bytes, bytes]"
    " | aio.StreamUnaryCall[bytes, bytes] | aio.StreamStreamCall[bytes, bytes]"
)
Readers = tuple[GatewayFilter, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What is fixed for every call of one method on one route, worked out once."""

    method: str
    shape: CallShape
    route: Route
    readers: Readers
    """Filters reading the first request message."""
    stream_readers: Readers
    """Filters reading every later request message (request streams only)."""


"""The filters that read the first request message of a method."""
_CONNECT_FAILURE = "failed to connect to all addresses"
"""How grpc core's own status starts for a call that failed because no connection
could be made (an upstream's status is told apart by its trailers, see ``_may_retry``)."""


async def _no_requests() -> AsyncIterator[bytes]:
    """The unused request iterator of a call whose requests come from ``Downstream.read``."""
    nothing: tuple[bytes, ...] = ()
    for message in nothing:
        yield message


class _Exchange:
    """Book-keeping of one call: the route, the upstream attempts and the counters."""

    __slots__ = (
        "attempt_started",
        "attempts",
        "code",
        "endpoint",
        "headers_sent",
        "message",
        "reached",
        "readers",
        "request_bytes",
        "request_messages",
        "response_bytes",
        "response_messages",
        "retry_taken",
        "route",
        "stop",
        "stopped_by",
        "stream_readers",
        "trailers",
        "upstream_seconds",
    )

    def __init__(
        self,
        route: Route,
        readers: tuple[GatewayFilter, ...],
        stream_readers: tuple[GatewayFilter, ...] = (),
    ) -> None:
        self.route = route
        self.readers = readers
        self.stream_readers = stream_readers
        self.endpoint: Endpoint | None = None
        self.attempts = 0
        self.attempt_started = 0.0
        self.upstream_seconds = 0.0
        self.retry_taken = False
        self.headers_sent = False
        self.request_messages = 0
        self.request_bytes = 0
        self.response_messages = 0
        self.response_bytes = 0
        self.code = grpc.StatusCode.OK
        self.message = ""
        self.trailers: Metadata = ()
        self.stopped_by = ""
        self.stop: tuple[Stop, str] | None = None
        """A filter's stop of a later stream message, with the filter's name."""
        self.reached = 0
        """How many filters, from the first, the call reached."""

    def ended_by(self, exc: BaseException) -> None:
        """Note how a call that raised ended, unless its status is already known."""
        if self.code is not grpc.StatusCode.OK or isinstance(exc, aio.AbortError):
            return
        if isinstance(exc, asyncio.CancelledError):
            self.code, self.message = grpc.StatusCode.CANCELLED, "cancelled by the caller"
        else:
            self.code, self.message = grpc.StatusCode.INTERNAL, "internal error"

    def outcome(self, call: Call) -> CallOutcome:
        endpoint = self.endpoint
        return CallOutcome(
            code=self.code,
            message=self.message,
            trailing_metadata=self.trailers,
            duration_seconds=time.perf_counter() - call.started,
            cluster=self.route.cluster.name,
            endpoint=endpoint.address if endpoint is not None else "",
            attempts=self.attempts,
            upstream_seconds=self.upstream_seconds,
            request_messages=self.request_messages,
            response_messages=self.response_messages,
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            stopped_by=self.stopped_by,
        )


class Proxy:
    """Makes the method handlers that forward calls of a route through the chain."""

    def __init__(self, chain: FilterChain) -> None:
        self._chain = chain

    def handler(self, method: str, shape: CallShape, route: Route) -> Handler:
        """The raw-bytes handler of ``method`` (a call of ``shape``) forwarding to ``route``."""
        if shape is CallShape.UNARY:
            return grpc.unary_unary_rpc_method_handler(self.unary(method, route))
        if shape is CallShape.SERVER_STREAM:
            return grpc.unary_stream_rpc_method_handler(self.server_stream(method, route))
        streams_responses = shape is CallShape.BIDI_STREAM
        behavior = self._request_stream(method, route, streams_responses=streams_responses)
        if streams_responses:
            return grpc.stream_stream_rpc_method_handler(behavior)
        return grpc.stream_unary_rpc_method_handler(behavior)

    def unary(self, method: str, route: Route) -> UnaryBehavior:
        """What forwards a unary call of ``method`` to ``route`` for any :class:`Downstream`."""
        plan = self._plan(method, CallShape.UNARY, route)

        async def unary(request: bytes, context: Context) -> bytes:
            response = await self._single_request(plan, context, request)
            assert response is not None
            return response

        return unary

    def server_stream(self, method: str, route: Route) -> ServerStreamBehavior:
        """What forwards a server-streaming call of ``method`` to ``route``."""
        plan = self._plan(method, CallShape.SERVER_STREAM, route)

        async def server_stream(request: bytes, context: Context) -> None:
            await self._single_request(plan, context, request)

        return server_stream

    def client_stream(self, method: str, route: Route) -> ClientStreamBehavior:
        """What forwards a client-streaming call of ``method`` to ``route``."""
        behavior = self._request_stream(method, route, streams_responses=False)

        async def client_stream(context: Downstream) -> bytes:
            response = await behavior(_no_requests(), context)
            assert response is not None, "a client-streaming call ends with one response"
            return response

        return client_stream

    # The call shapes: one request, or a stream of them ------------------------------

    def _plan(self, method: str, shape: CallShape, route: Route) -> _Plan:
        readers = self._chain.first_message_readers(method)
        stream_readers = (
            self._chain.stream_message_readers(method) if shape.streams_requests else ()
        )
        return _Plan(method, shape, route, readers, stream_readers)

    async def _single_request(self, plan: _Plan, context: Context, request: bytes) -> bytes | None:
        """A unary call (its response) or a server-streaming one (None; relayed as it comes)."""
        call, exchange = self._start(plan, context)
        try:
            await self._admit(call, exchange, context, request)
            if plan.shape is CallShape.UNARY:
                return await self._forward_unary(call, exchange, context, request)
            await self._forward_server_stream(call, exchange, context, request)
            return None
        except BaseException as exc:
            exchange.ended_by(exc)
            raise
        finally:
            self._end(call, exchange)

    def _request_stream(
        self, method: str, route: Route, *, streams_responses: bool
    ) -> Callable[[AsyncIterator[bytes], Context], Awaitable[bytes | None]]:
        """A client-streaming call (its response) or a bidirectional one (None)."""
        shape = CallShape.BIDI_STREAM if streams_responses else CallShape.CLIENT_STREAM
        plan = self._plan(method, shape, route)

        async def request_stream(_: AsyncIterator[bytes], context: Context) -> bytes | None:
            call, exchange = self._start(plan, context)
            try:
                first = await self._admit_stream(call, exchange, context)
                up = await self._open_stream(
                    call, exchange, context, streams_responses=streams_responses
                )
                return await self._relay(call, exchange, context, up, first)
            except BaseException as exc:
                exchange.ended_by(exc)
                raise
            finally:
                self._end(call, exchange)

        return request_stream

    # Admission: the filter chain -----------------------------------------------------

    def _start(self, plan: _Plan, context: Context) -> tuple[Call, _Exchange]:
        metadata = tuple(context.invocation_metadata() or ())
        call = Call(
            method=plan.method,
            shape=plan.shape,
            metadata=metadata,
            peer=context.peer(),
            started=time.perf_counter(),
            upstream_metadata=upstream_request_metadata(metadata, current_request_id()),
        )
        plan.route.cluster.budget.active_calls += 1
        return call, _Exchange(plan.route, plan.readers, plan.stream_readers)

    def _end(self, call: Call, exchange: _Exchange) -> None:
        budget = exchange.route.cluster.budget
        budget.active_calls -= 1
        if exchange.retry_taken:
            budget.release()
        self._chain.on_call_end(call, exchange.outcome(call), exchange.reached)

    async def _admit(
        self, call: Call, exchange: _Exchange, context: Context, request: bytes
    ) -> None:
        """Run the chain for a unary-request call."""
        exchange.request_messages = 1
        exchange.request_bytes = len(request)
        stop, exchange.reached = await self._on_request(call, exchange)
        if stop is not None:
            name = self._chain.filters[exchange.reached - 1].name
            await self._refuse(context, exchange, stop, name)
        if exchange.readers:
            stop, name = await self._chain.on_first_message(call, request, exchange.readers)
            if stop is not None:
                await self._refuse(context, exchange, stop, name)

    async def _admit_stream(
        self, call: Call, exchange: _Exchange, context: Context
    ) -> bytes | None:
        """Run the chain for a streaming-request call.

        Returns the first request message when the chain read it (None when it did
        not, or when the client sent nothing).
        """
        stop, exchange.reached = await self._on_request(call, exchange)
        if stop is not None:
            name = self._chain.filters[exchange.reached - 1].name
            await self._refuse(context, exchange, stop, name)
        if not exchange.readers:
            return None
        first: object = await context.read()
        if not isinstance(first, bytes):  # EOF: the client sent nothing
            return None
        exchange.request_messages = 1
        exchange.request_bytes = len(first)
        stop, name = await self._chain.on_first_message(call, first, exchange.readers)
        if stop is not None:
            await self._refuse(context, exchange, stop, name)
        return first

    async def _on_request(self, call: Call, exchange: _Exchange) -> tuple[Stop | None, int]:
        """The chain's ``on_request``; when it raises (the caller cancelled while a filter
        awaited), every filter is told of the call's end, so none keeps what it took."""
        try:
            return await self._chain.on_request(call)
        except BaseException:
            exchange.reached = len(self._chain.filters)
            raise

    async def _refuse(
        self, context: Context, exchange: _Exchange, stop: Stop, name: str
    ) -> NoReturn:
        exchange.code = stop.code
        exchange.message = stop.status.message
        exchange.trailers = stop.trailing_metadata()
        exchange.stopped_by = name
        await context.abort(stop.code, stop.status.message, exchange.trailers)
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    # Upstream attempts ---------------------------------------------------------------

    async def _connect(self, exchange: _Exchange, tried: list[Endpoint]) -> Endpoint | None:
        """An endpoint whose channel is connected, trying others as retries allow."""
        cluster = exchange.route.cluster
        while exchange.attempts <= exchange.route.retries:
            if exchange.attempts and not self._take_retry(exchange):
                return None
            endpoint = cluster.pick(tried)
            if endpoint is None:
                return None
            exchange.attempts += 1
            exchange.endpoint = endpoint
            endpoint.in_flight += 1
            exchange.attempt_started = time.perf_counter()
            try:
                connected = await endpoint.connect(cluster.settings.connect_timeout_seconds)
            except asyncio.CancelledError:
                self._cancelled(exchange, endpoint)
                raise
            if connected and not endpoint.removed:
                return endpoint
            # Connected but removed (DNS) meanwhile: its channel is closing and would
            # refuse the call; nothing was sent and the endpoint did nothing wrong.
            self._end_attempt(
                exchange, endpoint, None if connected else grpc.StatusCode.UNAVAILABLE
            )
            tried.append(endpoint)
        return None

    def _take_retry(self, exchange: _Exchange) -> bool:
        if not exchange.retry_taken:
            exchange.retry_taken = exchange.route.cluster.budget.try_acquire()
        return exchange.retry_taken

    def _end_attempt(
        self, exchange: _Exchange, endpoint: Endpoint, code: grpc.StatusCode | None
    ) -> None:
        """Account the end of an attempt; ``code`` None when the gateway itself ended it
        (the upstream's health is then unknown, so outlier detection is not told)."""
        endpoint.in_flight -= 1
        exchange.upstream_seconds += time.perf_counter() - exchange.attempt_started
        if code is not None:
            exchange.route.cluster.record(endpoint, code)

    def _may_retry(self, exchange: _Exchange, error: aio.AioRpcError) -> bool:
        """Whether a failed attempt never reached its upstream and may be made again."""
        # A status grpc core made up locally has no metadata at all; one an upstream
        # sent may carry any words, so a status with trailers (every llmgw service
        # attaches its rich status) or initial metadata reached an upstream.
        return (
            error.code() is grpc.StatusCode.UNAVAILABLE
            and not exchange.headers_sent
            and not error.initial_metadata()
            and not error.trailing_metadata()
            and (error.details() or "").startswith(_CONNECT_FAILURE)
            and exchange.attempts <= exchange.route.retries
        )

    async def _no_upstream(self, exchange: _Exchange, context: Context) -> NoReturn:
        cluster = exchange.route.cluster.name
        if exchange.attempts:
            error = Unavailable(
                f"no endpoint of cluster {cluster} could be reached",
                reason="UPSTREAM_CONNECT_FAILED",
            )
        else:
            error = Unavailable(
                f"cluster {cluster} has no healthy endpoint", reason="NO_HEALTHY_UPSTREAM"
            )
        status = error.to_status()
        exchange.code = grpc.StatusCode.UNAVAILABLE
        exchange.message = status.message
        exchange.trailers = Stop(status).trailing_metadata()
        await context.abort(exchange.code, exchange.message, exchange.trailers)
        raise AssertionError("abort returned")  # pragma: no cover

    def _timeout(self, context: Context, route: Route) -> float | None:
        remaining: float | None = context.time_remaining()  # None: the caller set no deadline
        if route.timeout_seconds is None:
            return remaining
        if remaining is None:
            return route.timeout_seconds
        return min(remaining, route.timeout_seconds)

    # Forwarding ----------------------------------------------------------------------

    async def _forward_unary(
        self, call: Call, exchange: _Exchange, context: Context, request: bytes
    ) -> bytes:
        tried: list[Endpoint] = []
        while True:
            endpoint = await self._connect(exchange, tried)
            if endpoint is None:
                await self._no_upstream(exchange, context)
            timeout = self._timeout(context, exchange.route)
            up = endpoint.unary_unary(call.method)(
                request, metadata=call.upstream_metadata, timeout=timeout
            )
            try:
                response = await up
            except aio.AioRpcError as error:
                self._end_attempt(exchange, endpoint, error.code())
                if self._may_retry(exchange, error):
                    tried.append(endpoint)
                    continue
                await self._forward_error(context, exchange, error)
            except BaseException as exc:
                self._abandon(exchange, endpoint, up, exc)
                raise
            self._end_attempt(exchange, endpoint, grpc.StatusCode.OK)
            await self._send_headers(context, exchange, up)
            self._finish_ok(context, exchange, await up.trailing_metadata())
            exchange.response_messages = 1
            exchange.response_bytes = len(response)
            return response

    async def _forward_server_stream(
        self, call: Call, exchange: _Exchange, context: Context, request: bytes
    ) -> None:
        tried: list[Endpoint] = []
        while True:
            endpoint = await self._connect(exchange, tried)
            if endpoint is None:
                await self._no_upstream(exchange, context)
            timeout = self._timeout(context, exchange.route)
            up = endpoint.unary_stream(call.method)(
                request, metadata=call.upstream_metadata, timeout=timeout
            )
            try:
                await self._relay_responses(exchange, context, up)
            except aio.AioRpcError as error:
                self._end_attempt(exchange, endpoint, error.code())
                if self._may_retry(exchange, error):
                    tried.append(endpoint)
                    continue
                await self._forward_error(context, exchange, error)
            except BaseException as exc:
                self._abandon(exchange, endpoint, up, exc)
                raise
            self._end_attempt(exchange, endpoint, grpc.StatusCode.OK)
            await self._send_headers(context, exchange, up)
            self._finish_ok(context, exchange, await up.trailing_metadata())
            return

    async def _open_stream(
        self, call: Call, exchange: _Exchange, context: Context, *, streams_responses: bool
    ) -> aio.StreamUnaryCall[bytes, bytes] | aio.StreamStreamCall[bytes, bytes]:
        """Start the upstream call of a streaming-request call (retried at connect only)."""
        endpoint = await self._connect(exchange, [])
        if endpoint is None:
            await self._no_upstream(exchange, context)
        timeout = self._timeout(context, exchange.route)
        if streams_responses:
            return endpoint.stream_stream(call.method)(
                metadata=call.upstream_metadata, timeout=timeout
            )
        return endpoint.stream_unary(call.method)(metadata=call.upstream_metadata, timeout=timeout)

    async def _relay(
        self,
        call: Call,
        exchange: _Exchange,
        context: Context,
        up: aio.StreamUnaryCall[bytes, bytes] | aio.StreamStreamCall[bytes, bytes],
        first: bytes | None,
    ) -> bytes | None:
        """Pump requests up while relaying the response(s) down, until the upstream ends."""
        endpoint = exchange.endpoint
        assert endpoint is not None
        pump = asyncio.create_task(self._pump_requests(call, exchange, context, up, first))
        response: bytes | None = None
        attempt_ended = False
        try:
            if isinstance(up, aio.StreamStreamCall):
                await self._relay_responses(exchange, context, up)
            else:
                response = await up
                exchange.response_messages = 1
                exchange.response_bytes = len(response)
        except aio.AioRpcError as error:
            self._end_attempt(exchange, endpoint, error.code())
            await self._forward_error(context, exchange, error)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if exchange.stop is None or (current is not None and current.cancelling()):
                self._abandon(exchange, endpoint, up, exc)
                raise
            self._end_attempt(exchange, endpoint, None)  # a filter ended it, not the upstream
            attempt_ended = True
        except BaseException as exc:
            self._abandon(exchange, endpoint, up, exc)
            raise
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        if exchange.stop is not None:
            if not attempt_ended:
                self._end_attempt(exchange, endpoint, None)
            stop, name = exchange.stop
            await self._refuse(context, exchange, stop, name)
        self._end_attempt(exchange, endpoint, grpc.StatusCode.OK)
        await self._send_headers(context, exchange, up)
        self._finish_ok(context, exchange, await up.trailing_metadata())
        return response

    async def _pump_requests(
        self,
        call: Call,
        exchange: _Exchange,
        context: Context,
        up: aio.StreamUnaryCall[bytes, bytes] | aio.StreamStreamCall[bytes, bytes],
        first: bytes | None,
    ) -> None:
        """Copy the caller's messages to the upstream and half-close it after the last.

        Each message after the first goes through the filters that read every message;
        when one stops the call, the upstream call is cancelled and the stop noted in
        ``exchange.stop`` for the relay to end the call with.
        """
        try:
            if first is not None:
                await up.write(first)
            if first is not None or not exchange.readers:
                while True:
                    message: object = await context.read()
                    if not isinstance(message, bytes):  # EOF: the client half-closed
                        break
                    exchange.request_messages += 1
                    exchange.request_bytes += len(message)
                    if exchange.stream_readers:
                        stop, name = await self._chain.on_stream_message(
                            call, message, exchange.stream_readers
                        )
                        if stop is not None:
                            exchange.stop = (stop, name)
                            up.cancel()
                            return
                    await up.write(message)
            await up.done_writing()
        except (asyncio.InvalidStateError, aio.AioRpcError, aio.UsageError):
            pass  # the upstream call has ended; its status is what the caller gets
        except Exception:
            _log.debug("request stream ended abnormally", exc_info=True)
            up.cancel()

    async def _relay_responses(
        self,
        exchange: _Exchange,
        context: Context,
        up: aio.UnaryStreamCall[bytes, bytes] | aio.StreamStreamCall[bytes, bytes],
    ) -> None:
        while True:
            message = await up.read()
            if message is aio.EOF:
                return
            assert isinstance(message, bytes)
            if not exchange.headers_sent:
                await self._send_headers(context, exchange, up)
            exchange.response_messages += 1
            exchange.response_bytes += len(message)
            await context.write(message)

    async def _send_headers(self, context: Context, exchange: _Exchange, up: _UpstreamCall) -> None:
        if exchange.headers_sent:
            return
        exchange.headers_sent = True
        headers = downstream_metadata(await up.initial_metadata())
        if headers:
            await context.send_initial_metadata(headers)

    def _finish_ok(self, context: Context, exchange: _Exchange, trailers: Any) -> None:
        exchange.trailers = downstream_metadata(trailers)
        if exchange.trailers:
            context.set_trailing_metadata(exchange.trailers)

    async def _forward_error(
        self, context: Context, exchange: _Exchange, error: aio.AioRpcError
    ) -> NoReturn:
        exchange.code = error.code()
        exchange.message = error.details() or ""
        exchange.trailers = downstream_metadata(error.trailing_metadata())
        if not exchange.headers_sent:
            exchange.headers_sent = True
            headers = downstream_metadata(error.initial_metadata())
            if headers:
                await context.send_initial_metadata(headers)
        await context.abort(exchange.code, exchange.message, exchange.trailers)
        raise AssertionError("abort returned")  # pragma: no cover

    def _abandon(
        self, exchange: _Exchange, endpoint: Endpoint, up: _UpstreamCall, exc: BaseException
    ) -> None:
        """End an attempt the gateway gives up on (the caller went away, or relaying to it
        failed): cancel the upstream call so it does not run on unobserved."""
        up.cancel()
        if isinstance(exc, asyncio.CancelledError):
            self._cancelled(exchange, endpoint)
        else:
            self._end_attempt(exchange, endpoint, None)

    def _cancelled(self, exchange: _Exchange, endpoint: Endpoint) -> None:
        exchange.code = grpc.StatusCode.CANCELLED
        exchange.message = "cancelled by the caller"
        self._end_attempt(exchange, endpoint, None)  # says nothing of the upstream's health
