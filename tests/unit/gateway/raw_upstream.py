"""A raw-bytes stand-in for an upstream replica, on a real KernelServer.

It serves, without decoding messages, the InferenceService methods ``Complete``
(unary), ``StreamComplete`` (server streaming) and ``Chat`` (bidirectional) and
the FineTuningService method ``UploadDataset`` (client streaming). Every reply
names the replica. The caller steers a call with metadata:

=====================  ==========================================================
``x-test-sleep``       seconds to wait before answering (or between stream messages)
``x-test-fail``        ``invalid``: INVALID_ARGUMENT with a BadRequest detail;
                       ``unavailable``: UNAVAILABLE from a replica that was reached;
                       ``connect``: the same, worded like grpc core's connect failure
=====================  ==========================================================

Each replica records the metadata, remaining deadline and cancellations it saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry

from services.kernel.config import ServerSettings
from services.kernel.errors import FieldViolation, InvalidArgument, Unavailable
from services.kernel.server import KernelServer, ServiceApp, ServiceRegistration

INFERENCE = "llmgw.inference.v1.InferenceService"
FINETUNING = "llmgw.finetuning.v1.FineTuningService"
USAGE_INPUT = "llmgw-usage-input-tokens"
USAGE_OUTPUT = "llmgw-usage-output-tokens"

Context = aio.ServicerContext[bytes, bytes]


@dataclass
class Seen:
    """What one call looked like at the replica."""

    method: str
    metadata: dict[str, str | bytes]
    time_remaining: float | None


@dataclass
class RawReplica:
    """One replica: its server, name and what it saw."""

    name: str
    seen: list[Seen] = field(default_factory=list)
    cancelled: int = 0
    in_progress: int = 0
    server: KernelServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    async def start(
        self, port: int = 0, grace: float = 5.0, credentials: grpc.ServerCredentials | None = None
    ) -> None:
        app = ServiceApp(
            name=f"replica-{self.name}",
            services=(
                ServiceRegistration(INFERENCE, self._add(INFERENCE, self._inference_handlers())),
                ServiceRegistration(FINETUNING, self._add(FINETUNING, self._finetuning_handlers())),
            ),
            server_credentials=credentials,
        )
        self.server = KernelServer(
            app, ServerSettings(port=port, grace_period_seconds=grace), CollectorRegistry()
        )
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.drain(grace_seconds=0)

    async def set_serving(self, serving: bool) -> None:
        assert self.server is not None
        from grpc_health.v1 import health_pb2

        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.server.health.set("", status)

    def _add(self, service: str, handlers: dict[str, Any]) -> Any:
        generic = grpc.method_handlers_generic_handler(service, handlers)

        def add(server: aio.Server) -> None:
            server.add_generic_rpc_handlers((generic,))

        return add

    def _inference_handlers(self) -> dict[str, Any]:
        return {
            "Complete": grpc.unary_unary_rpc_method_handler(self._complete),
            "StreamComplete": grpc.unary_stream_rpc_method_handler(self._stream_complete),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
        }

    def _finetuning_handlers(self) -> dict[str, Any]:
        return {"UploadDataset": grpc.stream_unary_rpc_method_handler(self._upload)}

    def _record(self, method: str, context: Context) -> dict[str, str | bytes]:
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        self.seen.append(Seen(method, metadata, context.time_remaining()))
        return metadata

    async def _sleep(self, metadata: dict[str, str | bytes]) -> None:
        seconds = metadata.get("x-test-sleep")
        if seconds:
            await asyncio.sleep(float(seconds))

    def _fail(self, metadata: dict[str, str | bytes]) -> None:
        failure = metadata.get("x-test-fail")
        if failure == "invalid":
            raise InvalidArgument(
                "prompt too long",
                [FieldViolation("completion.messages", "too long", "TOO_LONG")],
                reason="PROMPT_TOO_LONG",
            )
        if failure == "unavailable":
            raise Unavailable("provider down", reason="PROVIDER_UNAVAILABLE")
        if failure == "connect":
            raise Unavailable(
                "failed to connect to all addresses; last error: provider",
                reason="PROVIDER_UNAVAILABLE",
            )

    async def _complete(self, request: bytes, context: Context) -> bytes:
        metadata = self._record("Complete", context)
        self.in_progress += 1
        try:
            await self._sleep(metadata)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_progress -= 1
        self._fail(metadata)
        await context.send_initial_metadata((("x-replica", self.name),))
        context.set_trailing_metadata(((USAGE_INPUT, str(len(request))), (USAGE_OUTPUT, "7")))
        return f"{self.name}:".encode() + request

    async def _stream_complete(self, request: bytes, context: Context) -> AsyncIterator[bytes]:
        metadata = self._record("StreamComplete", context)
        self._fail(metadata)
        self.in_progress += 1
        try:
            for index in range(int(request.decode() or "3")):
                await self._sleep(metadata)
                yield f"{self.name}:{index}".encode()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_progress -= 1
        context.set_trailing_metadata(((USAGE_INPUT, "1"), (USAGE_OUTPUT, request.decode())))

    async def _chat(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        metadata = self._record("Chat", context)
        self.in_progress += 1
        try:
            async for request in requests:
                await self._sleep(metadata)
                yield f"{self.name}:".encode() + request
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_progress -= 1

    async def _upload(self, requests: AsyncIterator[bytes], context: Context) -> bytes:
        metadata = self._record("UploadDataset", context)
        count = size = 0
        async for request in requests:
            count += 1
            size += len(request)
        self._fail(metadata)
        return f"{self.name}:{count}:{size}".encode()
