"""The HTTP edge's translations: OpenAI bodies to llmgw messages, statuses to OpenAI errors."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest

from gateway.http.chat import ChatStream, completion_body, parse_chat
from gateway.http.embeddings import parse_embeddings
from gateway.http.errors import error_of_status, status_of_call
from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.kernel.errors import (
    STATUS_DETAILS_KEY,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    LlmgwError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("error", "http_status", "kind"),
    [
        (InvalidArgument("bad"), 400, "invalid_request_error"),
        (FailedPrecondition("not now"), 400, "invalid_request_error"),
        (Unauthenticated("who"), 401, "authentication_error"),
        (PermissionDenied("no"), 403, "permission_error"),
        (NotFound("model", "m"), 404, "not_found_error"),
        (AlreadyExists("file", "f"), 409, "conflict_error"),
        (ResourceExhausted("slow down"), 429, "rate_limit_error"),
        (Cancelled("gone"), 499, "cancelled"),
        (Internal("boom"), 500, "server_error"),
        (Unimplemented("later"), 501, "not_implemented_error"),
        (Unavailable("down"), 503, "service_unavailable_error"),
        (DeadlineExceeded("late"), 504, "timeout_error"),
    ],
)
def test_each_status_has_its_http_status_and_type(
    error: LlmgwError, http_status: int, kind: str
) -> None:
    mapped = error_of_status(error.to_status())
    assert (mapped.http_status, mapped.type) == (http_status, kind)
    assert mapped.code == error.reason.lower()
    assert set(orjson.loads(mapped.body())["error"]) == {"message", "type", "param", "code"}


def test_internal_errors_keep_their_text_hidden() -> None:
    assert error_of_status(Internal("db password is hunter2").to_status()).message == (
        "internal error"
    )


def test_field_violations_become_param_and_retry_info_retry_after() -> None:
    bad = InvalidArgument("wrong", [FieldViolation("messages[2].role", "unknown")])
    assert error_of_status(bad.to_status()).param == "messages[2].role"
    limited = error_of_status(ResourceExhausted("wait", retry_after_seconds=1.2).to_status())
    assert limited.headers() == {"retry-after": "2", "retry-after-ms": "1200"}
    assert error_of_status(ResourceExhausted("wait").to_status()).headers() == {}


def test_the_rich_status_comes_from_the_trailer_when_it_matches_the_code() -> None:
    status = NotFound("model", "m", reason="MODEL_NOT_FOUND").to_status()
    trailers = ((STATUS_DETAILS_KEY, status.SerializeToString()),)
    assert status_of_call(grpc.StatusCode.NOT_FOUND, "x", trailers) == status
    plain = status_of_call(grpc.StatusCode.UNAVAILABLE, "down", trailers)
    assert (plain.code, plain.message, len(plain.details)) == (14, "down", 0)
    junk = status_of_call(grpc.StatusCode.INTERNAL, "x", ((STATUS_DETAILS_KEY, b"\xff\x00"),))
    assert junk.code == 13


def test_a_full_chat_request_maps_to_a_completion_request() -> None:
    parsed = parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "name": "ann",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:x", "detail": "low"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": 1}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "temperature": 0.5,
            "top_p": 1,
            "max_tokens": 64,
            "stop": "END",
            "seed": 7,
            "reasoning_effort": "low",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True},
            },
            "user": "end-user-1",
            "metadata": {"team": "search"},
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": False,
        }
    )
    c = parsed.completion
    assert parsed.stream and parsed.include_usage
    assert [m.role for m in c.messages] == [
        common_pb2.ROLE_SYSTEM,
        common_pb2.ROLE_USER,
        common_pb2.ROLE_ASSISTANT,
        common_pb2.ROLE_TOOL,
    ]
    assert c.messages[1].name == "ann"
    assert c.messages[1].content[1].image_url.detail == inference_pb2.IMAGE_DETAIL_LOW
    assert c.messages[2].tool_calls[0].function.name == "f"
    assert c.messages[3].tool_call_id == "c1" and c.messages[3].content[0].text == "42"
    assert c.tools[0].function.parameters["a"] == 1
    assert c.tool_choice.function_name == "f" and c.parallel_tool_calls is False
    assert c.sampling.temperature == 0.5 and c.sampling.max_output_tokens == 64
    assert list(c.sampling.stop) == ["END"] and c.sampling.seed == 7
    assert c.sampling.reasoning_effort == inference_pb2.REASONING_EFFORT_LOW
    assert c.response_format.json_schema.strict
    assert c.options.end_user_id == "end-user-1" and c.options.metadata["team"] == "search"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], "body"),
        ({"messages": HELLO}, "model"),
        ({"model": 3, "messages": HELLO}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [{"role": ["user"]}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": "m", "messages": HELLO, "tools": [{"type": "web"}]}, "tools[0].type"),
        ({"model": "m", "messages": HELLO, "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "messages": HELLO, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"model": "m", "messages": HELLO, "max_tokens": 1.5}, "max_tokens"),
        ({"model": "m", "messages": HELLO, "top_p": True}, "top_p"),
        ({"model": "m", "messages": HELLO, "stop": [1]}, "stop"),
        ({"model": "m", "messages": HELLO, "reasoning_effort": ["x"]}, "reasoning_effort"),
        ({"model": "m", "messages": HELLO, "metadata": {"k": 1}}, "metadata.k"),
        ({"model": "m", "messages": HELLO, "n": 3}, "n"),
    ],
)
def test_wrong_chat_fields_are_invalid_arguments_naming_them(body: Any, param: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_chat(body)
    error = error_of_status(caught.value.to_status())
    assert (error.http_status, error.param) == (400, param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e", "input": []}, "input"),
        ({"model": "e", "input": [[1, 2]]}, "input[0]"),
        ({"model": "e", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "e", "input": "x", "dimensions": "8"}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
def test_wrong_embedding_fields_are_invalid_arguments(body: Any, param: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_embeddings(body)
    assert error_of_status(caught.value.to_status()).param == param


def test_a_completion_with_tool_calls_reads_as_openai_json() -> None:
    result = inference_pb2.CompletionResult(
        request_id="r1",
        message=inference_pb2.Message(
            role=common_pb2.ROLE_ASSISTANT,
            tool_calls=[
                inference_pb2.ToolCall(
                    id="c1", function=inference_pb2.FunctionCall(name="f", arguments="{}")
                )
            ],
        ),
        finish_reason=common_pb2.FINISH_REASON_TOOL_CALLS,
        usage=common_pb2.Usage(input_tokens=3, output_tokens=2, cached_input_tokens=1),
    )
    body = orjson.loads(completion_body(result, "m"))
    assert body["id"] == "chatcmpl-r1" and body["model"] == "m"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert body["usage"]["total_tokens"] == 5
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}


def test_stream_events_and_a_failed_final() -> None:
    stream = ChatStream("r1", "m", include_usage=True)
    first = stream.events(
        inference_pb2.StreamCompleteResponse(
            delta=inference_pb2.CompletionChunk(role=common_pb2.ROLE_ASSISTANT, text_delta="hi")
        )
    )
    assert first.startswith(b"data: ") and first.endswith(b"\n\n")
    assert orjson.loads(first[6:])["choices"][0]["delta"] == {"role": "assistant", "content": "hi"}
    final = inference_pb2.CompletionResult(finish_reason=common_pb2.FINISH_REASON_LENGTH)
    events = stream.events(inference_pb2.StreamCompleteResponse(final=final))
    finish, usage = (orjson.loads(e[6:]) for e in events.strip().split(b"\n\n"))
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and "usage" in usage
    failed = inference_pb2.CompletionResult(error=Unavailable("gone").to_status())
    assert stream.events(inference_pb2.StreamCompleteResponse(final=failed)) == b""
