"""llmgw ``CompletionRequest`` -> Ollama ``POST /api/chat`` body (native API).

Mapping (https://docs.ollama.com/api/chat):

* system and developer messages are ``system`` messages, in place;
* assistant tool calls are ``tool_calls`` with ``arguments`` as a JSON object;
  tool results are ``tool`` messages with ``tool_call_id`` and the ``tool_name``
  of the call they answer;
* images must be inline: data URLs become base64 ``images``; an image URL
  raises :class:`UnsupportedOperation` (the native API cannot fetch URLs);
* ``json_schema`` output sends the schema as ``format``, ``json_object`` sends
  ``"json"``;
* sampling goes to ``options`` (``num_predict`` for max output tokens);
* tool choice ``none`` leaves the tools out; ``required`` or a named function
  cannot be enforced by Ollama and raise :class:`UnsupportedOperation`;
  ``parallel_tool_calls`` and reasoning effort are not sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import ProviderBadRequest, UnsupportedOperation
from provider_adapters.ollama.identity import PROVIDER
from provider_adapters.struct_json import struct_to_dict
from provider_adapters.support.conversation import message_text, tool_call_names
from provider_adapters.support.images import inline_image
from provider_adapters.support.json_values import Json, arguments_object

_ROLES: Mapping[int, str] = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_DEVELOPER: "system",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
    common_pb2.ROLE_TOOL: "tool",
}


def chat_body(
    request: inference_pb2.CompletionRequest,
    *,
    model: str,
    stream: bool,
    runner_options: Json,
    keep_alive: str | None,
) -> Json:
    """The ``/api/chat`` body; ``runner_options`` (e.g. ``num_ctx``) join the sampling."""
    names = tool_call_names(request.messages)
    body: Json = {
        "model": model,
        "messages": [_message(message, names) for message in request.messages],
        "stream": stream,
    }
    if request.tools and _tools_allowed(request.tool_choice):
        body["tools"] = [_tool(tool) for tool in request.tools]
    output = _format(request.response_format)
    if output is not None:
        body["format"] = output
    options = {**_sampling(request.sampling), **runner_options}
    if options:
        body["options"] = options
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    return body


def _message(message: inference_pb2.Message, names: Mapping[str, str]) -> Json:
    role = _ROLES.get(message.role)
    if role is None:
        raise ProviderBadRequest("every message needs a role", provider=PROVIDER)
    result: Json = {"role": role, "content": message_text(message)}
    images = [_image(part.image_url.url) for part in message.content if part.HasField("image_url")]
    if images:
        result["images"] = images
    if message.tool_calls:
        result["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
    if message.role == common_pb2.ROLE_TOOL and message.tool_call_id:
        result["tool_call_id"] = message.tool_call_id
        if message.tool_call_id in names:
            result["tool_name"] = names[message.tool_call_id]
    return result


def _image(url: str) -> str:
    image = inline_image(url, provider=PROVIDER)
    if image is None:
        raise UnsupportedOperation(
            "ollama accepts only inline (base64 data URL) images, not image URLs",
            provider=PROVIDER,
        )
    return image.data


def _tool_call(call: inference_pb2.ToolCall) -> Json:
    if call.WhichOneof("call") != "function":
        raise ProviderBadRequest(f"tool call {call.id!r} is not a function call", provider=PROVIDER)
    arguments = arguments_object(call.function.arguments, provider=PROVIDER, call_id=call.id)
    entry: Json = {"function": {"name": call.function.name, "arguments": arguments}}
    if call.id:
        entry["id"] = call.id
    return entry


def _tool(tool: inference_pb2.Tool) -> Json:
    function = tool.function
    definition: Json = {"name": function.name}
    if function.description:
        definition["description"] = function.description
    if function.HasField("parameters"):
        definition["parameters"] = struct_to_dict(function.parameters)
    return {"type": "function", "function": definition}


def _tools_allowed(choice: inference_pb2.ToolChoice) -> bool:
    kind = choice.WhichOneof("choice")
    if kind == "function_name" or (
        kind == "mode" and choice.mode == inference_pb2.TOOL_CHOICE_MODE_REQUIRED
    ):
        raise UnsupportedOperation(
            "ollama cannot be made to call a tool (tool choice required or named)",
            provider=PROVIDER,
        )
    return not (kind == "mode" and choice.mode == inference_pb2.TOOL_CHOICE_MODE_NONE)


def _format(output: inference_pb2.ResponseFormat) -> Json | str | None:
    kind = output.WhichOneof("format")
    if kind == "json_schema" and output.json_schema.HasField("schema"):
        return struct_to_dict(output.json_schema.schema)
    if kind in {"json_object", "json_schema"}:
        return "json"
    return None


def _sampling(sampling: inference_pb2.SamplingParameters) -> Json:
    options: Json = {}
    if sampling.HasField("temperature"):
        options["temperature"] = sampling.temperature
    if sampling.HasField("top_p"):
        options["top_p"] = sampling.top_p
    if sampling.HasField("top_k"):
        options["top_k"] = sampling.top_k
    if sampling.HasField("max_output_tokens"):
        options["num_predict"] = sampling.max_output_tokens
    if sampling.stop:
        options["stop"] = list(sampling.stop)
    if sampling.HasField("seed"):
        options["seed"] = sampling.seed
    if sampling.HasField("presence_penalty"):
        options["presence_penalty"] = sampling.presence_penalty
    if sampling.HasField("frequency_penalty"):
        options["frequency_penalty"] = sampling.frequency_penalty
    return options
