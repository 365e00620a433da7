"""The simulated provider: deterministic output, streaming contract, injected failures."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from google.protobuf import struct_pb2

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import (
    PLUGIN_API_VERSION,
    CompletionChunk,
    CompletionResult,
    Deployment,
    adapter_registry,
)
from provider_adapters.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
)
from provider_adapters.simulated import SimulatedAdapter


def _adapter(**options: str) -> SimulatedAdapter:
    return SimulatedAdapter(Deployment(provider="simulated", model="sim-1", options=options))


def _request(text: str = "hello there", seed: int | None = None) -> inference_pb2.CompletionRequest:
    request = inference_pb2.CompletionRequest(request_id="r1", model="sim")
    request.messages.add(role=common_pb2.ROLE_USER, content=[inference_pb2.ContentPart(text=text)])
    if seed is not None:
        request.sampling.seed = seed
    return request


def _text(result: CompletionResult) -> str:
    return "".join(part.text for part in result.message.content)


async def _collect(
    adapter: SimulatedAdapter, request: inference_pb2.CompletionRequest
) -> list[CompletionChunk | CompletionResult]:
    return [event async for event in adapter.stream(request)]


def test_found_through_the_entry_point() -> None:
    plugin = adapter_registry().get("simulated")
    assert plugin.plugin_api_version == PLUGIN_API_VERSION
    assert isinstance(plugin.create(Deployment("simulated", "m")), SimulatedAdapter)


async def test_output_is_a_function_of_prompt_and_seed() -> None:
    adapter = _adapter(output_tokens="12")
    first = await adapter.complete(_request(seed=7))
    again = await adapter.complete(_request(seed=7))
    other_seed = await adapter.complete(_request(seed=8))
    other_prompt = await adapter.complete(_request("something else", seed=7))
    assert _text(first) == _text(again)
    assert len(_text(first).split()) == 12
    assert _text(first) != _text(other_seed)
    assert _text(first) != _text(other_prompt)
    assert first.finish_reason == common_pb2.FINISH_REASON_STOP
    assert first.usage.output_tokens == 12
    assert first.usage.input_tokens == math.ceil(len("hello there") / 4)
    assert first.usage.total_tokens == first.usage.input_tokens + 12
    assert first.served_by.provider == "simulated"


async def test_stream_matches_unary_and_ends_with_one_result() -> None:
    adapter = _adapter(output_tokens="9")
    events = await _collect(adapter, _request(seed=3))
    chunks = [event for event in events[:-1] if isinstance(event, CompletionChunk)]
    final = events[-1]
    assert len(chunks) == len(events) - 1
    assert isinstance(final, CompletionResult)
    assert chunks[0].role == common_pb2.ROLE_ASSISTANT
    streamed = "".join(chunk.text_delta for chunk in chunks)
    assert streamed == _text(await adapter.complete(_request(seed=3)))
    assert final.usage.output_tokens == 9
    assert not final.message.content


async def test_max_output_tokens_caps_and_reports_length() -> None:
    request = _request()
    request.sampling.max_output_tokens = 3
    result = await _adapter(output_tokens="50").complete(request)
    assert len(_text(result).split()) == 3
    assert result.finish_reason == common_pb2.FINISH_REASON_LENGTH


@pytest.mark.parametrize(
    ("status", "error"), [("429", ProviderRateLimited), ("503", ProviderServerError)]
)
async def test_injected_failures_map_like_real_ones(status: str, error: type) -> None:
    adapter = _adapter(error_rate="1", error_status=status)
    with pytest.raises(error) as caught:
        await adapter.complete(_request())
    with pytest.raises(error):
        await _collect(adapter, _request())
    assert isinstance(caught.value, ProviderError)
    if status == "429":
        assert caught.value.retry_after_seconds == 1.0


async def test_error_rate_fails_about_that_share_of_requests() -> None:
    adapter = _adapter(error_rate="0.5", output_tokens="1")
    failures = 0
    for index in range(200):
        try:
            await adapter.complete(_request(f"prompt {index}"))
        except ProviderServerError:
            failures += 1
    assert 60 < failures < 140


async def test_calls_an_offered_tool_with_arguments_matching_its_schema() -> None:
    request = _request("weather in Paris?")
    parameters = struct_pb2.Struct()
    parameters.update(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        }
    )
    request.tools.add(
        function=inference_pb2.FunctionDefinition(name="forecast", parameters=parameters)
    )
    result = await _adapter().complete(request)
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = result.message.tool_calls
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "forecast" and call.id.startswith("call_")
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    first, last = await _collect(_adapter(), request)
    assert isinstance(first, CompletionChunk) and isinstance(last, CompletionResult)
    assert first.tool_call_deltas[0].function_name == "forecast"
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    request.tool_choice.mode = inference_pb2.TOOL_CHOICE_MODE_NONE
    assert (await _adapter().complete(request)).finish_reason == common_pb2.FINISH_REASON_STOP


async def test_json_output_when_a_schema_is_requested() -> None:
    request = _request()
    request.response_format.json_schema.name = "answer"
    result = await _adapter().complete(request)
    assert isinstance(json.loads(_text(result))["answer"], str)


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    adapter = _adapter(embedding_dimensions="32")
    request = inference_pb2.EmbedRequest(inputs=["a", "b", "a"])
    response = await adapter.embed(request)
    vectors = [list(e.values) for e in response.embeddings]
    assert [len(v) for v in vectors] == [32, 32, 32]
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5 for v in vectors)
    request.dimensions = 8
    assert len((await adapter.embed(request)).embeddings[0].values) == 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttft": "1"}, "unknown simulated option"),
        ({"error_rate": "2"}, "within 0..1"),
        ({"output_tokens": "many"}, "not a int"),
    ],
)
def test_bad_options_are_refused_at_construction(options: dict[str, str], message: str) -> None:
    with pytest.raises(ProviderBadRequest, match=message):
        _adapter(**options)


async def test_cancelling_a_stream_stops_generation() -> None:
    adapter = _adapter(output_tokens="1000", tokens_per_second="50")
    received: list[object] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for event in adapter.stream(_request()):
            received.append(event)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(received) < 1000
