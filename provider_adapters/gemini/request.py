"""llmgw ``CompletionRequest`` -> Gemini ``generateContent`` request body.

Mapping (https://ai.google.dev/api/generate-content):

* system and developer messages become ``systemInstruction`` text parts;
* user turns have role ``user``, assistant turns role ``model``; tool results
  are ``functionResponse`` parts of a ``user`` turn (named after the call they
  answer, found earlier in the conversation); consecutive turns of the same
  role are merged;
* images: data URLs as ``inlineData``, other URLs as ``fileData`` with a media
  type guessed from the path;
* a tool result whose text is a JSON object is sent as the ``response``
  object itself, any other text as ``{"output": <text>}``;
* tool parameters and output schemas are sent as JSON Schema
  (``parametersJsonSchema``, ``responseJsonSchema``);
* ``parallel_tool_calls`` and reasoning effort have no equivalent and are not sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import ProviderBadRequest
from provider_adapters.gemini.identity import PROVIDER
from provider_adapters.struct_json import struct_to_dict
from provider_adapters.support.conversation import message_text, tool_call_names
from provider_adapters.support.images import guess_media_type, inline_image
from provider_adapters.support.json_values import Json, arguments_object

_MODES: Mapping[int, str] = {
    inference_pb2.TOOL_CHOICE_MODE_AUTO: "AUTO",
    inference_pb2.TOOL_CHOICE_MODE_REQUIRED: "ANY",
    inference_pb2.TOOL_CHOICE_MODE_NONE: "NONE",
}
_INSTRUCTION_ROLES = {common_pb2.ROLE_SYSTEM, common_pb2.ROLE_DEVELOPER}


def generate_body(request: inference_pb2.CompletionRequest) -> Json:
    """The ``generateContent`` / ``streamGenerateContent`` body for ``request``."""
    body: Json = {"contents": _contents(request.messages)}
    instructions = [
        {"text": part.text}
        for message in request.messages
        if message.role in _INSTRUCTION_ROLES
        for part in message.content
        if part.WhichOneof("part") == "text" and part.text
    ]
    if instructions:
        body["systemInstruction"] = {"parts": instructions}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        config = _calling_config(request.tool_choice)
        if config:
            body["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(request)
    if generation:
        body["generationConfig"] = generation
    return body


def _contents(messages: Iterable[inference_pb2.Message]) -> list[Json]:
    history = list(messages)
    names = tool_call_names(history)
    contents: list[Json] = []
    for message in history:
        if message.role in _INSTRUCTION_ROLES:
            continue
        role, parts = _content(message, names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _content(message: inference_pb2.Message, names: Mapping[str, str]) -> tuple[str, list[Json]]:
    if message.role == common_pb2.ROLE_USER:
        return "user", _parts(message)
    if message.role == common_pb2.ROLE_ASSISTANT:
        parts = _parts(message)
        parts.extend(_function_call(call) for call in message.tool_calls)
        return "model", parts
    if message.role == common_pb2.ROLE_TOOL:
        return "user", [_function_response(message, names)]
    raise ProviderBadRequest("every message needs a role", provider=PROVIDER)


def _parts(message: inference_pb2.Message) -> list[Json]:
    parts: list[Json] = []
    for part in message.content:
        kind = part.WhichOneof("part")
        if kind == "text" and part.text:
            parts.append({"text": part.text})
        elif kind == "image_url":
            parts.append(_image(part.image_url.url))
    return parts


def _image(url: str) -> Json:
    image = inline_image(url, provider=PROVIDER)
    if image is not None:
        return {"inlineData": {"mimeType": image.media_type, "data": image.data}}
    return {"fileData": {"mimeType": guess_media_type(url), "fileUri": url}}


def _function_call(call: inference_pb2.ToolCall) -> Json:
    if call.WhichOneof("call") != "function":
        raise ProviderBadRequest(f"tool call {call.id!r} is not a function call", provider=PROVIDER)
    arguments = arguments_object(call.function.arguments, provider=PROVIDER, call_id=call.id)
    function_call: Json = {"name": call.function.name, "args": arguments}
    if call.id:
        function_call["id"] = call.id
    return {"functionCall": function_call}


def _function_response(message: inference_pb2.Message, names: Mapping[str, str]) -> Json:
    name = names.get(message.tool_call_id)
    if name is None:
        raise ProviderBadRequest(
            f"tool message answers unknown call {message.tool_call_id!r};"
            " gemini needs the function name of the call",
            provider=PROVIDER,
        )
    text = message_text(message)
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    response = decoded if isinstance(decoded, dict) else {"output": text}
    return {"functionResponse": {"id": message.tool_call_id, "name": name, "response": response}}


def _declaration(tool: inference_pb2.Tool) -> Json:
    function = tool.function
    declaration: Json = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    if function.HasField("parameters"):
        declaration["parametersJsonSchema"] = struct_to_dict(function.parameters)
    return declaration


def _calling_config(choice: inference_pb2.ToolChoice) -> Json:
    kind = choice.WhichOneof("choice")
    if kind == "function_name":
        return {"mode": "ANY", "allowedFunctionNames": [choice.function_name]}
    if kind == "mode" and choice.mode in _MODES:
        return {"mode": _MODES[choice.mode]}
    return {}


def _generation_config(request: inference_pb2.CompletionRequest) -> Json:
    sampling = request.sampling
    config: Json = {}
    if sampling.HasField("temperature"):
        config["temperature"] = sampling.temperature
    if sampling.HasField("top_p"):
        config["topP"] = sampling.top_p
    if sampling.HasField("top_k"):
        config["topK"] = sampling.top_k
    if sampling.HasField("max_output_tokens"):
        config["maxOutputTokens"] = sampling.max_output_tokens
    if sampling.stop:
        config["stopSequences"] = list(sampling.stop)
    if sampling.HasField("seed"):
        config["seed"] = sampling.seed
    if sampling.HasField("presence_penalty"):
        config["presencePenalty"] = sampling.presence_penalty
    if sampling.HasField("frequency_penalty"):
        config["frequencyPenalty"] = sampling.frequency_penalty
    output = request.response_format
    kind = output.WhichOneof("format")
    if kind in {"json_object", "json_schema"}:
        config["responseMimeType"] = "application/json"
    if kind == "json_schema" and output.json_schema.HasField("schema"):
        config["responseJsonSchema"] = struct_to_dict(output.json_schema.schema)
    return config
