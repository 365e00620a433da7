"""Anthropic Messages API server-sent events -> llmgw stream events.

The stream is ``message_start``, then per content block ``content_block_start``,
``content_block_delta``... and ``content_block_stop``, then ``message_delta``
(stop reason, output usage) and ``message_stop``; ``ping`` may come anywhere
and an ``error`` event ends the stream with an error. Tool calls are numbered
in order of appearance (the content-block index also counts text blocks).
Event types this module does not know are skipped, as the API asks.
"""

from __future__ import annotations

from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.anthropic.errors import stream_error
from provider_adapters.anthropic.identity import PROVIDER
from provider_adapters.anthropic.response import finish_reason, usage_from
from provider_adapters.base import StreamEvent
from provider_adapters.errors import MalformedResponse
from provider_adapters.http import SseEvent, parse_json_object
from provider_adapters.support.json_values import Json, arguments_text


class StreamTranslator:
    """Turns one stream's events into chunks, then :meth:`result` once the body ended.

    :attr:`done` is true from ``message_stop`` on; later events are ignored.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._usage: dict[str, Any] = {}
        self._stop_reason: Any = None
        self._tool_index_by_block: dict[int, int] = {}
        self._blocks_with_arguments: set[int] = set()
        self._role_sent = False
        self.done = False

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        """The llmgw events for one SSE event; raises the provider's in-stream errors."""
        if self.done:
            return []
        payload = parse_json_object(event.data, PROVIDER)
        kind = payload.get("type", event.event)
        if kind == "message_start":
            self._message_start(payload)
        elif kind == "content_block_start":
            return self._chunks(self._block_start(payload))
        elif kind == "content_block_delta":
            return self._chunks(self._block_delta(payload))
        elif kind == "content_block_stop":
            return self._chunks(self._block_stop(payload))
        elif kind == "message_delta":
            self._message_delta(payload)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise stream_error(payload)
        return []

    def _message_start(self, payload: Json) -> None:
        message = _object(payload.get("message"), "message_start.message")
        self._model = str(message.get("model") or self._model)
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage.update(usage)

    def _message_delta(self, payload: Json) -> None:
        delta = payload.get("delta")
        if isinstance(delta, dict) and "stop_reason" in delta:
            self._stop_reason = delta["stop_reason"]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            # message_delta usage is cumulative; absent or null fields keep message_start's.
            self._usage.update({key: value for key, value in usage.items() if value is not None})

    def _block_start(self, payload: Json) -> inference_pb2.CompletionChunk | None:
        index = _block_index(payload)
        block = _object(payload.get("content_block"), "content_block_start.content_block")
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return inference_pb2.CompletionChunk(text_delta=str(block["text"]))
        if kind == "thinking" and block.get("thinking"):
            return inference_pb2.CompletionChunk(reasoning_delta=str(block["thinking"]))
        if kind != "tool_use":
            return None
        tool_index = len(self._tool_index_by_block)
        self._tool_index_by_block[index] = tool_index
        delta = inference_pb2.ToolCallDelta(
            index=tool_index, id=str(block.get("id", "")), function_name=str(block.get("name", ""))
        )
        if block.get("input"):
            delta.arguments_delta = arguments_text(block["input"])
            self._blocks_with_arguments.add(index)
        return inference_pb2.CompletionChunk(tool_call_deltas=[delta])

    def _block_delta(self, payload: Json) -> inference_pb2.CompletionChunk | None:
        index = _block_index(payload)
        delta = _object(payload.get("delta"), "content_block_delta.delta")
        kind = delta.get("type")
        if kind == "text_delta":
            return inference_pb2.CompletionChunk(text_delta=str(delta.get("text", "")))
        if kind == "thinking_delta":
            return inference_pb2.CompletionChunk(reasoning_delta=str(delta.get("thinking", "")))
        if kind == "input_json_delta" and index in self._tool_index_by_block:
            partial = str(delta.get("partial_json", ""))
            if not partial:
                return None
            self._blocks_with_arguments.add(index)
            return self._arguments(index, partial)
        return None

    def _block_stop(self, payload: Json) -> inference_pb2.CompletionChunk | None:
        index = _block_index(payload)
        if index in self._tool_index_by_block and index not in self._blocks_with_arguments:
            # A call without arguments streams no JSON at all; say "{}" like complete() does.
            self._blocks_with_arguments.add(index)
            return self._arguments(index, "{}")
        return None

    def _arguments(self, index: int, text: str) -> inference_pb2.CompletionChunk:
        delta = inference_pb2.ToolCallDelta(
            index=self._tool_index_by_block[index], arguments_delta=text
        )
        return inference_pb2.CompletionChunk(tool_call_deltas=[delta])

    def _chunks(self, chunk: inference_pb2.CompletionChunk | None) -> list[StreamEvent]:
        if chunk is None:
            return []
        if not self._role_sent:
            chunk.role = common_pb2.ROLE_ASSISTANT
            self._role_sent = True
        return [chunk]

    def result(self) -> inference_pb2.CompletionResult:
        """The final result; raises :class:`MalformedResponse` before ``message_stop``."""
        if not self.done:
            raise MalformedResponse("anthropic stream ended before message_stop", provider=PROVIDER)
        return inference_pb2.CompletionResult(
            finish_reason=finish_reason(self._stop_reason),
            usage=usage_from(self._usage),
            served_by=common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=self._model),
        )


def _object(value: Any, what: str) -> Json:
    if not isinstance(value, dict):
        raise MalformedResponse(f"anthropic stream: {what} is not an object", provider=PROVIDER)
    return value


def _block_index(payload: Json) -> int:
    index = payload.get("index")
    if not isinstance(index, int):
        raise MalformedResponse("anthropic stream: content block without index", provider=PROVIDER)
    return index
