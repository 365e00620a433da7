"""The openai adapter's translation: exact request JSON, answers, errors, flavours."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters import errors
from provider_adapters.base import Deployment, Secret
from provider_adapters.openai import OpenAIAdapter, plugin
from provider_adapters.openai.error_body import parse_error
from provider_adapters.openai.request import chat_body
from provider_adapters.support.options import InvalidDeploymentOptions
from services.kernel.errors import InvalidArgument

Json = dict[str, Any]

WEATHER_SCHEMA: Json = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "scale": {"type": "number", "multipleOf": 0.5},
    },
    "required": ["city"],
    "additionalProperties": False,
}
ANSWER_SCHEMA: Json = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}


def _text(text: str) -> inference_pb2.ContentPart:
    return inference_pb2.ContentPart(text=text)


def _image(url: str, detail: inference_pb2.ImageDetail.ValueType) -> inference_pb2.ContentPart:
    return inference_pb2.ContentPart(image_url=inference_pb2.ImageUrl(url=url, detail=detail))


def every_feature() -> inference_pb2.CompletionRequest:
    """A request using every feature the Chat Completions translation knows."""
    request = inference_pb2.CompletionRequest(
        request_id="req-1",
        model="support-bot@production",
        messages=[
            inference_pb2.Message(role=common_pb2.ROLE_SYSTEM, content=[_text("Be brief.")]),
            inference_pb2.Message(role=common_pb2.ROLE_DEVELOPER, content=[_text("Use metric.")]),
            inference_pb2.Message(
                role=common_pb2.ROLE_USER,
                name="alice",
                content=[
                    _text("Weather where these are?"),
                    _image("https://example.com/cat.jpg", inference_pb2.IMAGE_DETAIL_HIGH),
                    _image("data:image/png;base64,iVBORw0KGgo=", inference_pb2.IMAGE_DETAIL_LOW),
                    _image("https://example.com/dog.jpg", inference_pb2.IMAGE_DETAIL_UNSPECIFIED),
                ],
            ),
            inference_pb2.Message(
                role=common_pb2.ROLE_ASSISTANT,
                tool_calls=[
                    inference_pb2.ToolCall(
                        id="call_1",
                        function=inference_pb2.FunctionCall(
                            name="get_weather", arguments='{"city":"Paris"}'
                        ),
                    )
                ],
            ),
            inference_pb2.Message(
                role=common_pb2.ROLE_TOOL, tool_call_id="call_1", content=[_text("18 °C, sunny")]
            ),
            inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT, content=[_text("Sunny, 18 °C.")]),
            inference_pb2.Message(role=common_pb2.ROLE_USER, content=[_text("And tomorrow?")]),
        ],
        tool_choice=inference_pb2.ToolChoice(mode=inference_pb2.TOOL_CHOICE_MODE_REQUIRED),
        parallel_tool_calls=False,
        sampling=inference_pb2.SamplingParameters(
            temperature=0.25,
            top_p=0.5,
            max_output_tokens=512,
            stop=["\n\n", "END"],
            seed=42,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            reasoning_effort=inference_pb2.REASONING_EFFORT_LOW,
        ),
        response_format=inference_pb2.ResponseFormat(
            json_schema=inference_pb2.JsonSchema(
                name="answer", description="The final answer.", strict=True
            )
        ),
        options=inference_pb2.RequestOptions(end_user_id="user-7", tags={"team": "search"}),
    )
    function = inference_pb2.FunctionDefinition(
        name="get_weather", description="Weather forecast for a city.", strict=True
    )
    function.parameters.update(WEATHER_SCHEMA)
    request.tools.append(inference_pb2.Tool(function=function))
    request.response_format.json_schema.schema.update(ANSWER_SCHEMA)
    return request


EXPECTED_BODY: Json = {
    "model": "gpt-4o-2024-11-20",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric."},
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "Weather where these are?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                },
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 °C, sunny"},
        {"role": "assistant", "content": "Sunny, 18 °C."},
        {"role": "user", "content": "And tomorrow?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather forecast for a city.",
                "parameters": WEATHER_SCHEMA,
                "strict": True,
            },
        }
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "temperature": 0.25,
    "top_p": 0.5,
    "max_completion_tokens": 512,
    "stop": ["\n\n", "END"],
    "seed": 42,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "reasoning_effort": "low",
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "The final answer.",
            "schema": ANSWER_SCHEMA,
            "strict": True,
        },
    },
}

COMPLETION: Json = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-11-20",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"answer":"rain","confidence":0.5}'},
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 12},
    },
}


class Recorder:
    """An httpx transport that records requests and answers from a list of responses."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.requests: list[httpx.Request] = []
        self._responses = list(responses)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._responses.pop(0)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def body(self, index: int = -1) -> Json:
        decoded = json.loads(self.requests[index].content)
        assert isinstance(decoded, dict)
        return decoded


def _deployment(**overrides: Any) -> Deployment:
    fields: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-2024-11-20",
        "base_url": "https://api.example.test/v1",
        "api_key": Secret("sk-test-123"),
    }
    fields.update(overrides)
    return Deployment(**fields)


def _sse(*chunks: Json | str) -> bytes:
    lines = [
        f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n" for chunk in chunks
    ]
    return "".join(lines).encode()


def _chunk(delta: Json | None, finish: str | None = None, usage: Json | None = None) -> Json:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"object": "chat.completion.chunk", "model": "m", "choices": choices, "usage": usage}


async def test_the_adapter_sends_every_feature_exactly() -> None:
    recorder = Recorder(httpx.Response(200, json=COMPLETION))
    adapter = OpenAIAdapter(_deployment(), transport=recorder.transport())
    try:
        result = await adapter.complete(every_feature())
    finally:
        await adapter.aclose()
    sent = recorder.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.example.test/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-123"
    assert sent.headers["content-type"] == "application/json"
    assert recorder.body() == EXPECTED_BODY
    assert json.dumps(recorder.body()["tools"][0]["function"]["parameters"]).count(".0") == 0
    assert result.request_id == "req-1"
    assert message_text(result.message) == '{"answer":"rain","confidence":0.5}'
    assert result.usage == common_pb2.Usage(
        input_tokens=120,
        output_tokens=30,
        cached_input_tokens=64,
        reasoning_tokens=12,
        total_tokens=150,
        source=common_pb2.USAGE_SOURCE_PROVIDER,
    )
    assert result.served_by.provider == "openai"
    assert result.served_by.provider_model_id == "gpt-4o-2024-11-20"


def message_text(message: inference_pb2.Message) -> str:
    return "".join(part.text for part in message.content)


def test_a_streamed_request_asks_for_usage() -> None:
    body = chat_body(every_feature(), "gpt-4o", stream=True)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert "stream" not in chat_body(every_feature(), "gpt-4o", stream=False)


def test_unset_fields_are_not_sent() -> None:
    request = inference_pb2.CompletionRequest(
        messages=[inference_pb2.Message(role=common_pb2.ROLE_USER, content=[_text("hi")])]
    )
    assert chat_body(request, "gpt-4o", stream=False) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (inference_pb2.ToolChoice(mode=inference_pb2.TOOL_CHOICE_MODE_AUTO), "auto"),
        (inference_pb2.ToolChoice(mode=inference_pb2.TOOL_CHOICE_MODE_NONE), "none"),
        (
            inference_pb2.ToolChoice(function_name="get_weather"),
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: inference_pb2.ToolChoice, expected: object) -> None:
    request = every_feature()
    request.tool_choice.CopyFrom(choice)
    assert chat_body(request, "m", stream=False)["tool_choice"] == expected


def test_json_object_and_top_k() -> None:
    request = every_feature()
    request.response_format.CopyFrom(
        inference_pb2.ResponseFormat(json_object=inference_pb2.ResponseFormat.JsonObject())
    )
    request.sampling.top_k = 40
    body = chat_body(request, "m", stream=False)
    assert body["response_format"] == {"type": "json_object"}
    assert body["top_k"] == 40


def test_a_message_without_role_is_an_invalid_argument() -> None:
    request = every_feature()
    request.messages.add(content=[_text("who am I?")])
    with pytest.raises(InvalidArgument) as raised:
        chat_body(request, "m", stream=False)
    assert raised.value.violations[0].field == "messages[7].role"


async def test_stream_with_reasoning_refusal_and_parallel_tool_calls() -> None:
    stream = _sse(
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "thinking"}),
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}},
                    {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}},
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}),
        _chunk({}, "tool_calls"),
        _chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 9}),
        "[DONE]",
    )
    recorder = Recorder(
        httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})
    )
    adapter = OpenAIAdapter(_deployment(), transport=recorder.transport())
    try:
        events = [event async for event in adapter.stream(every_feature())]
    finally:
        await adapter.aclose()
    chunks = [e for e in events if isinstance(e, inference_pb2.CompletionChunk)]
    result = events[-1]
    assert isinstance(result, inference_pb2.CompletionResult)
    assert chunks[0].role == common_pb2.ROLE_ASSISTANT
    assert "".join(c.reasoning_delta for c in chunks) == "thinking"
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert [(d.index, d.id, d.function_name, d.arguments_delta) for d in deltas] == [
        (0, "call_a", "f", ""),
        (1, "call_b", "g", "{}"),
        (0, "", "", '{"x":1}'),
    ]
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert result.usage.total_tokens == 14
    assert recorder.body()["stream"] is True


async def test_an_error_inside_the_stream_is_raised() -> None:
    stream = _sse(
        _chunk({"role": "assistant", "content": "Hel"}),
        {"error": {"message": "The server had an error", "type": "server_error"}},
    )
    recorder = Recorder(httpx.Response(200, content=stream))
    adapter = OpenAIAdapter(_deployment(), transport=recorder.transport())
    try:
        with pytest.raises(errors.ProviderServerError, match="The server had an error"):
            [event async for event in adapter.stream(every_feature())]
    finally:
        await adapter.aclose()


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", common_pb2.FINISH_REASON_STOP),
        ("length", common_pb2.FINISH_REASON_LENGTH),
        ("tool_calls", common_pb2.FINISH_REASON_TOOL_CALLS),
        ("content_filter", common_pb2.FINISH_REASON_CONTENT_FILTER),
        ("something_new", common_pb2.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_finish_reasons_and_refusal(finish: str, expected: int) -> None:
    answer = {
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "I can't."},
                "finish_reason": finish,
            }
        ],
    }
    recorder = Recorder(httpx.Response(200, json=answer))
    adapter = OpenAIAdapter(_deployment(), transport=recorder.transport())
    try:
        result = await adapter.complete(every_feature())
    finally:
        await adapter.aclose()
    assert result.finish_reason == expected
    assert result.message.refusal == "I can't."
    assert not result.message.content
    assert not result.HasField("usage")


async def test_embeddings_request_and_order() -> None:
    answer = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.5, 0.25]},
            {"object": "embedding", "index": 0, "embedding": [1, -2]},
        ],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    recorder = Recorder(httpx.Response(200, json=answer))
    adapter = OpenAIAdapter(
        _deployment(model="text-embedding-3-small"), transport=recorder.transport()
    )
    try:
        response = await adapter.embed(
            inference_pb2.EmbedRequest(request_id="e-1", inputs=["a", "b"], dimensions=2)
        )
    finally:
        await adapter.aclose()
    assert str(recorder.requests[0].url) == "https://api.example.test/v1/embeddings"
    assert recorder.body() == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 2,
    }
    assert [list(e.values) for e in response.embeddings] == [[1.0, -2.0], [0.5, 0.25]]
    assert response.usage.input_tokens == 4
    assert response.request_id == "e-1"


async def test_azure_paths_and_key() -> None:
    recorder = Recorder(httpx.Response(200, json=COMPLETION))
    deployment = _deployment(
        base_url="https://contoso.openai.azure.com/",
        options={
            "flavour": "azure",
            "api_version": "2025-01-01-preview",
            "azure_deployment": "gpt4o eu",
        },
    )
    adapter = OpenAIAdapter(deployment, transport=recorder.transport())
    try:
        await adapter.complete(every_feature())
    finally:
        await adapter.aclose()
    sent = recorder.requests[0]
    assert sent.url.raw_path.startswith(b"/openai/deployments/gpt4o%20eu/chat/completions?")
    assert sent.url.params["api-version"] == "2025-01-01-preview"
    assert sent.headers["api-key"] == "sk-test-123"
    assert "authorization" not in sent.headers


async def test_azure_deployment_defaults_to_the_model() -> None:
    recorder = Recorder(httpx.Response(200, json=COMPLETION))
    deployment = _deployment(
        base_url="https://contoso.openai.azure.com", options={"flavour": "azure"}
    )
    adapter = OpenAIAdapter(deployment, transport=recorder.transport())
    try:
        await adapter.complete(every_feature())
    finally:
        await adapter.aclose()
    url = recorder.requests[0].url
    assert url.path == "/openai/deployments/gpt-4o-2024-11-20/chat/completions"
    assert url.params["api-version"] == "2024-10-21"


async def test_organization_project_and_keyless_servers() -> None:
    recorder = Recorder(httpx.Response(200, json=COMPLETION), httpx.Response(200, json=COMPLETION))
    with_org = OpenAIAdapter(
        _deployment(options={"organization": "org-1", "project": "proj-1"}),
        transport=recorder.transport(),
    )
    keyless = OpenAIAdapter(
        _deployment(base_url="http://localhost:11434/v1", api_key=None),
        transport=recorder.transport(),
    )
    try:
        await with_org.complete(every_feature())
        await keyless.complete(every_feature())
    finally:
        await with_org.aclose()
        await keyless.aclose()
    assert recorder.requests[0].headers["openai-organization"] == "org-1"
    assert recorder.requests[0].headers["openai-project"] == "proj-1"
    assert str(recorder.requests[1].url) == "http://localhost:11434/v1/chat/completions"
    assert "authorization" not in recorder.requests[1].headers


async def test_default_base_url_is_openai() -> None:
    recorder = Recorder(httpx.Response(200, json=COMPLETION))
    adapter = OpenAIAdapter(_deployment(base_url=""), transport=recorder.transport())
    try:
        await adapter.complete(every_feature())
    finally:
        await adapter.aclose()
    assert str(recorder.requests[0].url) == "https://api.openai.com/v1/chat/completions"


@pytest.mark.parametrize(
    ("options", "base_url", "mentioned"),
    [
        ({"api_version": "2024-10-21"}, "https://x", "api_version"),
        ({"flavour": "azure", "organization": "o"}, "https://x", "organization"),
        ({"flavour": "bedrock"}, "https://x", "bedrock"),
        ({"flavour": "azure"}, "", "base_url"),
    ],
)
def test_bad_options_are_refused_at_construction(
    options: dict[str, str], base_url: str, mentioned: str
) -> None:
    with pytest.raises(InvalidDeploymentOptions, match=mentioned):
        plugin.create(_deployment(options=options, base_url=base_url))


@pytest.mark.parametrize(
    ("status", "body", "context", "message"),
    [
        (
            400,
            b'{"error":{"message":"too long","type":"invalid_request_error",'
            b'"param":"messages","code":"context_length_exceeded"}}',
            True,
            "context_length_exceeded: too long",
        ),
        (
            400,
            b'{"object":"error","message":"This model\'s maximum context length is 4096 tokens.",'
            b'"type":"BadRequestError","code":400}',
            True,
            "BadRequestError: This model's maximum context length is 4096 tokens.",
        ),
        (
            400,
            b'{"error":{"message":"This model\'s maximum context length is 4096 tokens.",'
            b'"type":"BadRequestError","code":400}}',
            True,
            "BadRequestError: This model's maximum context length is 4096 tokens.",
        ),
        (429, b'{"error":"slow down"}', False, "slow down"),
        (502, b"<html>Bad Gateway</html>", False, "HTTP 502: <html>Bad Gateway</html>"),
        (500, b"", False, "HTTP 500: no body"),
    ],
)
def test_error_bodies(status: int, body: bytes, context: bool, message: str) -> None:
    parsed = parse_error(status, body)
    assert parsed.context_window is context
    assert parsed.message.startswith(message)


def test_plugin_describes_the_adapter() -> None:
    assert plugin.name == "openai"
    assert plugin.capabilities == OpenAIAdapter.capabilities
