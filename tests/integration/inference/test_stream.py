"""StreamComplete over real gRPC on loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference import call_metadata
from tests.integration.inference.conftest import OutcomeLog
from tests.integration.inference.engine_double import (
    BREAK_AFTER_CHUNKS,
    SimulatedEngine,
    cost_of,
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
    assert final.usage.output_tokens == BREAK_AFTER_CHUNKS
    trailers = caught.value.trailing_metadata()
    assert metadata_dict(trailers)[call_metadata.USAGE_OUTPUT_TOKENS] == str(BREAK_AFTER_CHUNKS)
    status = status_of(trailers)
    assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    (outcome,) = outcomes.outcomes
    assert outcome.usage.output_tokens == BREAK_AFTER_CHUNKS


async def test_cancelling_the_call_mid_stream_cancels_upstream(
    stub: Stub, engine: SimulatedEngine, outcomes: OutcomeLog
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
    await eventually(lambda: "s-4" in engine.upstream_cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    outcome = outcomes.outcomes[0]
    assert outcome.status == grpc.StatusCode.CANCELLED
    assert outcome.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    assert outcome.usage.output_tokens > 0  # estimated from what was streamed
    assert outcome.usage.source == common_pb2.USAGE_SOURCE_ESTIMATED
    assert outcome.cost == cost_of(outcome.usage)  # at the listed prices of the model


async def test_deadline_mid_stream_cancels_upstream(
    stub: Stub, engine: SimulatedEngine, outcomes: OutcomeLog
) -> None:
    call = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=completion("sim-slow", request_id="s-5")),
        timeout=0.4,
    )
    with pytest.raises(aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: "s-5" in engine.upstream_cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    assert outcomes.outcomes[0].status == grpc.StatusCode.DEADLINE_EXCEEDED
