"""Request builders and small waits shared by the inference tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from google.protobuf import duration_pb2
from google.rpc import status_pb2

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2

USER = common_pb2.ROLE_USER
POLL_SECONDS = 0.02


def completion(
    model: str = "sim",
    text: str = "hello there, how are you?",
    *,
    request_id: str = "",
    timeout_seconds: float | None = None,
    bypass_cache: bool = False,
    tags: dict[str, str] | None = None,
    fallback_models: tuple[str, ...] = (),
) -> inference_pb2.CompletionRequest:
    request = inference_pb2.CompletionRequest(
        request_id=request_id,
        model=model,
        messages=[inference_pb2.Message(role=USER, content=[inference_pb2.ContentPart(text=text)])],
    )
    request.options.bypass_cache = bypass_cache
    request.options.tags.update(tags or {})
    request.options.fallback_models.extend(fallback_models)
    if timeout_seconds is not None:
        request.options.timeout.CopyFrom(
            duration_pb2.Duration(
                nanos=int(timeout_seconds * 1e9) % 1_000_000_000, seconds=int(timeout_seconds)
            )
        )
    return request


def status_of(trailers: object) -> status_pb2.Status | None:
    """The google.rpc.Status in ``grpc-status-details-bin``, if any."""
    for key, value in trailers or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def metadata_dict(metadata: object) -> dict[str, str]:
    return {
        key: value
        for key, value in (metadata or ())  # type: ignore[attr-defined]
        if isinstance(value, str)
    }


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds, polling."""

    for _ in range(int(timeout / POLL_SECONDS)):
        if check():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"condition still false after {timeout}s")
