"""The benchmarks' gRPC calls: one chat completion, unary and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterable

from bench.measure import Target
from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc

Metadata = tuple[tuple[str, str], ...]
"""gRPC request metadata: (key, value) pairs."""


def request(model: str = "bench") -> inference_pb2.CompletionRequest:
    """The completion every benchmark asks of ``model``: one short user message."""
    return inference_pb2.CompletionRequest(
        model=model,
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_USER,
                content=[inference_pb2.ContentPart(text="how fast is the gateway today?")],
            )
        ],
    )


async def drain(stream: AsyncIterable[object]) -> None:
    """Read ``stream`` to its end."""
    async for _ in stream:
        pass


def grpc_target(
    stub: inference_pb2_grpc.InferenceServiceAsyncStub,
    model: str = "bench",
    metadata: Metadata | None = None,
) -> Target:
    """``Complete`` and a drained ``StreamComplete`` of :func:`request` through ``stub``."""
    completion = request(model)
    unary_request = inference_pb2.CompleteRequest(completion=completion)
    stream_request = inference_pb2.StreamCompleteRequest(completion=completion)

    async def unary() -> None:
        await stub.Complete(unary_request, metadata=metadata)

    async def stream() -> None:
        await drain(stub.StreamComplete(stream_request, metadata=metadata))

    return Target(unary, stream)
