"""llmgw requests to OpenAI request bodies (Chat Completions and Embeddings).

Only fields the caller set are sent, so the provider's defaults apply to the
rest. ``SamplingParameters.top_k`` is not part of OpenAI's API; it is sent as
``top_k`` for the compatible servers that take it (vLLM, Together) and OpenAI
itself answers it with a 400. ``RequestOptions`` are the gateway's and never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import CompletionRequest, EmbedRequest
from provider_adapters.struct_json import struct_to_dict
from services.kernel.errors import FieldViolation, InvalidArgument

Json = dict[str, Any]

ROLES: Mapping[int, str] = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_DEVELOPER: "developer",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
    common_pb2.ROLE_TOOL: "tool",
}

IMAGE_DETAILS: Mapping[int, str] = {
    inference_pb2.IMAGE_DETAIL_AUTO: "auto",
    inference_pb2.IMAGE_DETAIL_LOW: "low",
    inference_pb2.IMAGE_DETAIL_HIGH: "high",
}

TOOL_CHOICE_MODES: Mapping[int, str] = {
    inference_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    inference_pb2.TOOL_CHOICE_MODE_NONE: "none",
    inference_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
}

REASONING_EFFORTS: Mapping[int, str] = {
    inference_pb2.REASONING_EFFORT_MINIMAL: "minimal",
    inference_pb2.REASONING_EFFORT_LOW: "low",
    inference_pb2.REASONING_EFFORT_MEDIUM: "medium",
    inference_pb2.REASONING_EFFORT_HIGH: "high",
}


def chat_body(request: CompletionRequest, model: str, *, stream: bool) -> Json:
    """The Chat Completions body for ``request`` sent to ``model``.

    Raises :class:`~services.kernel.errors.InvalidArgument` for a message
    without a role.
    """
    body: Json = {
        "model": model,
        "messages": [_message(message, index) for index, message in enumerate(request.messages)],
    }
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools if tool.HasField("function")]
    choice = _tool_choice(request.tool_choice)
    if choice is not None:
        body["tool_choice"] = choice
    if request.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = request.parallel_tool_calls
    body.update(_sampling(request.sampling))
    response_format = _response_format(request.response_format)
    if response_format is not None:
        body["response_format"] = response_format
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def embeddings_body(request: EmbedRequest, model: str) -> Json:
    """The Embeddings body for ``request`` sent to ``model`` (float vectors)."""
    body: Json = {"model": model, "input": list(request.inputs), "encoding_format": "float"}
    if request.HasField("dimensions"):
        body["dimensions"] = request.dimensions
    return body


def _message(message: inference_pb2.Message, index: int) -> Json:
    role = ROLES.get(message.role)
    if role is None:
        raise InvalidArgument(
            "every message needs a role",
            [FieldViolation(f"messages[{index}].role", "must be set")],
        )
    out: Json = {"role": role}
    if role == "tool":
        out["tool_call_id"] = message.tool_call_id
        out["content"] = _content(message)
        return out
    if message.name:
        out["name"] = message.name
    if role == "assistant":
        out["content"] = _content(message) if message.content or not message.tool_calls else None
        if message.refusal:
            out["refusal"] = message.refusal
        if message.tool_calls:
            out["tool_calls"] = [
                _tool_call(call) for call in message.tool_calls if call.HasField("function")
            ]
        return out
    out["content"] = _content(message)
    return out


def _content(message: inference_pb2.Message) -> str | list[Json]:
    """A single text part as a string, anything else as a list of typed parts."""
    parts = message.content
    if len(parts) == 1 and parts[0].WhichOneof("part") == "text":
        return parts[0].text
    if not parts:
        return ""
    return [_part(part) for part in parts]


def _part(part: inference_pb2.ContentPart) -> Json:
    if part.WhichOneof("part") == "image_url":
        image: Json = {"url": part.image_url.url}
        detail = IMAGE_DETAILS.get(part.image_url.detail)
        if detail is not None:
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    return {"type": "text", "text": part.text}


def _tool_call(call: inference_pb2.ToolCall) -> Json:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": call.function.arguments},
    }


def _tool(tool: inference_pb2.Tool) -> Json:
    definition = tool.function
    function: Json = {"name": definition.name}
    if definition.description:
        function["description"] = definition.description
    if definition.HasField("parameters"):
        function["parameters"] = struct_to_dict(definition.parameters)
    if definition.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _tool_choice(choice: inference_pb2.ToolChoice) -> str | Json | None:
    which = choice.WhichOneof("choice")
    if which == "function_name":
        return {"type": "function", "function": {"name": choice.function_name}}
    if which == "mode":
        return TOOL_CHOICE_MODES.get(choice.mode)
    return None


def _sampling(sampling: inference_pb2.SamplingParameters) -> Json:
    out: Json = {}
    if sampling.HasField("temperature"):
        out["temperature"] = sampling.temperature
    if sampling.HasField("top_p"):
        out["top_p"] = sampling.top_p
    if sampling.HasField("max_output_tokens"):
        out["max_completion_tokens"] = sampling.max_output_tokens
    if sampling.stop:
        out["stop"] = list(sampling.stop)
    if sampling.HasField("seed"):
        out["seed"] = sampling.seed
    if sampling.HasField("presence_penalty"):
        out["presence_penalty"] = sampling.presence_penalty
    if sampling.HasField("frequency_penalty"):
        out["frequency_penalty"] = sampling.frequency_penalty
    if sampling.HasField("top_k"):
        out["top_k"] = sampling.top_k
    effort = REASONING_EFFORTS.get(sampling.reasoning_effort)
    if effort is not None:
        out["reasoning_effort"] = effort
    return out


def _response_format(response_format: inference_pb2.ResponseFormat) -> Json | None:
    which = response_format.WhichOneof("format")
    if which == "text":
        return {"type": "text"}
    if which == "json_object":
        return {"type": "json_object"}
    if which == "json_schema":
        spec = response_format.json_schema
        schema: Json = {"name": spec.name}
        if spec.description:
            schema["description"] = spec.description
        schema["schema"] = struct_to_dict(spec.schema)
        schema["strict"] = spec.strict
        return {"type": "json_schema", "json_schema": schema}
    return None
