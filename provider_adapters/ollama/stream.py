"""Ollama streamed ``/api/chat`` (NDJSON) -> llmgw stream events.

Each line is one chat object whose ``message.content`` (and ``thinking``) is the
next piece; tool calls arrive whole. The line with ``done: true`` ends the
stream and carries ``done_reason`` and the token counts. An ``{"error": ...}``
line raises the mapped error.
"""

from __future__ import annotations

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import StreamEvent
from provider_adapters.errors import MalformedResponse
from provider_adapters.ollama.errors import stream_error
from provider_adapters.ollama.identity import PROVIDER
from provider_adapters.ollama.response import ChatView, finish_reason, read_chat, usage_from
from provider_adapters.support.json_values import Json


class StreamTranslator:
    """Turns one stream's lines into chunks, then :meth:`result` once the body ended.

    :attr:`done` is true from the ``done`` line on; later lines are ignored.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._tool_calls = 0
        self._role_sent = False
        self._final: ChatView | None = None
        self.done = False

    def feed(self, payload: Json) -> list[StreamEvent]:
        """The llmgw events of one NDJSON object."""
        if self.done:
            return []
        error = stream_error(payload)
        if error is not None:
            raise error
        view = read_chat(payload)
        if view.model:
            self._model = view.model
        events: list[StreamEvent] = []
        chunk = inference_pb2.CompletionChunk(
            text_delta=view.content, reasoning_delta=view.thinking
        )
        for call in view.calls:
            chunk.tool_call_deltas.add(
                index=self._tool_calls,
                id=call.call_id,
                function_name=call.name,
                arguments_delta=call.arguments,
            )
            self._tool_calls += 1
        if chunk != inference_pb2.CompletionChunk():
            if not self._role_sent:
                chunk.role = common_pb2.ROLE_ASSISTANT
                self._role_sent = True
            events.append(chunk)
        if view.done:
            self.done = True
            self._final = view
        return events

    def result(self) -> inference_pb2.CompletionResult:
        """The final result; raises :class:`MalformedResponse` before the ``done`` line."""
        if self._final is None:
            raise MalformedResponse("ollama stream ended before its done line", provider=PROVIDER)
        return inference_pb2.CompletionResult(
            finish_reason=finish_reason(self._final.done_reason, self._tool_calls > 0),
            usage=usage_from(self._final.usage),
            served_by=common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=self._model),
        )
