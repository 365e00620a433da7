"""OpenAI answers to llmgw messages: completions, stream chunks, usage, embeddings.

Anything that does not have the shape OpenAI documents (no ``choices``, a
``message`` that is not an object, a token count that is not an integer...)
raises :class:`~provider_adapters.errors.MalformedResponse`. Unknown extra fields
are ignored. ``reasoning_content`` (vLLM, DeepSeek) and ``reasoning`` (Groq,
Ollama) are read as the visible reasoning text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import CompletionResult, EmbedResponse
from provider_adapters.errors import MalformedResponse, ProviderServerError
from provider_adapters.support.usage import provider_usage

Json = dict[str, Any]
FinishReason: TypeAlias = common_pb2.FinishReason.ValueType

FINISH_REASONS: Mapping[str, FinishReason] = {
    "stop": common_pb2.FINISH_REASON_STOP,
    "length": common_pb2.FINISH_REASON_LENGTH,
    "tool_calls": common_pb2.FINISH_REASON_TOOL_CALLS,
    "function_call": common_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": common_pb2.FINISH_REASON_CONTENT_FILTER,
}

REASONING_FIELDS = ("reasoning_content", "reasoning")


class Shape:
    """Typed reads of decoded JSON for one provider; wrong shapes are MalformedResponse."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def malformed(self, what: str) -> MalformedResponse:
        """The error for an answer that lacks what it must have."""
        return MalformedResponse(
            f"{self.provider} answer is malformed: {what}", provider=self.provider
        )

    def obj(self, parent: Json, key: str) -> Json:
        """``parent[key]``, which must be an object."""
        value = parent.get(key)
        if not isinstance(value, dict):
            raise self.malformed(f"{key!r} is not an object")
        return value

    def opt_obj(self, parent: Json, key: str) -> Json:
        """``parent[key]`` if it is an object; an empty object if missing or null."""
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.malformed(f"{key!r} is not an object")
        return value

    def objects(self, parent: Json, key: str) -> list[Json]:
        """``parent[key]`` as a list of objects; missing or null is empty."""
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.malformed(f"{key!r} is not a list of objects")
        return value

    def text(self, parent: Json, key: str) -> str:
        """``parent[key]`` as a string; missing or null is empty."""
        value = parent.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.malformed(f"{key!r} is not a string")
        return value

    def count(self, parent: Json, key: str) -> int:
        """``parent[key]`` as a non-negative integer; missing or null is 0."""
        value = parent.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.malformed(f"{key!r} is not a token count")
        return value


def finish_reason(value: object) -> FinishReason:
    """llmgw's finish reason for OpenAI's ``finish_reason`` (unknown values: unspecified)."""
    if isinstance(value, str):
        return FINISH_REASONS.get(value, common_pb2.FINISH_REASON_UNSPECIFIED)
    return common_pb2.FINISH_REASON_UNSPECIFIED


def usage(shape: Shape, raw: Json) -> common_pb2.Usage:
    """OpenAI's ``usage`` object as llmgw usage reported by the provider."""
    return provider_usage(
        shape.count(raw, "prompt_tokens"),
        shape.count(raw, "completion_tokens"),
        cached_input_tokens=shape.count(
            shape.opt_obj(raw, "prompt_tokens_details"), "cached_tokens"
        ),
        reasoning_tokens=shape.count(
            shape.opt_obj(raw, "completion_tokens_details"), "reasoning_tokens"
        ),
    )


def reasoning_text(shape: Shape, message: Json) -> str:
    """The visible reasoning of a message or delta, under either common field name."""
    for key in REASONING_FIELDS:
        text = shape.text(message, key)
        if text:
            return text
    return ""


def completion_result(shape: Shape, body: Json) -> CompletionResult:
    """A whole Chat Completions answer as a result with its message filled in."""
    choices = shape.objects(body, "choices")
    if not choices:
        raise shape.malformed("no choices")
    choice = choices[0]
    raw = shape.obj(choice, "message")
    message = inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT)
    content = shape.text(raw, "content")
    if content:
        message.content.append(inference_pb2.ContentPart(text=content))
    message.refusal = shape.text(raw, "refusal")
    message.reasoning_text = reasoning_text(shape, raw)
    for call in shape.objects(raw, "tool_calls"):
        function = shape.obj(call, "function")
        message.tool_calls.append(
            inference_pb2.ToolCall(
                id=shape.text(call, "id"),
                function=inference_pb2.FunctionCall(
                    name=shape.text(function, "name"),
                    arguments=shape.text(function, "arguments"),
                ),
            )
        )
    result = inference_pb2.CompletionResult(
        message=message, finish_reason=finish_reason(choice.get("finish_reason"))
    )
    if body.get("usage") is not None:
        result.usage.CopyFrom(usage(shape, shape.obj(body, "usage")))
    result.served_by.provider_model_id = shape.text(body, "model")
    return result


def embed_response(shape: Shape, body: Json) -> EmbedResponse:
    """An Embeddings answer, vectors in input order."""
    response = inference_pb2.EmbedResponse()
    items = sorted(shape.objects(body, "data"), key=lambda item: shape.count(item, "index"))
    for position, item in enumerate(items):
        vector = item.get("embedding")
        if not isinstance(vector, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in vector
        ):
            raise shape.malformed("an embedding is not a list of numbers")
        response.embeddings.append(inference_pb2.Embedding(index=position, values=vector))
    if body.get("usage") is not None:
        tokens = shape.count(shape.obj(body, "usage"), "prompt_tokens")
        response.usage.CopyFrom(provider_usage(tokens))
    response.served_by.provider_model_id = shape.text(body, "model")
    return response


class StreamState:
    """Turns ``chat.completion.chunk`` objects into deltas and, at the end, the result.

    Feed every decoded chunk to :meth:`deltas`; when ``[DONE]`` arrives call
    :meth:`result`. A stream that never said why it finished is malformed.
    """

    def __init__(self, shape: Shape) -> None:
        self._shape = shape
        self._finish: FinishReason | None = None
        self._usage: common_pb2.Usage | None = None
        self._model = ""

    def deltas(self, chunk: Json) -> list[inference_pb2.CompletionChunk]:
        """The llmgw chunks carried by one streamed object (often one, maybe none)."""
        shape = self._shape
        if chunk.get("error") is not None:
            error = shape.opt_obj(chunk, "error")
            raise ProviderServerError(
                f"{shape.provider} failed mid-stream: {shape.text(error, 'message')}",
                provider=shape.provider,
            )
        self._model = self._model or shape.text(chunk, "model")
        if chunk.get("usage") is not None:
            self._usage = usage(shape, shape.obj(chunk, "usage"))
        out: list[inference_pb2.CompletionChunk] = []
        for choice in shape.objects(chunk, "choices"):
            if shape.count(choice, "index") != 0:
                continue
            delta = self._delta(shape.opt_obj(choice, "delta"))
            if delta.ByteSize():
                out.append(delta)
            if choice.get("finish_reason") is not None:
                self._finish = finish_reason(choice["finish_reason"])
        return out

    def result(self) -> CompletionResult:
        """The stream's final message: finish reason and usage, message left empty."""
        if self._finish is None:
            raise self._shape.malformed("the stream ended without a finish reason")
        result = inference_pb2.CompletionResult(finish_reason=self._finish)
        if self._usage is not None:
            result.usage.CopyFrom(self._usage)
        result.served_by.provider_model_id = self._model
        return result

    def _delta(self, raw: Json) -> inference_pb2.CompletionChunk:
        shape = self._shape
        chunk = inference_pb2.CompletionChunk(
            text_delta=shape.text(raw, "content"),
            refusal_delta=shape.text(raw, "refusal"),
            reasoning_delta=reasoning_text(shape, raw),
        )
        if shape.text(raw, "role") == "assistant":
            chunk.role = common_pb2.ROLE_ASSISTANT
        for call in shape.objects(raw, "tool_calls"):
            function = shape.opt_obj(call, "function")
            chunk.tool_call_deltas.append(
                inference_pb2.ToolCallDelta(
                    index=shape.count(call, "index"),
                    id=shape.text(call, "id"),
                    function_name=shape.text(function, "name"),
                    arguments_delta=shape.text(function, "arguments"),
                )
            )
        return chunk
