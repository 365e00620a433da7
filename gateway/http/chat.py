"""OpenAI Chat Completions bodies to ``Complete``/``StreamComplete`` requests, and back.

:func:`parse_chat` reads a request body (already decoded JSON) into a
``CompletionRequest``; a field the gateway cannot take raises
:class:`~services.kernel.errors.InvalidArgument` naming it (answered with 400 and
``param``). Fields OpenAI defines that have no llmgw meaning (``logprobs``,
``service_tier``, ...) are ignored, as compatible servers do; ``n`` other than 1 is
refused. :func:`completion_body` writes a ``chat.completion`` object and
:class:`ChatStream` the ``chat.completion.chunk`` events of a stream.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.http.fields import (
    INT64,
    as_integer,
    as_list,
    as_number,
    as_object,
    as_string,
    as_struct,
    bad,
)
from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2

Json = dict[str, Any]

ROLES: Mapping[str, int] = {
    "system": common_pb2.ROLE_SYSTEM,
    "developer": common_pb2.ROLE_DEVELOPER,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "tool": common_pb2.ROLE_TOOL,
}
IMAGE_DETAILS: Mapping[str, int] = {
    "auto": inference_pb2.IMAGE_DETAIL_AUTO,
    "low": inference_pb2.IMAGE_DETAIL_LOW,
    "high": inference_pb2.IMAGE_DETAIL_HIGH,
}
TOOL_CHOICE_MODES: Mapping[str, int] = {
    "auto": inference_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": inference_pb2.TOOL_CHOICE_MODE_NONE,
    "required": inference_pb2.TOOL_CHOICE_MODE_REQUIRED,
}
REASONING_EFFORTS: Mapping[str, int] = {
    "minimal": inference_pb2.REASONING_EFFORT_MINIMAL,
    "low": inference_pb2.REASONING_EFFORT_LOW,
    "medium": inference_pb2.REASONING_EFFORT_MEDIUM,
    "high": inference_pb2.REASONING_EFFORT_HIGH,
}
FINISH_REASONS: Mapping[int, str] = {
    common_pb2.FINISH_REASON_STOP: "stop",
    common_pb2.FINISH_REASON_LENGTH: "length",
    common_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    common_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
}
"""OpenAI's finish reasons; others (error, cancelled) are reported as ``stop``."""

_FLOAT_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A parsed Chat Completions request."""

    completion: inference_pb2.CompletionRequest
    stream: bool
    include_usage: bool


def parse_chat(body: object) -> ChatRequest:
    """The completion a Chat Completions body asks for; InvalidArgument when it is wrong."""
    body = as_object(body, "body")
    completion = inference_pb2.CompletionRequest()
    if "model" not in body:
        raise bad("model", "is required")
    completion.model = as_string(body["model"], "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "must be a non-empty array")
    for index, message in enumerate(messages):
        _message(completion.messages.add(), message, f"messages[{index}]")
    for index, tool in enumerate(as_list(body.get("tools") or [], "tools")):
        _tool(completion.tools.add(), tool, f"tools[{index}]")
    if body.get("tool_choice") is not None:
        _tool_choice(completion.tool_choice, body["tool_choice"])
    if body.get("parallel_tool_calls") is not None:
        if not isinstance(body["parallel_tool_calls"], bool):
            raise bad("parallel_tool_calls", "must be a boolean")
        completion.parallel_tool_calls = body["parallel_tool_calls"]
    _sampling(completion.sampling, body)
    if body.get("response_format") is not None:
        _response_format(completion.response_format, body["response_format"])
    _options(completion.options, body)
    n = body.get("n")
    if n is not None and n != 1:
        raise bad("n", "only one choice (n=1) is supported")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = bool(
        stream and isinstance(options, dict) and options.get("include_usage") is True
    )
    return ChatRequest(completion, stream, include_usage)


def _message(out: inference_pb2.Message, raw: object, field: str) -> None:
    message = as_object(raw, field)
    role_name = message.get("role")
    role = ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise bad(f"{field}.role", f"must be one of {', '.join(ROLES)}")
    out.role = role  # type: ignore[assignment]
    content = message.get("content")
    if isinstance(content, str):
        out.content.add(text=content)
    elif isinstance(content, list):
        for index, part in enumerate(content):
            _part(out.content.add(), part, f"{field}.content[{index}]")
    elif content is not None:
        raise bad(f"{field}.content", "must be a string or an array of parts")
    if message.get("name") is not None:
        out.name = as_string(message["name"], f"{field}.name")
    if message.get("tool_call_id") is not None:
        out.tool_call_id = as_string(message["tool_call_id"], f"{field}.tool_call_id")
    if message.get("refusal") is not None:
        out.refusal = as_string(message["refusal"], f"{field}.refusal")
    calls = as_list(message.get("tool_calls") or [], f"{field}.tool_calls")
    for index, raw_call in enumerate(calls):
        where = f"{field}.tool_calls[{index}]"
        call = as_object(raw_call, where)
        function = as_object(call.get("function"), f"{where}.function")
        out.tool_calls.add(
            id=as_string(call.get("id", ""), f"{where}.id"),
            function=inference_pb2.FunctionCall(
                name=as_string(function.get("name"), f"{where}.function.name"),
                arguments=as_string(function.get("arguments", ""), f"{where}.function.arguments"),
            ),
        )


def _part(out: inference_pb2.ContentPart, raw: object, field: str) -> None:
    part = as_object(raw, field)
    kind = part.get("type")
    if kind == "text":
        out.text = as_string(part.get("text"), f"{field}.text")
    elif kind == "image_url":
        image = as_object(part.get("image_url"), f"{field}.image_url")
        out.image_url.url = as_string(image.get("url"), f"{field}.image_url.url")
        detail = image.get("detail")
        if detail is not None:
            if not isinstance(detail, str) or detail not in IMAGE_DETAILS:
                raise bad(f"{field}.image_url.detail", "must be auto, low or high")
            out.image_url.detail = IMAGE_DETAILS[detail]  # type: ignore[assignment]
    else:
        raise bad(f"{field}.type", "must be text or image_url")


def _tool(out: inference_pb2.Tool, raw: object, field: str) -> None:
    tool = as_object(raw, field)
    if tool.get("type", "function") != "function":
        raise bad(f"{field}.type", "must be function")
    function = as_object(tool.get("function"), f"{field}.function")
    out.function.name = as_string(function.get("name"), f"{field}.function.name")
    if function.get("description") is not None:
        out.function.description = as_string(
            function["description"], f"{field}.function.description"
        )
    if function.get("parameters") is not None:
        out.function.parameters.CopyFrom(
            as_struct(function["parameters"], f"{field}.function.parameters")
        )
    out.function.strict = function.get("strict") is True


def _tool_choice(out: inference_pb2.ToolChoice, choice: object) -> None:
    if isinstance(choice, str):
        if choice not in TOOL_CHOICE_MODES:
            raise bad("tool_choice", "must be auto, none, required or a function")
        out.mode = TOOL_CHOICE_MODES[choice]  # type: ignore[assignment]
        return
    function = as_object(as_object(choice, "tool_choice").get("function"), "tool_choice.function")
    out.function_name = as_string(function.get("name"), "tool_choice.function.name")


def _sampling(out: inference_pb2.SamplingParameters, body: Json) -> None:
    for name in _FLOAT_SAMPLING:
        if body.get(name) is not None:
            setattr(out, name, as_number(body[name], name))
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            out.max_output_tokens = as_integer(body[name], name)
            break
    if body.get("seed") is not None:
        out.seed = as_integer(body["seed"], "seed", INT64)
    if body.get("top_k") is not None:
        out.top_k = as_integer(body["top_k"], "top_k")
    stop = body.get("stop")
    if isinstance(stop, str):
        out.stop.append(stop)
    elif stop is not None:
        out.stop.extend(as_string(item, "stop") for item in as_list(stop, "stop"))
    effort = body.get("reasoning_effort")
    if effort is not None:
        if not isinstance(effort, str) or effort not in REASONING_EFFORTS:
            raise bad("reasoning_effort", "must be minimal, low, medium or high")
        out.reasoning_effort = REASONING_EFFORTS[effort]  # type: ignore[assignment]


def _response_format(out: inference_pb2.ResponseFormat, raw: object) -> None:
    kind = as_object(raw, "response_format").get("type")
    if kind == "text":
        out.text.SetInParent()
    elif kind == "json_object":
        out.json_object.SetInParent()
    elif kind == "json_schema":
        assert isinstance(raw, dict)
        spec = as_object(raw.get("json_schema"), "response_format.json_schema")
        out.json_schema.name = as_string(spec.get("name"), "response_format.json_schema.name")
        if spec.get("description") is not None:
            out.json_schema.description = as_string(
                spec["description"], "response_format.json_schema.description"
            )
        if spec.get("schema") is not None:
            out.json_schema.schema.CopyFrom(
                as_struct(spec["schema"], "response_format.json_schema.schema")
            )
        out.json_schema.strict = spec.get("strict") is True
    else:
        raise bad("response_format.type", "must be text, json_object or json_schema")


def _options(out: inference_pb2.RequestOptions, body: Json) -> None:
    if body.get("user") is not None:
        out.end_user_id = as_string(body["user"], "user")
    metadata = body.get("metadata")
    if metadata is not None:
        for key, value in as_object(metadata, "metadata").items():
            out.metadata[key] = as_string(value, f"metadata.{key}")


# Responses -------------------------------------------------------------------------


def usage_body(usage: common_pb2.Usage) -> Json:
    """OpenAI's ``usage`` object for llmgw token counts."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens or usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _created(result: inference_pb2.CompletionResult) -> int:
    return result.create_time.seconds if result.HasField("create_time") else int(time.time())


def completion_body(result: inference_pb2.CompletionResult, model: str) -> bytes:
    """The ``chat.completion`` JSON of a ``Complete`` result for the requested ``model``."""
    message = result.message
    text = "".join(part.text for part in message.content if part.WhichOneof("part") == "text")
    content = text if text or not message.tool_calls else None
    answer: Json = {"role": "assistant", "content": content}
    if message.tool_calls:
        answer["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    answer["refusal"] = message.refusal or None
    if message.reasoning_text:
        answer["reasoning_content"] = message.reasoning_text
    return orjson.dumps(
        {
            "id": f"chatcmpl-{result.request_id}",
            "object": "chat.completion",
            "created": _created(result),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": answer,
                    "finish_reason": FINISH_REASONS.get(result.finish_reason, "stop"),
                    "logprobs": None,
                }
            ],
            "usage": usage_body(result.usage),
        }
    )


def sse(data: object) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class ChatStream:
    """Turns the messages of one ``StreamComplete`` call into ``chat.completion.chunk`` events.

    The chunk id is ``chatcmpl-`` and the request id of the final message (the deltas
    do not carry it, so chunks before it use the gateway's request id).
    """

    __slots__ = ("_created", "_id", "_include_usage", "_model")

    def __init__(self, request_id: str, model: str, *, include_usage: bool) -> None:
        self._id = f"chatcmpl-{request_id}"
        self._model = model
        self._include_usage = include_usage
        self._created = int(time.time())

    def events(self, response: inference_pb2.StreamCompleteResponse) -> bytes:
        """The SSE bytes for one stream message (empty for a final that carries an error:
        the error event follows when the call ends)."""
        if response.WhichOneof("event") == "delta":
            return sse(self._chunk(_delta(response.delta), None))
        result = response.final
        if result.HasField("error") and result.error.code:
            return b""
        out = sse(self._chunk({}, FINISH_REASONS.get(result.finish_reason, "stop")))
        if self._include_usage:
            usage = {**self._chunk_head(), "choices": [], "usage": usage_body(result.usage)}
            out += sse(usage)
        return out

    def _chunk_head(self) -> Json:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: Json, finish_reason: str | None) -> Json:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**self._chunk_head(), "choices": [choice]}


def _delta(chunk: inference_pb2.CompletionChunk) -> Json:
    delta: Json = {}
    if chunk.role:
        delta["role"] = "assistant"
    if chunk.text_delta:
        delta["content"] = chunk.text_delta
    if chunk.reasoning_delta:
        delta["reasoning_content"] = chunk.reasoning_delta
    if chunk.refusal_delta:
        delta["refusal"] = chunk.refusal_delta
    if chunk.tool_call_deltas:
        calls = []
        for piece in chunk.tool_call_deltas:
            call: Json = {"index": piece.index}
            function: Json = {"arguments": piece.arguments_delta}
            if piece.id:
                call["id"] = piece.id
                call["type"] = "function"
            if piece.function_name:
                function["name"] = piece.function_name
            call["function"] = function
            calls.append(call)
        delta["tool_calls"] = calls
    if not delta:
        delta["content"] = ""
    return delta
