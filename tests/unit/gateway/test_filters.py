"""The filter chain: access log lines, metrics, and filters that stop calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from pydantic import ValidationError

from gateway.chain import FilterChain
from gateway.filters import filter_registry
from gateway.filters.access_log import AccessLogConfig
from gateway.filters.base import GatewayFilter
from gateway.model_field import UNREADABLE, ModelFieldReader
from gateway.settings import FilterSettings
from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.kernel.config import ConfigError
from services.kernel.errors import STATUS_DETAILS_KEY
from tests.unit.gateway import sample_filters
from tests.unit.gateway.conftest import (
    StartGateway,
    StartReplicas,
    cluster,
    eventually,
    gateway_settings,
)
from tests.unit.gateway.raw_upstream import INFERENCE


def _completion(model: str, prompt: str = "hello") -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        model=model,
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_USER, content=[inference_pb2.ContentPart(text=prompt)]
            )
        ],
    )


def _chain(log: Path, *extra: FilterSettings) -> tuple[FilterSettings, ...]:
    return (
        FilterSettings(name="access_log", config={"output": str(log)}),
        FilterSettings(name="metrics"),
        *extra,
    )


def test_model_field_is_read_from_the_wire_of_each_request_type() -> None:
    reader = ModelFieldReader()
    complete = inference_pb2.CompleteRequest(completion=_completion("sim-small", "x" * 5000))
    chat = inference_pb2.ChatRequest(start=_completion("sim-large"))
    embed = inference_pb2.EmbedRequest(model="embedder", inputs=["a"])
    assert reader.read(f"/{INFERENCE}/Complete", complete.SerializeToString()) == "sim-small"
    assert reader.read(f"/{INFERENCE}/StreamComplete", complete.SerializeToString()) == "sim-small"
    assert reader.read(f"/{INFERENCE}/Chat", chat.SerializeToString()) == "sim-large"
    assert reader.read(f"/{INFERENCE}/Embed", embed.SerializeToString()) == "embedder"
    assert reader.read(f"/{INFERENCE}/Complete", b"\xff\xff garbage") == UNREADABLE
    assert reader.read("/unknown.v1.Service/Method", b"") == ""


async def test_access_log_line_has_key_model_status_latency_and_tokens(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    log = tmp_path / "access.log"
    settings = gateway_settings(
        cluster(r.address for r in replicas),
        log,
        filters=_chain(log, FilterSettings(name="key_gate")),
    )
    running = await start_gateway(settings, available_filters=sample_filters.ENTRY_POINTS)
    request = inference_pb2.CompleteRequest(completion=_completion("sim-small", "secret prompt"))
    await running.unary()(
        request.SerializeToString(),
        metadata=(("x-test-key", "key-123"), ("authorization", "Bearer sk-live-SECRET")),
    )
    [line] = running.log_lines()
    assert line["key_id"] == "key-123"
    assert line["model"] == "sim-small"
    assert line["method"] == f"/{INFERENCE}/Complete"
    assert line["code"] == "OK"
    assert line["latency_ms"] > 0 and line["upstream_latency_ms"] > 0
    assert line["input_tokens"] == len(request.SerializeToString())
    assert line["output_tokens"] == 7
    assert line["upstream"] == replicas[0].address and line["attempts"] == 1
    assert line["request_id"]
    text = log.read_text()
    assert "sk-live-SECRET" not in text and "secret prompt" not in text


async def test_a_filter_stops_the_call_with_its_status_and_later_filters_never_run(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    log = tmp_path / "access.log"
    settings = gateway_settings(
        cluster(r.address for r in replicas),
        log,
        filters=_chain(
            log,
            FilterSettings(name="key_gate"),
            FilterSettings(name="model_gate", config={"model": "sim-large"}),
        ),
    )
    running = await start_gateway(settings, available_filters=sample_filters.ENTRY_POINTS)
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"")
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert replicas[0].seen == []
    line = running.log_lines()[-1]
    assert line["code"] == "PERMISSION_DENIED" and line["stopped_by"] == "key_gate"
    assert line["attempts"] == 0


async def test_a_filter_reading_the_first_stream_message_can_stop_a_chat(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    log = tmp_path / "access.log"
    settings = gateway_settings(
        cluster(r.address for r in replicas),
        log,
        filters=_chain(log, FilterSettings(name="model_gate", config={"model": "sim-large"})),
    )
    running = await start_gateway(settings, available_filters=sample_filters.ENTRY_POINTS)
    refused = running.bidi()()
    await refused.write(
        inference_pb2.ChatRequest(start=_completion("sim-large")).SerializeToString()
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await refused.read()
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = status_pb2.Status.FromString(
        dict(caught.value.trailing_metadata())[STATUS_DETAILS_KEY]
    )
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status.details)
    assert retry.retry_delay.seconds == 2

    allowed = running.bidi()()
    first = inference_pb2.ChatRequest(start=_completion("sim-small")).SerializeToString()
    await allowed.write(first)
    await allowed.write(b"second")
    assert await allowed.read() == b"a:" + first
    assert await allowed.read() == b"a:second"
    await allowed.done_writing()
    assert await allowed.code() is grpc.StatusCode.OK
    await eventually(lambda: len(running.log_lines()) == 2)
    lines = running.log_lines()
    assert [line["model"] for line in lines] == ["sim-large", "sim-small"]
    assert lines[0]["stopped_by"] == "model_gate"
    assert replicas[0].seen[0].method == "Chat" and len(replicas[0].seen) == 1


async def test_metrics_count_calls_bytes_and_streams(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    await running.unary()(b"12345")
    stream = running.server_stream()(b"2")
    assert len([message async for message in stream]) == 2

    def value(name: str, **labels: str) -> float:
        found = running.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    service = {"grpc_service": INFERENCE}
    assert (
        value("llmgw_gateway_requests_total", **service, grpc_method="Complete", grpc_code="OK")
        == 1
    )
    assert (
        value("llmgw_gateway_bytes_total", **service, grpc_method="Complete", direction="received")
        == 5
    )
    assert (
        value(
            "llmgw_gateway_bytes_total", **service, grpc_method="StreamComplete", direction="sent"
        )
        == 6
    )
    assert value("llmgw_gateway_upstream_seconds_count", cluster="upstream") == 2
    assert (
        value(
            "llmgw_gateway_streams_in_flight",
            **service,
            grpc_method="StreamComplete",
            grpc_type="server_stream",
        )
        == 0
    )


def test_access_log_refuses_to_log_credentials_and_bad_filter_config_names_the_filter(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError):
        AccessLogConfig(include_metadata=("Authorization",))
    from prometheus_client import CollectorRegistry

    from gateway.chain import build_chain
    from gateway.filters.base import FilterContext

    with pytest.raises(ConfigError, match="access_log"):
        build_chain(
            (FilterSettings(name="access_log", config={"outptu": "x"}),),
            filter_registry(()),
            FilterContext(CollectorRegistry()),
        )


def test_builtin_filters_are_found_by_name() -> None:
    registry = filter_registry(())
    assert {"access_log", "authn", "authz", "metrics"} <= set(registry.names())
    assert registry.get("metrics").config_model.__name__ == "MetricsConfig"


async def test_access_log_includes_named_metadata_and_the_body_only_when_configured(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    log = tmp_path / "access.log"
    access_log = FilterSettings(
        name="access_log",
        config={
            "output": str(log),
            "include_metadata": ["x-client-name"],
            "include_request_body": True,
        },
    )
    settings = gateway_settings(cluster(r.address for r in replicas), log, filters=(access_log,))
    running = await start_gateway(settings)
    request = inference_pb2.CompleteRequest(completion=_completion("sim-small", "the prompt"))
    await running.unary()(
        request.SerializeToString(),
        metadata=(("x-client-name", "billing"), ("x-other", "not logged")),
    )
    [line] = running.log_lines()
    assert line["metadata"] == {"x-client-name": "billing"}
    assert "the prompt" in str(line["request_body"])


def test_access_log_reads_first_messages_only_of_methods_that_name_a_model(
    tmp_path: Path,
) -> None:
    from prometheus_client import CollectorRegistry

    from gateway.chain import build_chain
    from gateway.filters.base import FilterContext

    chain = build_chain(
        (FilterSettings(name="access_log", config={"output": str(tmp_path / "a.log")}),),
        filter_registry(()),
        FilterContext(CollectorRegistry()),
    )
    assert chain.first_message_readers(f"/{INFERENCE}/Chat")
    assert chain.first_message_readers(f"/{INFERENCE}/Complete")
    assert not chain.first_message_readers("/llmgw.usage.v1.UsageService/QueryUsage")
    assert not chain.first_message_readers("/unknown.v1.Service/Watch")


async def test_a_call_cancelled_before_its_first_message_is_logged_as_cancelled(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    chat = running.bidi()()
    await asyncio.sleep(0.2)  # the gateway waits for the first message
    chat.cancel()
    await eventually(lambda: len(running.log_lines()) == 1)
    [line] = running.log_lines()
    assert line["code"] == "CANCELLED" and line["model"] == ""


class _Lifecycle(GatewayFilter):
    def __init__(self, name: str, events: list[str], fail_start: bool = False) -> None:
        self.name = name
        self._events = events
        self._fail_start = fail_start

    async def start(self) -> None:
        if self._fail_start:
            raise RuntimeError("cannot connect")
        self._events.append(f"start {self.name}")

    async def stop(self) -> None:
        self._events.append(f"stop {self.name}")


async def test_filters_start_in_order_and_stop_in_reverse() -> None:
    events: list[str] = []
    chain = FilterChain([_Lifecycle("a", events), _Lifecycle("b", events)])
    await chain.start()
    await chain.stop()
    assert events == ["start a", "start b", "stop b", "stop a"]


async def test_a_filter_failing_to_start_stops_those_already_started() -> None:
    events: list[str] = []
    chain = FilterChain(
        [_Lifecycle("a", events), _Lifecycle("b", events, fail_start=True), _Lifecycle("c", events)]
    )
    with pytest.raises(RuntimeError, match="cannot connect"):
        await chain.start()
    assert events == ["start a", "stop a"]


async def test_a_call_cancelled_while_a_filter_decides_still_ends_in_every_filter(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    log = tmp_path / "access.log"
    settings = gateway_settings(
        cluster(r.address for r in replicas),
        log,
        filters=_chain(log, FilterSettings(name="slow_gate", config={"seconds": 5})),
    )
    running = await start_gateway(settings, available_filters=sample_filters.ENTRY_POINTS)
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"", timeout=0.3)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: len(running.log_lines()) == 1)
    assert running.log_lines()[0]["code"] == "CANCELLED"
    assert replicas[0].seen == []


def test_the_model_field_is_read_past_unknown_groups_and_garbage_is_unreadable() -> None:
    reader = ModelFieldReader()
    chat = "/llmgw.inference.v1.InferenceService/Chat"
    start = inference_pb2.ChatRequest(start=_completion("gpt-4o")).SerializeToString()
    group = bytes([(99 << 3 | 3) & 0x7F | 0x80, 99 >> 4, (99 << 3 | 4) & 0x7F | 0x80, 99 >> 4])
    assert inference_pb2.ChatRequest.FromString(start + group).start.model == "gpt-4o"
    assert reader.read(chat, start + group) == "gpt-4o"
    assert reader.read(chat, group + start) == "gpt-4o"
    assert reader.read(chat, start[:-3]) == UNREADABLE
    assert reader.read(chat, start + group[2:]) == UNREADABLE  # a stray end group
    cancel = inference_pb2.ChatRequest(cancel=inference_pb2.ChatCancel(request_id="r1"))
    assert reader.read(chat, cancel.SerializeToString()) == ""
