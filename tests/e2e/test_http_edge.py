"""The OpenAI-compatible HTTP edge, judged by the official ``openai`` package.

A real inference process serves the simulated model and a model on its OpenAI
adapter, behind which a scripted fake speaks OpenAI's wire format; the gateway
(in this process) serves HTTP on a free port. Errors come from real parts: the
upstream's 401 and 429 mapped by the inference service, an unknown model.
"""

from __future__ import annotations

import asyncio
import base64
import json
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pydantic
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from gateway.settings import FilterSettings
from provider_adapters.conformance.fake_server import FakeServer, ScriptedResponse
from tests.e2e.http_stack import (
    MAX_BODY_BYTES,
    Edge,
    InferenceProcess,
    chunk,
    openai_error,
    openai_json,
    sse_events,
    start_edge,
    start_inference,
    usage_chunk,
)
from tests.unit.gateway import sample_filters

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "sk-llmgw-test-key"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass
class Stack:
    fake: FakeServer
    inference: InferenceProcess
    edge: Edge
    folder: Path

    def sync_client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.edge.base_url, api_key=KEY, max_retries=0)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.edge.base_url, api_key=KEY, max_retries=0)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("http-edge")
    async with FakeServer() as fake:
        inference = await start_inference(folder, f"{fake.base_url}/v1")
        try:
            edge = await start_edge(inference.address, folder / "access.log")
            try:
                yield Stack(fake, inference, edge, folder)
            finally:
                await edge.stop()
        finally:
            inference.stop()


async def eventually(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


# Success paths ----------------------------------------------------------------------


async def test_sync_client_chat_completion_on_the_simulated_model(stack: Stack) -> None:
    client = stack.sync_client()
    reply = await asyncio.to_thread(
        lambda: client.chat.completions.create(model="sim", messages=HELLO, max_tokens=50)
    )
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.role == "assistant"
    assert len((reply.choices[0].message.content or "").split()) == 6
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6


async def test_async_client_streams_with_usage(stack: Stack) -> None:
    client = stack.async_client()
    stream = await client.chat.completions.create(
        model="sim", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_without_usage_option_has_no_usage_chunk(stack: Stack) -> None:
    client = stack.async_client()
    stream = await client.chat.completions.create(model="sim", messages=HELLO, stream=True)
    chunks = [c async for c in stream]
    assert chunks and all(c.choices and c.usage is None for c in chunks)


async def test_tool_calls_cross_the_edge_both_ways(stack: Stack) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    stack.fake.enqueue(
        openai_json({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
    )
    client = stack.async_client()
    reply = await client.chat.completions.create(
        model="gpt-fake",
        messages=HELLO,
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    sent = stack.fake.requests[-1].json()
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert sent["tool_choice"] == "required"
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    tool_call = message.tool_calls[0]
    assert tool_call.type == "function"
    assert tool_call.id == "call_1" and tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris"}

    # The answer goes back as a tool message and reaches the upstream as one.
    stack.fake.enqueue(openai_json({"role": "assistant", "content": "Sunny, 21 C."}))
    follow_up = await client.chat.completions.create(
        model="gpt-fake",
        messages=[
            *HELLO,
            {"role": "assistant", "content": None, "tool_calls": [call]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21"},
        ],
    )
    assert follow_up.choices[0].message.content == "Sunny, 21 C."
    sent_messages = stack.fake.requests[-1].json()["messages"]
    assert sent_messages[1]["tool_calls"][0]["id"] == "call_1"
    assert sent_messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21"}


async def test_streamed_tool_calls_arrive_as_openai_deltas(stack: Stack) -> None:
    events = [
        chunk({"role": "assistant", "content": None}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    stack.fake.enqueue(
        ScriptedResponse(
            body=sse_events(events), headers={"Content-Type": "text/event-stream"}, chunked=True
        )
    )
    client = stack.async_client()
    async with client.chat.completions.stream(
        model="gpt-fake",
        messages=HELLO,
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].id == "call_9"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 16


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


async def test_json_schema_output_is_parsed_by_the_client(stack: Stack) -> None:
    answer = '{"city":"Rome","celsius":24}'
    stack.fake.enqueue(openai_json({"role": "assistant", "content": answer}))
    client = stack.sync_client()
    reply = await asyncio.to_thread(
        lambda: client.chat.completions.parse(
            model="gpt-fake", messages=HELLO, response_format=Weather
        )
    )
    assert reply.choices[0].message.parsed == Weather(city="Rome", celsius=24)
    sent = stack.fake.requests[-1].json()["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == "Weather"
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["required"] == ["city", "celsius"]


async def test_embeddings_in_base64_and_float(stack: Stack) -> None:
    client = stack.async_client()
    default = await client.embeddings.create(model="sim", input=["one", "two"])
    assert [item.index for item in default.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in default.data)
    floats = await client.embeddings.create(model="sim", input="one", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(default.data[0].embedding, rel=1e-6)
    assert floats.usage.prompt_tokens > 0

    async with aiohttp.ClientSession() as session:
        reply = await session.post(
            f"{stack.edge.base_url}/embeddings",
            json={"model": "sim", "input": "one", "encoding_format": "base64"},
        )
        raw = base64.b64decode((await reply.json())["data"][0]["embedding"])
    assert list(array("f", raw)) == pytest.approx(floats.data[0].embedding, rel=1e-6)


async def test_models_list_and_retrieve(stack: Stack) -> None:
    client = stack.sync_client()
    listed = await asyncio.to_thread(client.models.list)
    assert {"sim", "gpt-fake"} <= {model.id for model in listed.data}
    model = await asyncio.to_thread(lambda: client.models.retrieve("sim"))
    assert model.id == "sim" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(lambda: client.models.retrieve("no-such-model"))


async def test_the_call_carries_the_key_and_request_id_and_is_logged(stack: Stack) -> None:
    client = stack.async_client()
    raw = await client.chat.completions.with_raw_response.create(
        model="sim", messages=HELLO, extra_headers={"x-request-id": "http-edge-req-1"}
    )
    assert raw.headers["x-request-id"] == "http-edge-req-1"
    await eventually(
        lambda: any(line["request_id"] == "http-edge-req-1" for line in stack.edge.log_lines())
    )
    line = next(line for line in stack.edge.log_lines() if line["request_id"] == "http-edge-req-1")
    assert line["method"] == "/llmgw.inference.v1.InferenceService/Complete"
    assert line["code"] == "OK" and line["model"] == "sim"
    assert line["upstream"] == stack.inference.address


# Errors -----------------------------------------------------------------------------


async def test_the_upstreams_own_401_is_not_the_callers_and_answers_400(stack: Stack) -> None:
    # A provider refusing the gateway's provider key is FAILED_PRECONDITION: the
    # caller's key is fine, so the caller must not be told it is not.
    stack.fake.enqueue(openai_error(401, "invalid_api_key"))
    client = stack.sync_client()
    with pytest.raises(openai.BadRequestError) as caught:
        await asyncio.to_thread(
            lambda: client.chat.completions.create(model="gpt-fake", messages=HELLO)
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert set(body) == {"message", "type", "param", "code"}


async def test_upstream_429_raises_rate_limit_error_with_retry_after(stack: Stack) -> None:
    stack.fake.enqueue(openai_error(429, "rate_limit_exceeded", {"retry-after": "7"}))
    client = stack.async_client()
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-fake", messages=HELLO)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["retry-after-ms"] == "7000"


async def test_unknown_model_raises_not_found(stack: Stack) -> None:
    client = stack.async_client()
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert caught.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="no-such-model", input="x")


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_invalid_requests_are_400_naming_the_field(stack: Stack) -> None:
    client = stack.async_client()
    cases: list[tuple[dict[str, object], str]] = [
        ({"model": "sim", "messages": []}, "messages"),
        ({"model": "sim", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "sim", "messages": HELLO, "n": 2}, "n"),
        ({"model": "sim", "messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"messages": HELLO}, "model"),
        (
            {"model": "sim", "messages": HELLO, "response_format": {"type": "xml"}},
            "response_format.type",
        ),
        ({"model": "sim", "messages": HELLO, "max_tokens": 2**31}, "max_tokens"),
        ({"model": "sim", "messages": HELLO, "seed": 2**63}, "seed"),
        (
            {
                "model": "sim",
                "messages": HELLO,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "deep", "schema": _nested(400)},
                },
            },
            "response_format.json_schema.schema",
        ),
    ]
    for body, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.post("/chat/completions", body=body, cast_to=object)
        assert caught.value.status_code == 400
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="sim", input=[])


async def test_malformed_and_oversized_bodies_and_unknown_paths(stack: Stack) -> None:
    url = stack.edge.base_url
    async with aiohttp.ClientSession() as session:
        reply = await session.post(f"{url}/chat/completions", data=b"{not json")
        assert reply.status == 400
        assert (await reply.json())["error"]["code"] == "invalid_json"
        reply = await session.post(f"{url}/chat/completions", data=b"x" * (MAX_BODY_BYTES + 1))
        assert reply.status == 413
        assert (await reply.json())["error"]["type"] == "invalid_request_error"
        reply = await session.post(
            f"{url}/chat/completions",
            json={"model": "sim", "messages": HELLO},
            headers={"authorization": "Bearer s\u00e9same".encode().decode("latin-1")},
        )
        assert reply.status == 400
        assert (await reply.json())["error"]["param"] == "authorization"
        reply = await session.get(f"{url}/no/such/path")
        assert reply.status == 404
        assert (await reply.json())["error"]["type"] == "not_found_error"


async def test_an_error_after_the_first_chunk_is_an_sse_error_event(stack: Stack) -> None:
    first = sse_events([chunk({"role": "assistant", "content": "partial"})], done=False)
    rest = sse_events([chunk({"content": " more"})], done=False)
    stack.fake.enqueue(
        ScriptedResponse(
            body=first + rest,
            headers={"Content-Type": "text/event-stream"},
            chunked=True,
            pieces=(len(first),),
            reset_after_pieces=1,
        )
    )
    client = stack.async_client()
    stream = await client.chat.completions.create(model="gpt-fake", messages=HELLO, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for event in stream:
            received.append(event.choices[0].delta.content or "")
    assert "partial" in "".join(received)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "service_unavailable_error"


async def test_a_client_that_disconnects_cancels_the_upstream_call(stack: Stack) -> None:
    first = sse_events([chunk({"role": "assistant", "content": "thinking"})], done=False)
    stack.fake.enqueue(
        ScriptedResponse(
            body=first + sse_events([chunk({"content": " never"})]),
            headers={"Content-Type": "text/event-stream"},
            chunked=True,
            pieces=(len(first),),
            stall_after_pieces=1,
        )
    )
    seen = len(stack.fake.requests)
    async with aiohttp.ClientSession() as session:
        reply = await session.post(
            f"{stack.edge.base_url}/chat/completions",
            json={"model": "gpt-fake", "messages": HELLO, "stream": True},
        )
        assert reply.status == 200
        line = await reply.content.readline()
        assert line.startswith(b"data: ")
        reply.close()  # the client goes away mid-stream
    upstream = stack.fake.requests[seen]
    await asyncio.wait_for(upstream.client_closed.wait(), timeout=10)
    await eventually(
        lambda: any(
            line["code"] == "CANCELLED" and line["method"].endswith("/StreamComplete")
            for line in stack.edge.log_lines()
        )
    )


# Filters stopping calls: the edge's own mapping of their statuses --------------------


@pytest_asyncio.fixture(loop_scope="module")
async def guarded(stack: Stack) -> AsyncIterator[Edge]:
    """A second gateway whose chain checks the bearer key, a header and a model quota."""
    edge = await start_edge(
        stack.inference.address,
        stack.folder / "guarded-access.log",
        filters=(
            FilterSettings(name="bearer_gate", config={"token": KEY}),
            FilterSettings(name="key_gate", config={"header": "x-test-key"}),
            FilterSettings(name="model_gate", config={"model": "gpt-fake"}),
        ),
        available_filters=sample_filters.ENTRY_POINTS,
        forwarded_headers=("Authorization", "X-Test-Key"),
    )
    try:
        yield edge
    finally:
        await edge.stop()


async def test_filters_see_the_bearer_key_and_their_stops_map_to_openai_errors(
    guarded: Edge,
) -> None:
    def client(key: str, **headers: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=guarded.base_url, api_key=key, max_retries=0, default_headers=headers
        )

    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        await client("sk-wrong").chat.completions.create(model="sim", messages=HELLO)
    assert unauthenticated.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await client("sk-wrong").models.list()
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await client(KEY).chat.completions.create(model="sim", messages=HELLO)
    assert denied.value.status_code == 403
    with pytest.raises(openai.RateLimitError) as limited:
        await client(KEY, **{"x-test-key": "k1"}).chat.completions.create(
            model="gpt-fake", messages=HELLO, stream=True
        )
    assert limited.value.response.headers["retry-after"] == "2"
    reply = await client(KEY, **{"x-test-key": "k1"}).chat.completions.create(
        model="sim", messages=HELLO
    )
    assert reply.choices[0].message.content
    await eventually(lambda: len(guarded.log_lines()) >= 4)
    stopped = {line.get("stopped_by") for line in guarded.log_lines()}
    assert {"bearer_gate", "key_gate", "model_gate"} <= stopped


async def test_a_unary_client_that_disconnects_cancels_the_upstream_call(stack: Stack) -> None:
    stack.fake.enqueue(ScriptedResponse(body=b"{}", delay_before_headers=60))
    seen = len(stack.fake.requests)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        with pytest.raises(TimeoutError):
            await session.post(
                f"{stack.edge.base_url}/chat/completions",
                json={"model": "gpt-fake", "messages": HELLO},
            )
    await asyncio.wait_for(stack.fake.wait_for_requests(seen + 1), timeout=10)
    await asyncio.wait_for(stack.fake.requests[seen].client_closed.wait(), timeout=10)
