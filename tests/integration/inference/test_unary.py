"""Complete, Embed, CountTokens and ListModels over real gRPC on loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference import call_metadata
from services.inference.routing import Router
from services.inference.routing.pricing import cost_of
from services.kernel.identity import Principal
from tests.integration.inference.conftest import PRICING, OutcomeLog, Running, upstream
from tests.integration.inference.helpers import completion, eventually, metadata_dict, status_of

if TYPE_CHECKING:
    Stub = inference_pb2_grpc.InferenceServiceAsyncStub


async def test_complete_returns_the_result_with_usage_cost_and_trailers(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    call = stub.Complete(
        inference_pb2.CompleteRequest(completion=completion(request_id="r-1", tags={"team": "a"}))
    )
    response = await call
    result = response.result
    assert result.request_id == "r-1"
    assert result.finish_reason == common_pb2.FINISH_REASON_STOP
    assert result.message.content[0].text
    assert result.usage.output_tokens == 16
    assert result.cost == cost_of(result.usage, PRICING)
    assert result.HasField("create_time") and result.HasField("latency")
    assert not result.HasField("error")

    trailers = metadata_dict(await call.trailing_metadata())
    assert trailers[call_metadata.USAGE_INPUT_TOKENS] == str(result.usage.input_tokens)
    assert trailers[call_metadata.USAGE_OUTPUT_TOKENS] == "16"
    assert trailers[call_metadata.COST_NANOS] == str(result.cost.total_nanos)
    assert trailers[call_metadata.COST_CURRENCY] == "USD"
    assert trailers[call_metadata.CACHED] == "0"

    (outcome,) = outcomes.outcomes
    assert outcome.request.operation == events_pb2.INFERENCE_OPERATION_COMPLETE
    assert outcome.request.call.tags == {"team": "a"}
    assert outcome.status == grpc.StatusCode.OK


async def test_complete_generates_a_request_id_from_the_call(stub: Stub) -> None:
    response = await stub.Complete(
        inference_pb2.CompleteRequest(completion=completion()),
        metadata=(("x-request-id", "from-header-1"),),
    )
    assert response.result.request_id == "from-header-1"


async def test_caller_identity_comes_from_the_gateway_metadata(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    await stub.Complete(
        inference_pb2.CompleteRequest(completion=completion()),
        metadata=Principal("api_key", "key-7", "proj-3").to_metadata(),
    )
    call = outcomes.outcomes[0].request.call
    assert (call.api_key_id, call.project) == ("key-7", "proj-3")


async def test_an_unknown_model_is_not_found_and_still_recorded(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(
            inference_pb2.CompleteRequest(completion=completion("nope", request_id="r-404"))
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    (outcome,) = outcomes.outcomes
    assert outcome.status == grpc.StatusCode.NOT_FOUND
    assert outcome.finish_reason == common_pb2.FINISH_REASON_ERROR


async def test_an_upstream_failure_is_unavailable_with_details(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(inference_pb2.CompleteRequest(completion=completion("sim-down")))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    status = status_of(caught.value.trailing_metadata())
    assert status is not None and status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    served_by = outcomes.outcomes[0].served_by  # the deployment that failed last
    assert (served_by.provider, served_by.model, served_by.model_version) == (
        "simulated",
        "sim-down",
        "1",
    )


async def test_grpc_deadline_cancels_the_upstream_request(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(
            inference_pb2.CompleteRequest(completion=completion("sim-slow", request_id="r-dl")),
            timeout=0.3,
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: "r-dl" in upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    outcome = outcomes.outcomes[0]
    assert outcome.status == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome.finish_reason == common_pb2.FINISH_REASON_CANCELLED


async def test_request_timeout_option_ends_with_deadline_exceeded(
    stub: Stub, router: Router
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(
            inference_pb2.CompleteRequest(
                completion=completion("sim-slow", request_id="r-to", timeout_seconds=0.2)
            )
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "r-to" in upstream(router, "sim-slow").cancelled


async def test_client_cancellation_cancels_the_upstream_request(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    call = stub.Complete(
        inference_pb2.CompleteRequest(completion=completion("sim-slow", request_id="r-cx"))
    )
    await eventually(lambda: "r-cx" in upstream(router, "sim-slow").started)
    call.cancel()
    await eventually(lambda: "r-cx" in upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    assert outcomes.outcomes[0].status == grpc.StatusCode.CANCELLED


async def test_embed_returns_vectors_and_usage_trailers(stub: Stub, outcomes: OutcomeLog) -> None:
    call = stub.Embed(inference_pb2.EmbedRequest(model="sim", inputs=["a b c", "d e"]))
    response = await call
    assert [e.index for e in response.embeddings] == [0, 1]
    assert response.request_id
    trailers = metadata_dict(await call.trailing_metadata())
    assert trailers[call_metadata.USAGE_INPUT_TOKENS] == str(response.usage.input_tokens)
    assert outcomes.outcomes[0].request.operation == events_pb2.INFERENCE_OPERATION_EMBED


async def test_count_tokens(stub: Stub) -> None:
    response = await stub.CountTokens(
        inference_pb2.CountTokensRequest(model="sim", messages=completion(text="x" * 40).messages)
    )
    assert response.input_tokens == 16  # 40 characters / 4, plus 3 per message and 3 priming


async def test_list_models_pages_and_filters(stub: Stub) -> None:
    first = await stub.ListModels(inference_pb2.ListModelsRequest(page_size=2))
    assert [m.name for m in first.models] == ["sim", "sim-breaks"]
    second = await stub.ListModels(
        inference_pb2.ListModelsRequest(page_size=2, page_token=first.next_page_token)
    )
    third = await stub.ListModels(
        inference_pb2.ListModelsRequest(page_size=2, page_token=second.next_page_token)
    )
    assert [m.name for m in second.models] == ["sim-down", "sim-embed"]
    assert [m.name for m in third.models] == ["sim-slow"]
    assert third.next_page_token == ""
    embeddings = await stub.ListModels(
        inference_pb2.ListModelsRequest(capabilities=[common_pb2.CAPABILITY_EMBEDDINGS])
    )
    assert [m.name for m in embeddings.models] == ["sim-embed"]


async def test_list_models_rejects_a_foreign_page_token(stub: Stub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListModels(inference_pb2.ListModelsRequest(page_token="%%%"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_every_request_is_counted_in_the_metrics(running: Running) -> None:
    await running.stub.Complete(inference_pb2.CompleteRequest(completion=completion()))
    labels = {"method": "Complete", "model": "sim", "provider": "simulated", "status": "OK"}
    value = running.registry.get_sample_value("llmgw_inference_requests_total", labels)
    assert value == 1.0
    timed = running.registry.get_sample_value(
        "llmgw_inference_request_duration_seconds_count", labels
    )
    assert timed == 1.0
    tokens = running.registry.get_sample_value(
        "llmgw_inference_tokens_total",
        {"model": "sim", "provider": "simulated", "direction": "output"},
    )
    assert tokens == 16.0


async def test_a_request_beyond_the_context_window_names_the_limit(stub: Stub) -> None:
    request = completion(request_id="r-big")
    request.sampling.max_output_tokens = 9000  # the window is 8192
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(inference_pb2.CompleteRequest(completion=request))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = status_of(caught.value.trailing_metadata())
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad) for detail in status.details)
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("sampling.max_output_tokens", "CONTEXT_WINDOW_EXCEEDED")
    ]


async def test_retries_fallbacks_upstream_errors_and_cost_are_counted(running: Running) -> None:
    served = await running.stub.Complete(
        inference_pb2.CompleteRequest(completion=completion("sim-down", fallback_models=("sim",)))
    )
    with pytest.raises(aio.AioRpcError):
        await running.stub.Complete(
            inference_pb2.CompleteRequest(completion=completion("sim-down"))
        )
    sample = running.registry.get_sample_value
    attempts = served.result.served_by.attempt_count
    assert attempts > 2  # sim-down and its retries, then sim
    simulated = {"provider": "simulated"}
    fallbacks = sample(
        "llmgw_inference_fallbacks_total", {"from_model": "sim-down", "to_model": "sim"}
    )
    assert fallbacks == 1.0
    assert sample("llmgw_inference_retries_total", {"model": "sim", **simulated}) == attempts - 1
    errors = {"model": "sim-down", "status": "UNAVAILABLE", **simulated}
    assert sample("llmgw_inference_upstream_errors_total", errors) == 1.0
    cost = {"model": "sim", "currency": "USD", **simulated}
    assert sample("llmgw_inference_cost_nanos_total", cost) == served.result.cost.total_nanos
