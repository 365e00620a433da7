"""Gateways with the limit filters in front of a raw upstream, and how to read their answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from gateway.settings import FilterSettings, GatewaySettings
from llmgw.inference.v1 import inference_pb2
from services.kernel.errors import STATUS_DETAILS_KEY
from tests.unit.gateway.conftest import RunningGateway, StartGateway, cluster, gateway_settings
from tests.unit.gateway.limits.callers import ENTRY_POINTS, caller
from tests.unit.gateway.raw_upstream import RawReplica

DEAD_REDIS = "redis://127.0.0.1:1/0"
"""A Redis URL nothing listens on."""


def request(max_output_tokens: int | None = None, model: str = "m") -> bytes:
    """A serialized ``CompleteRequest`` naming ``model``."""
    completion = inference_pb2.CompletionRequest(
        model=model,
        messages=[inference_pb2.Message(content=[inference_pb2.ContentPart(text="hello there")])],
    )
    if max_output_tokens is not None:
        completion.sampling.max_output_tokens = max_output_tokens
    return inference_pb2.CompleteRequest(completion=completion).SerializeToString()


async def start_limited(
    start_gateway: StartGateway,
    replica: RawReplica,
    tmp_path: Path,
    **filters: dict[str, Any],
) -> RunningGateway:
    """A gateway with ``test_caller`` and then each ``name=config`` filter, in that order."""
    access_log = tmp_path / "unused.log"
    chain = (
        FilterSettings(name="test_caller"),
        *(FilterSettings(name=name, config=config) for name, config in filters.items()),
    )
    settings: GatewaySettings = gateway_settings(
        cluster([replica.address]), access_log, filters=chain
    )
    return await start_gateway(settings, available_filters=ENTRY_POINTS)


async def complete(
    running: RunningGateway,
    key: str,
    project: str = "",
    body: bytes | None = None,
    sleep: float = 0.0,
) -> aio.AioRpcError | None:
    """Call ``Complete`` as ``key``; the error, or None when it succeeded."""
    metadata = caller(key, project)
    if sleep:
        metadata += (("x-test-sleep", str(sleep)),)
    try:
        await running.unary()(request() if body is None else body, metadata=metadata)
    except aio.AioRpcError as error:
        return error
    return None


def rich_status(error: aio.AioRpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` in the trailers of ``error``."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError("no rich status in the trailers")


def reason_of(error: aio.AioRpcError) -> str:
    """The ``ErrorInfo.reason`` of ``error``."""
    for detail in rich_status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    raise AssertionError("no ErrorInfo")


def retry_delay_seconds(error: aio.AioRpcError) -> float:
    """The ``RetryInfo.retry_delay`` of ``error``, in seconds."""
    for detail in rich_status(error).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToTimedelta().total_seconds())
    raise AssertionError("no RetryInfo")


def assert_refused(error: aio.AioRpcError | None, code: grpc.StatusCode, reason: str) -> None:
    """``error`` has ``code`` and ErrorInfo ``reason``."""
    assert error is not None, "the call was not refused"
    assert error.code() is code, error
    assert reason_of(error) == reason


def metric(running: RunningGateway, name: str, **labels: str) -> float:
    """The value of a sample of the gateway's registry (0 when absent)."""
    value = running.registry.get_sample_value(name, labels)
    return value or 0.0
