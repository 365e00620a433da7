"""The ollama adapter's translation, checked byte for byte against a mock transport."""

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
from provider_adapters.errors import (
    ContextWindowExceeded,
    MalformedResponse,
    ProviderModelNotFound,
    ProviderServerError,
    UnsupportedOperation,
)
from provider_adapters.ollama import OllamaAdapter, plugin
from provider_adapters.support.options import InvalidDeploymentOptions
from tests.unit.provider_adapters.completion_samples import (
    ANSWER_SCHEMA,
    WEATHER_SCHEMA,
    full_conversation,
    image_part,
    json_schema_format,
    sampling,
    text_part,
    weather_tool,
)

Handler = Callable[[httpx.Request], httpx.Response]
BASE = "http://ollama.test:11434"


def adapter(handler: Handler, api_key: str | None = None, **options: str) -> OllamaAdapter:
    deployment = Deployment(
        provider="ollama",
        model="llama3.2",
        base_url=BASE,
        api_key=Secret(api_key) if api_key else None,
        options=options,
    )
    return OllamaAdapter(deployment, transport=httpx.MockTransport(handler))


def inline_images_only() -> list[inference_pb2.Message]:
    """The full conversation with its image URL left out (Ollama takes only inline images)."""
    messages = full_conversation()
    del messages[2].content[1]
    return messages


def full_request() -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        messages=inline_images_only(),
        tools=[weather_tool()],
        tool_choice=inference_pb2.ToolChoice(mode=inference_pb2.TOOL_CHOICE_MODE_AUTO),
        sampling=sampling(),
        response_format=json_schema_format(),
    )


def simple_request() -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        messages=[inference_pb2.Message(role=common_pb2.ROLE_USER, content=[text_part("Hi")])]
    )


ANSWER: dict[str, Any] = {
    "model": "llama3.2",
    "created_at": "2026-01-01T00:00:00Z",
    "message": {
        "role": "assistant",
        "content": "Let me check.",
        "thinking": "Weather tool.",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}],
    },
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 26,
    "eval_count": 12,
}


async def test_request_json_uses_every_feature() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=ANSWER)

    subject = adapter(handler, api_key="ollama-key", num_ctx="8192", keep_alive="10m")
    await subject.complete(full_request())
    await subject.aclose()

    request = sent[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/chat"
    assert request.headers["authorization"] == "Bearer ollama-key"
    assert json.loads(request.content) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use metric."},
            {"role": "user", "content": "Weather where this is?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "function": {
                            "name": "get_weather",
                            "arguments": {"city": "Paris", "days": 2},
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "content": '{"temp": 21}',
                "tool_call_id": "call_1",
                "tool_name": "get_weather",
            },
            {"role": "user", "content": "And this one?", "images": ["iVBORw0KGgo="]},
        ],
        "stream": False,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather.",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        "format": ANSWER_SCHEMA,
        "options": {
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "num_predict": 256,
            "stop": ["END"],
            "seed": 42,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
            "num_ctx": 8192,
        },
        "keep_alive": "10m",
    }


async def test_minimal_request_has_no_auth_and_no_extras() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=ANSWER)

    request = simple_request()
    request.response_format.json_object.SetInParent()
    request.tools.append(weather_tool())
    request.tool_choice.mode = inference_pb2.TOOL_CHOICE_MODE_NONE
    await adapter(handler).complete(request)
    assert "authorization" not in sent[0].headers
    assert json.loads(sent[0].content) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": False,
        "format": "json",
    }


async def test_image_urls_are_unsupported() -> None:
    request = simple_request()
    request.messages[0].content.append(image_part("https://example.com/cat.jpg"))
    with pytest.raises(UnsupportedOperation, match="inline"):
        await adapter(lambda _: httpx.Response(200, json=ANSWER)).complete(request)


@pytest.mark.parametrize(
    "choice",
    [
        inference_pb2.ToolChoice(mode=inference_pb2.TOOL_CHOICE_MODE_REQUIRED),
        inference_pb2.ToolChoice(function_name="get_weather"),
    ],
)
async def test_forced_tool_choice_is_unsupported(choice: inference_pb2.ToolChoice) -> None:
    request = simple_request()
    request.tools.append(weather_tool())
    request.tool_choice.CopyFrom(choice)
    with pytest.raises(UnsupportedOperation):
        await adapter(lambda _: httpx.Response(200, json=ANSWER)).complete(request)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidDeploymentOptions, match="num_gpu"):
        adapter(lambda _: httpx.Response(200), num_gpu="1")


def test_bad_option_value_is_refused() -> None:
    with pytest.raises(InvalidDeploymentOptions, match="num_ctx"):
        adapter(lambda _: httpx.Response(200), num_ctx="big")


async def test_complete_translates_the_answer() -> None:
    result = await adapter(lambda _: httpx.Response(200, json=ANSWER)).complete(simple_request())
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [part.text for part in result.message.content] == ["Let me check."]
    assert result.message.reasoning_text == "Weather tool."
    call = result.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Rome"},
    )
    assert result.usage == common_pb2.Usage(
        input_tokens=26, output_tokens=12, total_tokens=38, source=common_pb2.USAGE_SOURCE_PROVIDER
    )
    assert (result.served_by.provider, result.served_by.provider_model_id) == (
        "ollama",
        "llama3.2",
    )


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("stop", common_pb2.FINISH_REASON_STOP), ("length", common_pb2.FINISH_REASON_LENGTH)],
)
async def test_done_reasons(reason: str, finish: int) -> None:
    answer = {**ANSWER, "message": {"role": "assistant", "content": "x"}, "done_reason": reason}
    result = await adapter(lambda _: httpx.Response(200, json=answer)).complete(simple_request())
    assert result.finish_reason == finish


def ndjson(*objects: dict[str, Any]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in objects).encode()


def line(content: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": content, **extra},
        "done": False,
    }


STREAM = [
    line("", thinking="Hmm"),
    line("Hel"),
    line("lo"),
    line("", tool_calls=[{"id": "call_x", "function": {"name": "a", "arguments": {"x": 1}}}]),
    {
        **line(""),
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 5,
        "eval_count": 3,
    },
]


async def collect(subject: OllamaAdapter) -> list[Any]:
    return [item async for item in subject.stream(simple_request())]


async def test_stream_translates_every_line() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, content=ndjson(*STREAM))

    items = await collect(adapter(handler))
    assert bodies[0]["stream"] is True
    chunks, result = items[:-1], items[-1]
    assert chunks[0].role == common_pb2.ROLE_ASSISTANT
    assert chunks[0].reasoning_delta == "Hmm"
    assert "".join(c.text_delta for c in chunks) == "Hello"
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert [(d.index, d.id, d.function_name, d.arguments_delta) for d in deltas] == [
        (0, "call_x", "a", '{"x":1}')
    ]
    assert isinstance(result, inference_pb2.CompletionResult)
    assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 3)


async def test_stream_without_done_is_malformed() -> None:
    body = ndjson(*STREAM[:3])
    with pytest.raises(MalformedResponse):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_stream_with_bad_json_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        await collect(adapter(lambda _: httpx.Response(200, content=b'{"model": \n')))


async def test_error_line_inside_the_stream_is_mapped() -> None:
    body = ndjson(STREAM[1], {"error": "llama runner process has terminated"})
    with pytest.raises(ProviderServerError, match="runner process"):
        await collect(adapter(lambda _: httpx.Response(200, content=body)))


async def test_error_bodies_are_mapped() -> None:
    def missing(_: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": 'model "llama9" not found, try pulling it first'})

    def too_long(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "input length exceeds the context length"})

    with pytest.raises(ProviderModelNotFound, match="llama9"):
        await adapter(missing).complete(simple_request())
    with pytest.raises(ContextWindowExceeded):
        await adapter(too_long).complete(simple_request())


async def test_embeddings_use_api_embed() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(
            200,
            json={
                "model": "nomic-embed-text",
                "embeddings": [[0.5, 1], [2]],
                "prompt_eval_count": 4,
            },
        )

    request = inference_pb2.EmbedRequest(inputs=["a", "b"], dimensions=2)
    response = await adapter(handler, keep_alive="1m").embed(request)
    assert sent[0].url.path == "/api/embed"
    assert json.loads(sent[0].content) == {
        "model": "llama3.2",
        "input": ["a", "b"],
        "dimensions": 2,
        "keep_alive": "1m",
    }
    assert [(e.index, list(e.values)) for e in response.embeddings] == [(0, [0.5, 1.0]), (1, [2.0])]
    assert response.usage.input_tokens == 4
    assert response.served_by.provider_model_id == "nomic-embed-text"


async def test_cancelling_a_stream_closes_the_response() -> None:
    closed = asyncio.Event()

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield ndjson(STREAM[1])
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
    assert plugin.name == "ollama"
    assert plugin.capabilities == {
        Capability.STREAMING,
        Capability.TOOLS,
        Capability.JSON_SCHEMA,
        Capability.EMBEDDINGS,
    }
    assert Capability.VISION not in plugin.capabilities
