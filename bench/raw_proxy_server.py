"""The floor of a Python gRPC hop: a bare grpc.aio server forwarding raw bytes, for benchmarks.

``python -m bench.raw_proxy_server UPSTREAM`` serves every method by forwarding
it to ``UPSTREAM`` (``host:port``) over one channel: unary-request calls as unary
or server-streaming (by the method name's ``Stream`` prefix), without metadata,
deadlines, filters, balancing or retries. It prints ``PORT <n>`` once serving and
runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, channel: aio.Channel) -> None:
        self._channel = channel

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method: str = details.method
        if method.rpartition("/")[2].startswith("Stream"):
            upstream_stream: aio.UnaryStreamMultiCallable[bytes, bytes] = (
                self._channel.unary_stream(method)
            )

            async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
                async for message in upstream_stream(request):
                    yield message

            return grpc.unary_stream_rpc_method_handler(stream)
        upstream_unary: aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            method
        )

        async def unary(request: bytes, context: Any) -> bytes:
            response: bytes = await upstream_unary(request)
            return response

        return grpc.unary_unary_rpc_method_handler(unary)


async def _main(upstream: str) -> None:
    async with aio.insecure_channel(upstream) as channel:
        server = aio.server()
        server.add_generic_rpc_handlers((_Forward(channel),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"PORT {port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(0)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
