"""The real inference process: router, Redis cache and usage events on a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2
from services.inference import call_metadata
from services.kernel.identity import Principal
from tests.integration.inference.app_support import (
    RunningApp,
    UsageLog,
    consumer_bus,
    running_app,
    settings_for,
)
from tests.integration.inference.helpers import completion, metadata_dict

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(unique_name: Callable[[str], str]) -> str:
    return unique_name("usage")


@pytest.fixture
async def app(
    tmp_path: Path, redis_url: str, redis_prefix: str, kafka_bootstrap: str, topic: str
) -> AsyncIterator[RunningApp]:
    settings = settings_for(
        tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        kafka_bootstrap=kafka_bootstrap,
        topic=topic,
    )
    async with running_app(settings) as running:
        yield running


@pytest.fixture
async def usage_log(
    kafka_bootstrap: str, topic: str, unique_name: Callable[[str], str]
) -> AsyncIterator[UsageLog]:
    log = UsageLog()
    bus = consumer_bus(kafka_bootstrap)
    await bus.start()
    await bus.subscribe([topic], unique_name("usage-test"), log)
    try:
        yield log
    finally:
        await bus.close()


async def test_a_repeated_completion_is_a_cache_hit_with_zero_cost(
    app: RunningApp, usage_log: UsageLog
) -> None:
    first_call = app.stub.Complete(
        inference_pb2.CompleteRequest(completion=completion(request_id="c-1"))
    )
    first = (await first_call).result
    assert not first.cached and first.cost.total_nanos > 0
    assert first.served_by.provider == "simulated" and first.served_by.model == "sim"

    second_call = app.stub.Complete(
        inference_pb2.CompleteRequest(completion=completion(request_id="c-2"))
    )
    second = (await second_call).result
    assert second.cached
    assert second.request_id == "c-2"
    assert second.cost.total_nanos == 0
    assert second.usage == first.usage
    assert second.message == first.message
    trailers = metadata_dict(await second_call.trailing_metadata())
    assert trailers[call_metadata.CACHED] == "1"
    assert trailers[call_metadata.COST_NANOS] == "0"

    await usage_log.wait_for({"c-1", "c-2"})
    events = usage_log.events()
    assert not events["c-1"].cached and events["c-1"].cost.total_nanos == first.cost.total_nanos
    assert events["c-2"].cached and events["c-2"].cost.total_nanos == 0
    assert events["c-2"].usage == first.usage
    hits = app.registry.get_sample_value(
        "llmgw_inference_cache_hits_total", {"method": "Complete", "model": "sim"}
    )
    assert hits == 1.0


async def test_a_repeated_stream_replays_from_the_cache(
    app: RunningApp, usage_log: UsageLog
) -> None:
    async def stream(request_id: str) -> tuple[str, inference_pb2.CompletionResult]:
        text = ""
        final = None
        request = completion(text="tell me a story", request_id=request_id)
        async for response in app.stub.StreamComplete(
            inference_pb2.StreamCompleteRequest(completion=request)
        ):
            if response.HasField("delta"):
                text += response.delta.text_delta
            else:
                final = response.final
        assert final is not None
        return text, final

    first_text, first = await stream("s-1")
    second_text, second = await stream("s-2")
    assert not first.cached and second.cached
    assert second_text == first_text and second_text
    assert second.usage == first.usage and second.cost.total_nanos == 0
    await usage_log.wait_for({"s-1", "s-2"})
    assert usage_log.events()["s-2"].cached

    # A unary call of the same prompt is served from what the stream stored.
    unary = await app.stub.Complete(
        inference_pb2.CompleteRequest(completion=completion(text="tell me a story"))
    )
    assert unary.result.cached and unary.result.message.content[0].text == first_text


async def test_bypass_skips_the_lookup_and_a_zero_ttl_skips_the_store(app: RunningApp) -> None:
    request = completion(text="bypass me")
    await app.stub.Complete(inference_pb2.CompleteRequest(completion=request))
    request.options.bypass_cache = True
    bypassed = await app.stub.Complete(inference_pb2.CompleteRequest(completion=request))
    assert not bypassed.result.cached

    fresh = completion(text="never stored")
    fresh.options.cache_ttl.FromSeconds(0)
    await app.stub.Complete(inference_pb2.CompleteRequest(completion=fresh))
    again = await app.stub.Complete(
        inference_pb2.CompleteRequest(completion=completion(text="never stored"))
    )
    assert not again.result.cached


async def test_one_usage_event_per_request_also_failed_and_cancelled(
    app: RunningApp, usage_log: UsageLog
) -> None:
    await app.stub.Complete(
        inference_pb2.CompleteRequest(
            completion=completion(request_id="u-ok", tags={"team": "search"})
        ),
        metadata=Principal("api_key", "key-1", "proj-1").to_metadata(),
    )
    with pytest.raises(aio.AioRpcError):
        await app.stub.Complete(
            inference_pb2.CompleteRequest(completion=completion("nope", request_id="u-404"))
        )
    chat = app.stub.Chat()
    await chat.write(
        inference_pb2.ChatRequest(start=completion("sim-slow", "a long one", request_id="u-cancel"))
    )
    response = await chat.read()
    assert isinstance(response, inference_pb2.ChatResponse) and response.HasField("delta")
    await chat.write(
        inference_pb2.ChatRequest(cancel=inference_pb2.ChatCancel(request_id="u-cancel"))
    )
    await chat.done_writing()
    while await chat.read() is not aio.EOF:
        pass

    await usage_log.wait_for({"u-ok", "u-404", "u-cancel"})
    events = usage_log.events()
    ok = events["u-ok"]
    assert ok.metadata.id == "u-ok" and ok.metadata.subject == "u-ok"
    assert ok.operation == events_pb2.INFERENCE_OPERATION_COMPLETE
    assert (ok.api_key_id, ok.project_id, dict(ok.tags)) == ("key-1", "proj-1", {"team": "search"})
    assert ok.served_by.provider == "simulated" and ok.served_by.model_version == "1"
    assert ok.usage.output_tokens == 16 and ok.cost.total_nanos > 0
    assert ok.HasField("latency") and ok.HasField("start_time") and not ok.HasField("error")

    failed = events["u-404"]
    assert failed.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert failed.finish_reason == common_pb2.FINISH_REASON_ERROR

    cancelled = events["u-cancel"]
    assert cancelled.operation == events_pb2.INFERENCE_OPERATION_CHAT
    assert cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]
    assert cancelled.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    assert cancelled.HasField("time_to_first_token")
    assert (cancelled.served_by.provider, cancelled.served_by.model) == ("simulated", "sim-slow")
    assert cancelled.usage.output_tokens > 0 and cancelled.cost.total_nanos > 0
    ids = [envelope.id for envelope in usage_log.envelopes]
    assert sorted(set(ids)) == ["u-404", "u-cancel", "u-ok"]


async def test_list_models_and_count_tokens_through_the_router(app: RunningApp) -> None:
    models = await app.stub.ListModels(inference_pb2.ListModelsRequest())
    assert {"sim", "sim-slow"} <= {m.name for m in models.models}
    counted = await app.stub.CountTokens(
        inference_pb2.CountTokensRequest(model="sim", messages=completion().messages)
    )
    assert counted.input_tokens > 0
