"""llmgw ``CompletionRequest`` -> Anthropic Messages API request body.

Mapping (https://docs.anthropic.com/en/api/messages):

* system and developer messages, wherever they appear, become the top-level
  ``system`` text blocks, in order;
* user, assistant and tool messages become ``messages`` turns; tool results
  are ``tool_result`` blocks of a user turn and consecutive turns of the same
  role are merged (the API wants parallel tool results in one user turn);
* images: ``https`` URLs as ``{"type": "url"}`` sources, data URLs as base64;
* ``max_tokens`` is required: ``max_output_tokens`` or the deployment default;
* ``seed``, presence and frequency penalties and reasoning effort have no
  Messages API equivalent and are not sent; a JSON output format is refused
  with :class:`UnsupportedOperation`.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.anthropic.identity import PROVIDER
from provider_adapters.errors import ProviderBadRequest, UnsupportedOperation
from provider_adapters.struct_json import struct_to_dict
from provider_adapters.support.images import inline_image
from provider_adapters.support.json_values import Json, arguments_object

_TOOL_CHOICE_TYPES = {
    inference_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    inference_pb2.TOOL_CHOICE_MODE_REQUIRED: "any",
    inference_pb2.TOOL_CHOICE_MODE_NONE: "none",
}


def messages_body(
    request: inference_pb2.CompletionRequest, *, model: str, default_max_tokens: int
) -> Json:
    """The full ``POST /v1/messages`` body for ``request`` (``stream`` not set)."""
    body = conversation_body(request, model=model)
    sampling = request.sampling
    body["max_tokens"] = (
        sampling.max_output_tokens if sampling.HasField("max_output_tokens") else default_max_tokens
    )
    if sampling.HasField("temperature"):
        body["temperature"] = sampling.temperature
    if sampling.HasField("top_p"):
        body["top_p"] = sampling.top_p
    if sampling.HasField("top_k"):
        body["top_k"] = sampling.top_k
    if sampling.stop:
        body["stop_sequences"] = list(sampling.stop)
    if request.response_format.WhichOneof("format") in {"json_object", "json_schema"}:
        raise UnsupportedOperation(
            "the anthropic adapter does not offer JSON output formats", provider=PROVIDER
        )
    return body


def conversation_body(request: inference_pb2.CompletionRequest, *, model: str) -> Json:
    """Model, system, messages, tools and tool choice: what token counting also takes."""
    body: Json = {"model": model}
    system = [
        {"type": "text", "text": part.text}
        for message in request.messages
        if message.role in {common_pb2.ROLE_SYSTEM, common_pb2.ROLE_DEVELOPER}
        for part in message.content
        if part.WhichOneof("part") == "text" and part.text
    ]
    if system:
        body["system"] = system
    body["messages"] = _turns(request.messages)
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    return body


def _turns(messages: Iterable[inference_pb2.Message]) -> list[Json]:
    turns: list[Json] = []
    for message in messages:
        if message.role in {common_pb2.ROLE_SYSTEM, common_pb2.ROLE_DEVELOPER}:
            continue
        role, blocks = _turn(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _turn(message: inference_pb2.Message) -> tuple[str, list[Json]]:
    if message.role == common_pb2.ROLE_USER:
        return "user", _content_blocks(message)
    if message.role == common_pb2.ROLE_ASSISTANT:
        blocks = _content_blocks(message)
        blocks.extend(_tool_use(call) for call in message.tool_calls)
        return "assistant", blocks
    if message.role == common_pb2.ROLE_TOOL:
        result: Json = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        content = _content_blocks(message)
        if content:
            result["content"] = content
        return "user", [result]
    raise ProviderBadRequest("every message needs a role", provider=PROVIDER)


def _content_blocks(message: inference_pb2.Message) -> list[Json]:
    blocks: list[Json] = []
    for part in message.content:
        kind = part.WhichOneof("part")
        if kind == "text" and part.text:
            blocks.append({"type": "text", "text": part.text})
        elif kind == "image_url":
            blocks.append({"type": "image", "source": _image_source(part.image_url.url)})
    return blocks


def _image_source(url: str) -> Json:
    image = inline_image(url, provider=PROVIDER)
    if image is not None:
        return {"type": "base64", "media_type": image.media_type, "data": image.data}
    return {"type": "url", "url": url}


def _tool_use(call: inference_pb2.ToolCall) -> Json:
    if call.WhichOneof("call") != "function":
        raise ProviderBadRequest(f"tool call {call.id!r} is not a function call", provider=PROVIDER)
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.function.name,
        "input": arguments_object(call.function.arguments, provider=PROVIDER, call_id=call.id),
    }


def _tool(tool: inference_pb2.Tool) -> Json:
    function = tool.function
    definition: Json = {"name": function.name}
    if function.description:
        definition["description"] = function.description
    schema = struct_to_dict(function.parameters) if function.HasField("parameters") else {}
    definition["input_schema"] = schema or {"type": "object", "properties": {}}
    return definition


def _tool_choice(request: inference_pb2.CompletionRequest) -> Json | None:
    choice = request.tool_choice
    kind = choice.WhichOneof("choice")
    result: Json | None = None
    if kind == "function_name":
        result = {"type": "tool", "name": choice.function_name}
    elif kind == "mode" and choice.mode in _TOOL_CHOICE_TYPES:
        result = {"type": _TOOL_CHOICE_TYPES[choice.mode]}
    if request.HasField("parallel_tool_calls") and not request.parallel_tool_calls:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result
