"""The anthropic adapter's translation, checked byte for byte against a mock transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.anthropic import AnthropicAdapter, plugin
from provider_adapters.base import Capability, Deployment, Secret
from provider_adapters.errors import (
    ContextWindowExceeded,
    MalformedResponse,
    ProviderOverloaded,
    ProviderRateLimited,
    UnsupportedOperation,
)
from provider_adapters.support.options import InvalidDeploymentOptions
from tests.unit.provider_adapters.completion_samples import (
    IMAGE_URL,
    WEATHER_SCHEMA,
    full_conversation,
    json_schema_format,
    sampling,
    text_part,
    weather_tool,
)

Handler = Callable[[httpx.Request], httpx.Response]


def adapter(handler: Handler, **options: str) -> AnthropicAdapter:
    deployment = Deployment(
        provider="anthropic",
        model="claude-sonnet-4-5",
        base_url="https://anthropic.test",
        api_key=Secret("sk-ant-test"),
        options=options,
    )
    return AnthropicAdapter(deployment, transport=httpx.MockTransport(handler))


def full_request() -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        messages=full_conversation(),
        tools=[weather_tool()],
        tool_choice=inference_pb2.ToolChoice(function_name="get_weather"),
        parallel_tool_calls=False,
        sampling=sampling(),
    )


def simple_request() -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        messages=[inference_pb2.Message(role=common_pb2.ROLE_USER, content=[text_part("Hi")])]
    )


MESSAGE_ANSWER: dict[str, Any] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Look up.", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 5,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 2,
        "output_tokens": 9,
    },
}


async def test_request_json_uses_every_feature() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=MESSAGE_ANSWER)

    subject = adapter(handler)
    await subject.complete(full_request())
    await subject.aclose()

    request = sent[0]
    assert request.method == "POST"
    assert str(request.url) == "https://anthropic.test/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in request.headers
    assert json.loads(request.content) == {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather where this is?"},
                    {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris", "days": 2},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_1",
                        "content": [{"type": "text", "text": '{"temp": 21}'}],
                    },
                    {"type": "text", "text": "And this one?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather.",
                "input_schema": WEATHER_SCHEMA,
            }
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "max_tokens": 256,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
    }


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (inference_pb2.TOOL_CHOICE_MODE_AUTO, {"type": "auto"}),
        (inference_pb2.TOOL_CHOICE_MODE_REQUIRED, {"type": "any"}),
        (inference_pb2.TOOL_CHOICE_MODE_NONE, {"type": "none"}),
    ],
)
async def test_tool_choice_modes(mode: int, expected: dict[str, str]) -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=MESSAGE_ANSWER)

    request = simple_request()
    request.tools.append(weather_tool())
    request.tool_choice.mode = mode  # type: ignore[assignment]
    await adapter(handler).complete(request)
    assert bodies[0]["tool_choice"] == expected


async def test_default_max_tokens_comes_from_the_deployment_option() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=MESSAGE_ANSWER)

    await adapter(handler).complete(simple_request())
    await adapter(handler, default_max_tokens="1000", beta="x").complete(simple_request())
    assert bodies[0]["max_tokens"] == 4096
    assert bodies[1]["max_tokens"] == 1000
    assert bodies[0]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "system" not in bodies[0]


def test_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidDeploymentOptions, match="max_token"):
        adapter(lambda _: httpx.Response(200), max_token="5")


async def test_json_output_is_unsupported() -> None:
    request = simple_request()
    request.response_format.CopyFrom(json_schema_format())
    with pytest.raises(UnsupportedOperation):
        await adapter(lambda _: httpx.Response(200)).complete(request)


async def test_complete_translates_the_answer() -> None:
    result = await adapter(lambda _: httpx.Response(200, json=MESSAGE_ANSWER)).complete(
        simple_request()
    )
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert result.message.role == common_pb2.ROLE_ASSISTANT
    assert [part.text for part in result.message.content] == ["Let me check."]
    assert result.message.reasoning_text == "Look up."
    call = result.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_1",
        "get_weather",
        {"city": "Rome"},
    )
    assert result.usage == common_pb2.Usage(
        input_tokens=10,
        output_tokens=9,
        cached_input_tokens=3,
        cache_creation_input_tokens=2,
        total_tokens=19,
        source=common_pb2.USAGE_SOURCE_PROVIDER,
    )
    assert result.served_by.provider == "anthropic"
    assert result.served_by.provider_model_id == "claude-sonnet-4-5-20250929"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", common_pb2.FINISH_REASON_STOP),
        ("stop_sequence", common_pb2.FINISH_REASON_STOP),
        ("max_tokens", common_pb2.FINISH_REASON_LENGTH),
        ("tool_use", common_pb2.FINISH_REASON_TOOL_CALLS),
        ("refusal", common_pb2.FINISH_REASON_CONTENT_FILTER),
    ],
)
async def test_stop_reasons(stop_reason: str, finish: int) -> None:
    answer = {**MESSAGE_ANSWER, "stop_reason": stop_reason}
    result = await adapter(lambda _: httpx.Response(200, json=answer)).complete(simple_request())
    assert result.finish_reason == finish


def sse(*events: dict[str, Any]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


STREAM_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "usage": {
                "input_tokens": 5,
                "cache_read_input_tokens": 4,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '"Rome"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 12},
    },
    {"type": "message_stop"},
]


async def collect(subject: AnthropicAdapter) -> list[Any]:
    return [item async for item in subject.stream(simple_request())]


async def test_stream_translates_every_event() -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=sse(*STREAM_EVENTS))

    items = await collect(adapter(handler))
    assert sent[0]["stream"] is True
    chunks, result = items[:-1], items[-1]
    assert all(isinstance(chunk, inference_pb2.CompletionChunk) for chunk in chunks)
    assert chunks[0].role == common_pb2.ROLE_ASSISTANT
    assert all(chunk.role == common_pb2.ROLE_UNSPECIFIED for chunk in chunks[1:])
    assert "".join(chunk.text_delta for chunk in chunks) == "Hi"
    deltas = [delta for chunk in chunks for delta in chunk.tool_call_deltas]
    assert [(d.index, d.id, d.function_name, d.arguments_delta) for d in deltas] == [
        (0, "toolu_1", "get_weather", ""),
        (0, "", "", '{"city": '),
        (0, "", "", '"Rome"}'),
        (1, "toolu_2", "now", ""),
        (1, "", "", "{}"),
    ]
    assert isinstance(result, inference_pb2.CompletionResult)
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert result.usage.input_tokens == 9
    assert result.usage.cached_input_tokens == 4
    assert result.usage.output_tokens == 12
    assert result.usage.total_tokens == 21
    assert not result.HasField("message")
    assert result.served_by.provider_model_id == "claude-sonnet-4-5-20250929"


async def test_stream_without_message_stop_is_malformed() -> None:
    body = sse(*STREAM_EVENTS[:4])
    with pytest.raises(MalformedResponse):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_stream_with_bad_json_is_malformed() -> None:
    body = b"event: message_start\ndata: {not json\n\n"
    with pytest.raises(MalformedResponse):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_error_event_inside_the_stream_is_mapped() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body = sse(*STREAM_EVENTS[:4], error)
    with pytest.raises(ProviderOverloaded, match="Overloaded"):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_error_bodies_are_mapped() -> None:
    def too_long(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
            headers={"request-id": "req_1"},
        )

    def limited(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            headers={"retry-after": "7"},
        )

    with pytest.raises(ContextWindowExceeded, match="prompt is too long"):
        await adapter(too_long).complete(simple_request())
    with pytest.raises(ProviderRateLimited) as raised:
        await adapter(limited).complete(simple_request())
    assert raised.value.retry_after_seconds == 7.0


async def test_count_tokens_uses_the_counting_endpoint() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"input_tokens": 42})

    assert await adapter(handler).count_tokens(full_request()) == 42
    assert sent[0].url.path == "/v1/messages/count_tokens"
    body = json.loads(sent[0].content)
    assert set(body) == {"model", "system", "messages", "tools", "tool_choice"}


async def test_cancelling_a_stream_closes_the_response() -> None:
    closed = asyncio.Event()

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield sse(*STREAM_EVENTS[:4])
            await asyncio.Event().wait()

        async def aclose(self) -> None:
            closed.set()

    subject = adapter(lambda _: httpx.Response(200, stream=Body()))
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in subject.stream(simple_request()):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


def test_plugin_declares_what_the_adapter_offers() -> None:
    assert plugin.name == "anthropic"
    assert plugin.capabilities == {Capability.STREAMING, Capability.TOOLS, Capability.VISION}
    assert Capability.EMBEDDINGS not in plugin.capabilities
