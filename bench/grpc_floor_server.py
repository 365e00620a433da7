"""A bare grpc.aio InferenceService that answers with canned messages: the transport floor.

``python -m bench.grpc_floor_server CHUNKS`` computes one simulated answer of
``CHUNKS`` tokens at start, then answers every ``Complete`` with it and every
``StreamComplete`` with its chunks and final, doing no other work per call (no
kernel interceptor, no routing, no accounting). It prints ``PORT <n>`` once
serving and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from provider_adapters.base import Deployment
from provider_adapters.simulated.adapter import SimulatedAdapter

PROMPT = inference_pb2.CompletionRequest(
    model="bench",
    messages=[
        inference_pb2.Message(
            role=common_pb2.ROLE_USER,
            content=[inference_pb2.ContentPart(text="how fast is the gateway today?")],
        )
    ],
)


class CannedServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Returns the same precomputed answer to every call."""

    def __init__(
        self,
        unary: inference_pb2.CompleteResponse,
        stream: list[inference_pb2.StreamCompleteResponse],
    ) -> None:
        self._unary = unary
        self._stream = stream

    async def Complete(  # noqa: N802 - the generated method name
        self, request: inference_pb2.CompleteRequest, context: Any
    ) -> inference_pb2.CompleteResponse:
        return self._unary

    async def StreamComplete(  # noqa: N802 - the generated method name
        self, request: inference_pb2.StreamCompleteRequest, context: Any
    ) -> AsyncIterator[inference_pb2.StreamCompleteResponse]:
        for response in self._stream:
            yield response


async def canned(chunks: int) -> CannedServicer:
    adapter = SimulatedAdapter(
        Deployment(provider="simulated", model="bench", options={"output_tokens": str(chunks)})
    )
    unary = inference_pb2.CompleteResponse(result=await adapter.complete(PROMPT))
    stream = []
    async for event in adapter.stream(PROMPT):
        if isinstance(event, inference_pb2.CompletionChunk):
            stream.append(inference_pb2.StreamCompleteResponse(delta=event))
        else:
            stream.append(inference_pb2.StreamCompleteResponse(final=event))
    return CannedServicer(unary, stream)  # type: ignore[abstract]


async def serve(chunks: int) -> None:
    server = aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(await canned(chunks), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
