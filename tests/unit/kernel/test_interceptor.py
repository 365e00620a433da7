"""The kernel interceptor maps domain errors to rich statuses over real gRPC."""

from __future__ import annotations

import io
import json
import logging

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from prometheus_client import CollectorRegistry

from services.kernel.errors import ERROR_DOMAIN, STATUS_DETAILS_KEY
from services.kernel.interceptors import MAX_CACHED_METHODS, KernelInterceptor
from services.kernel.logs import configure_logging
from services.kernel.metrics import ServerMetrics
from tests.unit.kernel import probe_service
from tests.unit.kernel.conftest import RunningProbe


def _rich_status(error: aio.AioRpcError) -> status_pb2.Status:
    metadata: tuple[tuple[str, bytes], ...] = tuple(error.trailing_metadata() or ())  # type: ignore[arg-type]
    for key, value in metadata:
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    raise AssertionError("no google.rpc.Status in trailing metadata")


def _unpack(detail: any_pb2.Any, kind: type) -> object:
    message = kind()
    assert detail.Unpack(message), f"detail is {detail.type_url}, not {kind.__name__}"
    return message


async def test_invalid_argument_carries_field_violations_and_reason(probe: RunningProbe) -> None:
    call = probe_service.unary(probe.channel, "Invalid")
    with pytest.raises(aio.AioRpcError) as caught:
        await call(b"")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "max_output_tokens exceeds the model's limit"
    status = _rich_status(caught.value)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info = _unpack(status.details[0], error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("TOKEN_LIMIT_EXCEEDED", ERROR_DOMAIN)
    bad = _unpack(status.details[1], error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description, v.reason) for v in bad.field_violations] == [
        ("sampling.max_output_tokens", "must be <= 4096", "ABOVE_MAXIMUM")
    ]


async def test_unexpected_exception_is_internal_and_leaks_nothing(probe: RunningProbe) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await probe_service.unary(probe.channel, "Crash")(b"")
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "SECRET" not in (caught.value.details() or "")
    assert "SECRET" not in str(_rich_status(caught.value))


async def test_not_implemented_is_unimplemented(probe: RunningProbe) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await probe_service.unary(probe.channel, "Unimplemented")(b"")
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_error_after_stream_messages_keeps_them_and_sends_retry_info(
    probe: RunningProbe,
) -> None:
    call = probe_service.server_stream(probe.channel, "CountThenExhaust")(b"3")
    received = []
    with pytest.raises(aio.AioRpcError) as caught:
        async for message in call:
            received.append(message)
    assert received == [b"0", b"1", b"2"]
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = _rich_status(caught.value)
    retry = _unpack(status.details[1], error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToMilliseconds() == 1500


async def test_bidirectional_stream_passes_through(probe: RunningProbe) -> None:
    call = probe_service.bidi_stream(probe.channel, "Echo")
    stream = call(None)
    for payload in (b"a", b"b"):
        await stream.write(payload)
        assert await stream.read() == payload
    await stream.done_writing()
    assert await stream.code() is grpc.StatusCode.OK


async def test_request_id_from_metadata_reaches_handler_and_logs(probe: RunningProbe) -> None:
    buffer = io.StringIO()
    configure_logging("probe", "INFO", stream=buffer)
    try:
        call = probe_service.unary(probe.channel, "RequestId")
        echoed = await call(b"", metadata=(("x-request-id", "req-42"),))
        generated = await call(b"", metadata=(("x-request-id", "bad id with spaces"),))
    finally:
        logging.getLogger().handlers.clear()
    assert echoed == b"req-42"
    assert len(generated) == 32 and generated != b"req-42"
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    probe_lines = [line for line in lines if line["msg"] == "probe called"]
    assert [line["request_id"] for line in probe_lines] == ["req-42", generated.decode()]
    assert all(line["service"] == "probe" for line in probe_lines)


async def test_metrics_count_calls_by_code(probe: RunningProbe) -> None:
    with pytest.raises(aio.AioRpcError):
        await probe_service.unary(probe.channel, "Invalid")(b"")
    await probe_service.unary(probe.channel, "Slow")(b"0")
    labels = {"grpc_service": "test.v1.Probe", "grpc_type": "unary"}
    value = probe.registry.get_sample_value
    assert (
        value(
            "llmgw_grpc_server_handled_total",
            {**labels, "grpc_method": "Invalid", "grpc_code": "INVALID_ARGUMENT"},
        )
        == 1.0
    )
    assert (
        value(
            "llmgw_grpc_server_handled_total", {**labels, "grpc_method": "Slow", "grpc_code": "OK"}
        )
        == 1.0
    )
    assert (
        value(
            "llmgw_grpc_server_in_flight", {"grpc_service": "test.v1.Probe", "grpc_method": "Slow"}
        )
        == 0.0
    )


async def test_wrapped_handlers_are_bounded_for_arbitrary_method_names() -> None:
    interceptor = KernelInterceptor(ServerMetrics(CollectorRegistry(), "probe"))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        lambda request, context: request
    )

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
        return handler

    for index in range(MAX_CACHED_METHODS + 10):
        details = _CallDetails(f"/any.Service/Method{index}", ())
        wrapped = await interceptor.intercept_service(continuation, details)
        assert wrapped is not None and wrapped.unary_unary is not None
    assert len(interceptor._wrapped) == MAX_CACHED_METHODS


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str, invocation_metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata
