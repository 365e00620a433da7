"""Gemini ``streamGenerateContent?alt=sse`` -> llmgw stream events.

Every SSE ``data:`` payload is a whole ``GenerateContentResponse`` holding the
next parts; function calls arrive complete, each becoming one tool-call delta.
The chunk that ends generation carries ``finishReason`` (or, for a blocked
prompt, ``promptFeedback.blockReason``); usage is taken from the last chunk
that reports it. The result is produced when the body ends, and only if a
terminal chunk was seen. An ``{"error": ...}`` payload raises the mapped error.
"""

from __future__ import annotations

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import StreamEvent
from provider_adapters.errors import MalformedResponse
from provider_adapters.gemini.errors import stream_error
from provider_adapters.gemini.identity import PROVIDER
from provider_adapters.gemini.response import (
    FunctionCallPart,
    ResponseView,
    finish_reason,
    read_response,
    usage_from,
)
from provider_adapters.http import SseEvent, parse_json_object


class StreamTranslator:
    """Turns one stream's chunks into llmgw chunks, then :meth:`result` at the end."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._terminal: ResponseView | None = None
        self._usage: ResponseView | None = None
        self._tool_calls = 0
        self._role_sent = False

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        """The llmgw chunks of one SSE event (none, or one with every delta it holds)."""
        payload = parse_json_object(event.data, PROVIDER)
        error = stream_error(payload)
        if error is not None:
            raise error
        view = read_response(payload)
        if view.model_version:
            self._model = view.model_version
        if view.usage is not None:
            self._usage = view
        if view.terminal:
            self._terminal = view
        chunk = inference_pb2.CompletionChunk()
        for piece in view.pieces:
            if isinstance(piece, FunctionCallPart):
                chunk.tool_call_deltas.add(
                    index=self._tool_calls,
                    id=piece.call_id,
                    function_name=piece.name,
                    arguments_delta=piece.arguments,
                )
                self._tool_calls += 1
            elif piece[1]:
                chunk.reasoning_delta += piece[0]
            else:
                chunk.text_delta += piece[0]
        if chunk == inference_pb2.CompletionChunk():
            return []
        if not self._role_sent:
            chunk.role = common_pb2.ROLE_ASSISTANT
            self._role_sent = True
        return [chunk]

    def result(self) -> inference_pb2.CompletionResult:
        """The final result; raises :class:`MalformedResponse` if no chunk ended generation."""
        if self._terminal is None:
            raise MalformedResponse("gemini stream ended without a finishReason", provider=PROVIDER)
        usage = self._usage.usage if self._usage is not None else None
        return inference_pb2.CompletionResult(
            finish_reason=finish_reason(self._terminal, called_functions=self._tool_calls > 0),
            usage=usage_from(usage),
            served_by=common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=self._model),
        )
