"""The gemini adapter's translation, checked byte for byte against a mock transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import Capability, Deployment, Secret
from provider_adapters.conformance.wires.gemini import GeminiWire
from provider_adapters.errors import (
    ContextWindowExceeded,
    MalformedResponse,
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderServerError,
)
from provider_adapters.gemini import GeminiAdapter, plugin
from provider_adapters.support.options import InvalidDeploymentOptions
from tests.unit.provider_adapters.completion_samples import (
    ANSWER_SCHEMA,
    IMAGE_URL,
    WEATHER_SCHEMA,
    full_conversation,
    json_schema_format,
    sampling,
    text_part,
    weather_tool,
)

Handler = Callable[[httpx.Request], httpx.Response]
BASE = "https://gemini.test"


def adapter(handler: Handler, **options: str) -> GeminiAdapter:
    deployment = Deployment(
        provider="gemini",
        model="gemini-2.5-flash",
        base_url=BASE,
        api_key=Secret("AIza-test"),
        options=options,
    )
    return GeminiAdapter(deployment, transport=httpx.MockTransport(handler))


def full_request() -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        messages=full_conversation(),
        tools=[weather_tool()],
        tool_choice=inference_pb2.ToolChoice(function_name="get_weather"),
        sampling=sampling(),
        response_format=json_schema_format(),
    )


def simple_request() -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        messages=[inference_pb2.Message(role=common_pb2.ROLE_USER, content=[text_part("Hi")])]
    )


ANSWER: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Plan.", "thought": True},
                    {"text": "Let me "},
                    {"text": "check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 20,
        "candidatesTokenCount": 6,
        "cachedContentTokenCount": 8,
        "thoughtsTokenCount": 4,
        "totalTokenCount": 30,
    },
    "modelVersion": "gemini-2.5-flash-001",
}


async def test_request_json_uses_every_feature() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=ANSWER)

    subject = adapter(handler)
    await subject.complete(full_request())
    await subject.aclose()

    request = sent[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.headers["x-goog-api-key"] == "AIza-test"
    assert json.loads(request.content) == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather where this is?"},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": IMAGE_URL}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {
                        "functionCall": {
                            "id": "call_1",
                            "name": "get_weather",
                            "args": {"city": "Paris", "days": 2},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "call_1",
                            "name": "get_weather",
                            "response": {"temp": 21},
                        }
                    },
                    {"text": "And this one?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather.",
                        "parametersJsonSchema": WEATHER_SCHEMA,
                    }
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
        "generationConfig": {
            "temperature": 0.5,
            "topP": 0.9,
            "topK": 40,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
            "seed": 42,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "responseMimeType": "application/json",
            "responseJsonSchema": ANSWER_SCHEMA,
        },
    }


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (inference_pb2.TOOL_CHOICE_MODE_AUTO, "AUTO"),
        (inference_pb2.TOOL_CHOICE_MODE_REQUIRED, "ANY"),
        (inference_pb2.TOOL_CHOICE_MODE_NONE, "NONE"),
    ],
)
async def test_tool_choice_modes(mode: int, expected: str) -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=ANSWER)

    request = simple_request()
    request.tools.append(weather_tool())
    request.tool_choice.mode = mode  # type: ignore[assignment]
    await adapter(handler).complete(request)
    assert bodies[0]["toolConfig"] == {"functionCallingConfig": {"mode": expected}}


async def test_plain_tool_results_and_json_object_output() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=ANSWER)

    request = inference_pb2.CompletionRequest(messages=full_conversation()[3:5])
    request.messages[1].content[0].text = "21 degrees"
    request.response_format.json_object.SetInParent()
    await adapter(handler, api_version="v1").complete(request)
    assert bodies[0]["contents"][1]["parts"][0]["functionResponse"]["response"] == {
        "output": "21 degrees"
    }
    assert bodies[0]["generationConfig"] == {"responseMimeType": "application/json"}


async def test_api_version_option_changes_the_path() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json=ANSWER)

    await adapter(handler, api_version="v1").complete(simple_request())
    assert urls == [f"{BASE}/v1/models/gemini-2.5-flash:generateContent"]


async def test_tuned_models_keep_their_collection() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json=ANSWER)

    deployment = Deployment(provider="gemini", model="tunedModels/support-v2", base_url=BASE)
    subject = GeminiAdapter(deployment, transport=httpx.MockTransport(handler))
    await subject.complete(simple_request())
    assert urls == [f"{BASE}/v1beta/tunedModels/support-v2:generateContent"]


async def test_tool_result_for_an_unknown_call_is_refused() -> None:
    request = inference_pb2.CompletionRequest(messages=full_conversation()[4:5])
    with pytest.raises(ProviderBadRequest, match="unknown call"):
        await adapter(lambda _: httpx.Response(200, json=ANSWER)).complete(request)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidDeploymentOptions, match="region"):
        adapter(lambda _: httpx.Response(200), region="eu")


async def test_complete_translates_the_answer() -> None:
    result = await adapter(lambda _: httpx.Response(200, json=ANSWER)).complete(simple_request())
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [part.text for part in result.message.content] == ["Let me check."]
    assert result.message.reasoning_text == "Plan."
    call = result.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Rome"},
    )
    assert result.usage == common_pb2.Usage(
        input_tokens=20,
        output_tokens=10,
        cached_input_tokens=8,
        reasoning_tokens=4,
        total_tokens=30,
        source=common_pb2.USAGE_SOURCE_PROVIDER,
    )
    assert result.served_by.provider == "gemini"
    assert result.served_by.provider_model_id == "gemini-2.5-flash-001"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", common_pb2.FINISH_REASON_STOP),
        ("MAX_TOKENS", common_pb2.FINISH_REASON_LENGTH),
        ("SAFETY", common_pb2.FINISH_REASON_CONTENT_FILTER),
        ("RECITATION", common_pb2.FINISH_REASON_CONTENT_FILTER),
        ("OTHER", common_pb2.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_finish_reasons(reason: str, finish: int) -> None:
    answer = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}
        ]
    }
    result = await adapter(lambda _: httpx.Response(200, json=answer)).complete(simple_request())
    assert result.finish_reason == finish


async def test_blocked_prompt_is_a_content_filter_stop() -> None:
    answer = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    result = await adapter(lambda _: httpx.Response(200, json=answer)).complete(simple_request())
    assert result.finish_reason == common_pb2.FINISH_REASON_CONTENT_FILTER
    assert result.usage.input_tokens == 3


def sse(*chunks: dict[str, Any]) -> bytes:
    return "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks).encode()


def chunk(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash-001"}


STREAM = [
    chunk([{"text": "Hmm", "thought": True}]),
    chunk([{"text": "Hel"}]),
    chunk([{"text": "lo"}, {"functionCall": {"id": "fc_1", "name": "a", "args": {"x": 1}}}]),
    {
        **chunk([{"functionCall": {"name": "b", "args": {}}}], finish="STOP"),
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
    },
]


async def collect(subject: GeminiAdapter) -> list[Any]:
    return [item async for item in subject.stream(simple_request())]


async def test_stream_translates_every_chunk() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, content=sse(*STREAM))

    items = await collect(adapter(handler))
    assert urls == [f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"]
    chunks, result = items[:-1], items[-1]
    assert chunks[0].role == common_pb2.ROLE_ASSISTANT
    assert chunks[0].reasoning_delta == "Hmm"
    assert "".join(c.text_delta for c in chunks) == "Hello"
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert [(d.index, d.function_name, d.arguments_delta) for d in deltas] == [
        (0, "a", '{"x":1}'),
        (1, "b", "{}"),
    ]
    assert deltas[0].id == "fc_1"
    assert deltas[1].id.startswith("call_")
    assert isinstance(result, inference_pb2.CompletionResult)
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 3)
    assert result.served_by.provider_model_id == "gemini-2.5-flash-001"


async def test_stream_without_finish_reason_is_malformed() -> None:
    body = sse(*STREAM[:3])
    with pytest.raises(MalformedResponse):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_stream_with_bad_json_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        await collect(adapter(lambda _: httpx.Response(200, content=b"data: {oops\n\n")))


async def test_error_inside_the_stream_is_mapped() -> None:
    error = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    body = sse(STREAM[1], error)
    with pytest.raises(ProviderServerError, match="UNAVAILABLE: overloaded"):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_error_bodies_are_mapped() -> None:
    def too_long(_: httpx.Request) -> httpx.Response:
        message = (
            "The input token count (1200000) exceeds the maximum number of tokens"
            " allowed (1048576)."
        )
        error = {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
        return httpx.Response(400, json={"error": error})

    def limited(_: httpx.Request) -> httpx.Response:
        error = {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}
        return httpx.Response(429, json={"error": error}, headers={"retry-after": "3"})

    with pytest.raises(ContextWindowExceeded, match="exceeds the maximum"):
        await adapter(too_long).complete(simple_request())
    with pytest.raises(ProviderRateLimited, match="RESOURCE_EXHAUSTED: quota"):
        await adapter(limited).complete(simple_request())


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
async def test_an_invalid_api_key_is_refused_credentials_not_a_bad_request(stream: bool) -> None:
    # Gemini answers a bad x-goog-api-key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    reply = GeminiWire().invalid_api_key()

    def refused(_: httpx.Request) -> httpx.Response:
        return httpx.Response(reply.status, content=reply.body, headers=dict(reply.headers))

    subject = adapter(refused)
    with pytest.raises(ProviderAuthFailed, match="API key not valid") as raised:
        if stream:
            _ = [event async for event in subject.stream(simple_request())]
        else:
            await subject.complete(simple_request())
    assert raised.value.http_status == 400
    assert raised.value.fallback


async def test_an_invalid_key_error_object_inside_a_stream_is_refused_credentials() -> None:
    error = json.loads(GeminiWire().invalid_api_key().body)

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"data: " + json.dumps(error).encode() + b"\r\n\r\n")

    with pytest.raises(ProviderAuthFailed):
        _ = [event async for event in adapter(handler).stream(simple_request())]


async def test_embeddings_use_batch_embed_contents() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"embeddings": [{"values": [0.5, 1]}, {"values": [2]}]})

    request = inference_pb2.EmbedRequest(inputs=["a", "b"], dimensions=2)
    response = await adapter(handler).embed(request)
    assert sent[0].url.path == "/v1beta/models/gemini-2.5-flash:batchEmbedContents"
    assert json.loads(sent[0].content) == {
        "requests": [
            {
                "model": "models/gemini-2.5-flash",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 2,
            },
            {
                "model": "models/gemini-2.5-flash",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 2,
            },
        ]
    }
    assert [(e.index, list(e.values)) for e in response.embeddings] == [(0, [0.5, 1.0]), (1, [2.0])]
    assert response.served_by.provider == "gemini"


async def test_count_tokens_sends_the_whole_request() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"totalTokens": 17})

    assert await adapter(handler).count_tokens(simple_request()) == 17
    assert sent[0].url.path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert json.loads(sent[0].content) == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        }
    }


async def test_cancelling_a_stream_closes_the_response() -> None:
    closed = asyncio.Event()

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield sse(STREAM[1])
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
    assert plugin.name == "gemini"
    assert plugin.capabilities == {
        Capability.STREAMING,
        Capability.TOOLS,
        Capability.JSON_SCHEMA,
        Capability.VISION,
        Capability.EMBEDDINGS,
    }
