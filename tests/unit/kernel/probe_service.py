"""A tiny raw-bytes gRPC service that exercises the kernel's interceptor and server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from services.kernel.context import current_request_id
from services.kernel.errors import FieldViolation, InvalidArgument, ResourceExhausted
from services.kernel.server import ServiceRegistration

SERVICE = "test.v1.Probe"
_log = logging.getLogger("test.probe")

Context = aio.ServicerContext[bytes, bytes]


async def _invalid(request: bytes, context: Context) -> bytes:
    raise InvalidArgument(
        "max_output_tokens exceeds the model's limit",
        [FieldViolation("sampling.max_output_tokens", "must be <= 4096", "ABOVE_MAXIMUM")],
        reason="TOKEN_LIMIT_EXCEEDED",
    )


async def _crash(request: bytes, context: Context) -> bytes:
    raise RuntimeError("upstream said: invalid key sk-live-SECRET")


async def _request_id(request: bytes, context: Context) -> bytes:
    _log.info("probe called")
    return current_request_id().encode()


async def _slow(request: bytes, context: Context) -> bytes:
    await asyncio.sleep(float(request.decode() or "0.5"))
    return b"done"


async def _count_then_exhaust(request: bytes, context: Context) -> AsyncIterator[bytes]:
    for index in range(int(request.decode())):
        yield str(index).encode()
    raise ResourceExhausted("tokens per minute used up", retry_after_seconds=1.5)


async def _echo(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def _unimplemented(request: bytes, context: Any) -> bytes:
    raise NotImplementedError("Method not implemented!")


def unary(channel: aio.Channel, method: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A raw-bytes client of the probe's unary ``method``."""
    return channel.unary_unary(f"/{SERVICE}/{method}")


def server_stream(channel: aio.Channel, method: str) -> aio.UnaryStreamMultiCallable[bytes, bytes]:
    """A raw-bytes client of the probe's server-streaming ``method``."""
    return channel.unary_stream(f"/{SERVICE}/{method}")


def bidi_stream(channel: aio.Channel, method: str) -> aio.StreamStreamMultiCallable[bytes, bytes]:
    """A raw-bytes client of the probe's bidirectional ``method``."""
    return channel.stream_stream(f"/{SERVICE}/{method}")


def registration() -> ServiceRegistration:
    """The probe service, ready to add to a :class:`KernelServer`."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Invalid": grpc.unary_unary_rpc_method_handler(_invalid),
        "Crash": grpc.unary_unary_rpc_method_handler(_crash),
        "RequestId": grpc.unary_unary_rpc_method_handler(_request_id),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        "CountThenExhaust": grpc.unary_stream_rpc_method_handler(_count_then_exhaust),
        "Echo": grpc.stream_stream_rpc_method_handler(_echo),
        "Unimplemented": grpc.unary_unary_rpc_method_handler(_unimplemented),
    }
    generic = grpc.method_handlers_generic_handler(SERVICE, handlers)
    return ServiceRegistration(SERVICE, lambda server: server.add_generic_rpc_handlers((generic,)))
