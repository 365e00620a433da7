"""StreamComplete over real gRPC on loopback."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference import call_metadata
from services.inference.cache import CacheConfig, CachingEngine
from services.inference.engine import CallContext, CompletionResult
from services.inference.routing import Router
from services.inference.routing.pricing import cost_of
from tests.integration.inference.conftest import (
    BREAK_AFTER_CHUNKS,
    BROKEN_OUTPUT_TOKENS,
    DOWN_PRICING,
    PRICING,
    OutcomeLog,
    Running,
    upstream,
)
from tests.integration.inference.helpers import completion, eventually, metadata_dict, status_of

if TYPE_CHECKING:
    Stub = inference_pb2_grpc.InferenceServiceAsyncStub


async def test_stream_sends_deltas_then_one_final_with_trailers(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=completion(request_id="s-1"))
    )
    responses = [response async for response in call]
    deltas = [r.delta for r in responses if r.HasField("delta")]
    finals = [r.final for r in responses if r.HasField("final")]
    assert len(deltas) == 16 and len(finals) == 1
    assert responses[-1].HasField("final")
    final = finals[0]
    assert final.request_id == "s-1"
    assert final.finish_reason == common_pb2.FINISH_REASON_STOP
    assert not final.HasField("message")
    assert final.HasField("time_to_first_token")
    trailers = metadata_dict(await call.trailing_metadata())
    assert trailers[call_metadata.USAGE_OUTPUT_TOKENS] == "16"
    assert trailers[call_metadata.COST_NANOS] == str(final.cost.total_nanos)
    assert await call.code() == grpc.StatusCode.OK
    assert outcomes.outcomes[0].time_to_first_token_seconds is not None


async def test_an_error_before_output_ends_the_call_with_its_status(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=completion("sim-down", request_id="s-2"))
    )
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert outcomes.outcomes[0].status == grpc.StatusCode.UNAVAILABLE


async def test_an_error_after_output_is_the_final_and_then_the_status(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=completion("sim-breaks", request_id="s-3"))
    )
    responses = []
    with pytest.raises(aio.AioRpcError) as caught:
        async for response in call:
            responses.append(response)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(responses) == BREAK_AFTER_CHUNKS + 1
    final = responses[-1].final
    assert final.finish_reason == common_pb2.FINISH_REASON_ERROR
    assert final.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert final.usage.output_tokens == BROKEN_OUTPUT_TOKENS
    trailers = caught.value.trailing_metadata()
    assert metadata_dict(trailers)[call_metadata.USAGE_OUTPUT_TOKENS] == str(BROKEN_OUTPUT_TOKENS)
    status = status_of(trailers)
    assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    (outcome,) = outcomes.outcomes
    assert outcome.usage.output_tokens == BROKEN_OUTPUT_TOKENS


async def test_cancelling_the_call_mid_stream_cancels_upstream(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=completion("sim-slow", request_id="s-4"))
    )
    received = 0
    async for _ in call:
        received += 1
        if received == 2:
            break
    call.cancel()
    await eventually(lambda: "s-4" in upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    outcome = outcomes.outcomes[0]
    assert outcome.status == grpc.StatusCode.CANCELLED
    assert outcome.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    assert outcome.usage.output_tokens > 0  # estimated from what was streamed
    assert outcome.usage.source == common_pb2.USAGE_SOURCE_ESTIMATED
    assert outcome.cost == cost_of(outcome.usage, PRICING)


async def test_deadline_mid_stream_cancels_upstream(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=completion("sim-slow", request_id="s-5")),
        timeout=0.4,
    )
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: "s-5" in upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    assert outcomes.outcomes[0].status == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("ending", ["cancel", "deadline"])
async def test_a_stream_cut_short_is_priced_at_the_deployment_that_served_it(
    stub: Stub, router: Router, outcomes: OutcomeLog, ending: str
) -> None:
    request = completion("sim-down", request_id="s-6", fallback_models=("sim-slow",))
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=request),
        timeout=0.4 if ending == "deadline" else None,
    )
    with contextlib.suppress(aio.AioRpcError):  # the deadline ends the call
        async for _ in call:
            if ending == "cancel":
                break
    call.cancel()
    await eventually(lambda: "s-6" in upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    outcome = outcomes.outcomes[0]
    assert outcome.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    assert (outcome.served_by.model, outcome.served_by.fallback_from) == ("sim-slow", "sim-down")
    assert outcome.served_by.provider == "simulated"
    assert outcome.usage.output_tokens > 0
    assert outcome.cost == cost_of(outcome.usage, PRICING)  # sim-slow's prices
    assert outcome.cost != cost_of(outcome.usage, DOWN_PRICING)  # not those of the name asked for


async def test_a_cache_replay_notes_a_cached_free_placement(
    router: Router, redis_url: str, redis_prefix: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    engine = CachingEngine(router, client, CacheConfig(key_prefix=f"{redis_prefix}cache:"))
    try:
        request = completion(request_id="s-7")
        stored = [event async for event in engine.stream(request, CallContext("s-7"))][-1]
        assert isinstance(stored, CompletionResult) and not stored.cached
        call = CallContext("s-8")
        replay = engine.stream(request, call)
        await anext(replay)  # a caller that stops here is still served from the cache
        await replay.aclose()  # type: ignore[attr-defined]
        placement = call.placement.placement
        assert placement is not None and placement.cached
        assert placement.served_by.model == "sim"
        assert cost_of(stored.usage, placement.pricing).total_nanos == 0
    finally:
        await client.aclose()


async def test_streams_time_the_first_token_and_the_tokens_after_it(running: Running) -> None:
    request = inference_pb2.StreamCompleteRequest(completion=completion(request_id="s-9"))
    async for _ in running.stub.StreamComplete(request):
        pass
    labels = {"method": "StreamComplete", "model": "sim", "provider": "simulated"}
    sample = running.registry.get_sample_value
    assert sample("llmgw_inference_time_to_first_token_seconds_count", labels) == 1.0
    assert sample("llmgw_inference_time_per_output_token_seconds_count", labels) == 1.0
