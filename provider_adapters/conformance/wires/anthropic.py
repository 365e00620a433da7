"""Anthropic's wire format for the conformance kit: the Messages API and its errors.

Bodies are compact JSON with UTF-8 text unescaped. A stream is Server-Sent
Events with an ``event:`` line naming each type: ``message_start`` (input usage),
``content_block_start``/``content_block_delta``/``content_block_stop`` per block,
a ``ping``, ``message_delta`` (stop reason, output usage) and ``message_stop``.
``usage.input_tokens`` counts only uncached input, so the cache reads and
writes of a :class:`UsageSpec` are reported beside it. Every answer carries a
``request-id`` header; 429 carries ``retry-after``; overload is 529
``overloaded_error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from provider_adapters.base import Capability, Deployment, Secret, Timeouts
from provider_adapters.conformance.fake_server import RecordedRequest
from provider_adapters.conformance.wire import ErrorCase, ToolCallSpec, UsageSpec, WireReply
from provider_adapters.conformance.wire_hooks import Operation
from provider_adapters.conformance.wires.framing import compact, pieces_of

Json = dict[str, Any]

MODEL = "claude-sonnet-4-5"
SNAPSHOT = "claude-sonnet-4-5-20250929"
MESSAGE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
REQUEST_ID = "req_011CSHoEeqs5C35K2UUqR7Fy"
API_KEY = "sk-ant-api03-conformance-0123456789abcdef"
API_VERSION = "2023-06-01"

JSON_HEADERS: Mapping[str, str] = {
    "content-type": "application/json",
    "request-id": REQUEST_ID,
    "anthropic-organization-id": "0b1c2d3e-conformance",
}
SSE_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "request-id": REQUEST_ID,
}

_ERRORS: Mapping[ErrorCase, tuple[str, str]] = {
    ErrorCase.BAD_REQUEST: ("invalid_request_error", "temperature: range: 0..1"),
    ErrorCase.CONTEXT_WINDOW: (
        "invalid_request_error",
        "prompt is too long: 208154 tokens > 200000 maximum",
    ),
    ErrorCase.UNAUTHORIZED: ("authentication_error", "invalid x-api-key"),
    ErrorCase.FORBIDDEN: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    ErrorCase.NOT_FOUND: ("not_found_error", f"model: {MODEL}"),
    ErrorCase.REQUEST_TIMEOUT: ("timeout_error", "Request timed out."),
    ErrorCase.CONFLICT: ("invalid_request_error", "A conflicting request is in progress."),
    ErrorCase.UNPROCESSABLE: (
        "invalid_request_error",
        "messages: at least one message is required",
    ),
    ErrorCase.RATE_LIMITED: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
    ),
    ErrorCase.INTERNAL: ("api_error", "Internal server error"),
    ErrorCase.BAD_GATEWAY: ("api_error", "Bad gateway"),
    ErrorCase.UNAVAILABLE: ("api_error", "Service unavailable"),
    ErrorCase.OVERLOADED: ("overloaded_error", "Overloaded"),
}


def sse(events: Sequence[Json]) -> bytes:
    """``event: <type>`` / ``data: {...}`` pairs, each ended by a blank line."""
    return b"".join(
        b"event: " + str(event["type"]).encode() + b"\ndata: " + compact(event) + b"\n\n"
        for event in events
    )


def usage_json(usage: UsageSpec, *, output_tokens: int | None = None) -> Json:
    """Anthropic's ``usage``: uncached input beside cache reads and writes."""
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_creation_input_tokens
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation_input_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


class AnthropicWire:
    """The Anthropic Messages API as the kit needs it (see the module docstring)."""

    provider: str = "anthropic"
    capabilities: frozenset[Capability] = frozenset({Capability.STREAMING, Capability.TOOLS})

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """The fake server standing in for ``https://api.anthropic.com``."""
        return Deployment(
            provider=self.provider,
            model=MODEL,
            base_url=base_url,
            api_key=Secret(API_KEY),
            timeouts=timeouts,
        )

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """``x-api-key`` and the ``anthropic-version`` every request needs."""
        assert deployment.api_key is not None
        return {"x-api-key": deployment.api_key.value, "anthropic-version": API_VERSION}

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        """Path, content type, and the body's model, system, messages and max_tokens."""
        assert request.method == "POST"
        assert request.target == "/v1/messages", request.target
        assert request.headers.get("content-type") == "application/json"
        assert request.headers.get("anthropic-version") == API_VERSION
        body = request.json()
        assert body["model"] == MODEL
        assert body["max_tokens"] == 64
        assert body["system"] == [{"type": "text", "text": "Answer briefly."}]
        assert [message["role"] for message in body["messages"]] == ["user"]
        for tool in body.get("tools", []):
            assert set(tool) <= {"name", "description", "input_schema"}
            assert tool["input_schema"]["type"] == "object"
        if operation is Operation.STREAM:
            assert body["stream"] is True
        else:
            assert "stream" not in body

    def text(self, text: str, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A message answering ``text`` with ``stop_reason: end_turn``."""
        if stream:
            blocks = [self._text_block(0, text)]
            return WireReply(200, sse(self._stream(blocks, "end_turn", usage)), SSE_HEADERS, True)
        content = [{"type": "text", "text": text}]
        return WireReply(200, compact(self._message(content, "end_turn", usage)), JSON_HEADERS)

    def tool_call(self, call: ToolCallSpec, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A message that says a word and calls ``call`` (``stop_reason: tool_use``)."""
        preface = "Checking."
        if stream:
            arguments = json.dumps(dict(call.arguments), ensure_ascii=False)
            tool_block = [
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {
                        "type": "tool_use",
                        "id": call.call_id,
                        "name": call.name,
                        "input": {},
                    },
                },
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": ""},
                },
                *(
                    {
                        "type": "content_block_delta",
                        "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
                    for piece in pieces_of(arguments, 5)
                ),
                {"type": "content_block_stop", "index": 1},
            ]
            blocks = [self._text_block(0, preface), tool_block]
            return WireReply(200, sse(self._stream(blocks, "tool_use", usage)), SSE_HEADERS, True)
        content: list[Json] = [
            {"type": "text", "text": preface},
            {"type": "tool_use", "id": call.call_id, "name": call.name, "input": call.arguments},
        ]
        return WireReply(200, compact(self._message(content, "tool_use", usage)), JSON_HEADERS)

    def truncated_stream(self, text: str) -> WireReply:
        """``message_start`` and the text deltas, then the body ends: no ``message_stop``."""
        events = [self._message_start(UsageSpec()), *self._text_block(0, text)[:-1]]
        return WireReply(200, sse(events), SSE_HEADERS, streaming=True)

    def malformed_stream(self) -> WireReply:
        """Proper SSE framing around a ``data:`` payload cut off mid-object."""
        body = sse([self._message_start(UsageSpec())])
        body += b'event: content_block_start\ndata: {"type":"content_block_start","ind\n\n'
        return WireReply(200, body, SSE_HEADERS, streaming=True)

    def failure_mid_stream(self, text: str) -> WireReply:
        """The text block under way, then an ``error`` event: the API is overloaded."""
        events = [self._message_start(UsageSpec()), {"type": "ping"}]
        events += self._text_block(0, text)[:-1]
        events.append(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
        return WireReply(200, sse(events), SSE_HEADERS, streaming=True)

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """Anthropic's error object, with ``request-id`` (and ``retry-after`` when given)."""
        kind, message = _ERRORS[case]
        headers = dict(JSON_HEADERS)
        if retry_after_seconds is not None:
            headers["retry-after"] = str(retry_after_seconds)
            headers["anthropic-ratelimit-requests-limit"] = "50"
            headers["anthropic-ratelimit-requests-remaining"] = "0"
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": REQUEST_ID,
        }
        return WireReply(case.http_status, compact(body), headers)

    def embeddings(self, vectors: Sequence[Sequence[float]], usage: UsageSpec) -> WireReply:
        """Anthropic has no embeddings API; the kit never asks (EMBEDDINGS is not declared)."""
        raise NotImplementedError("the Anthropic API offers no embeddings")

    def _message(self, content: list[Json], stop_reason: str, usage: UsageSpec) -> Json:
        return {
            "id": MESSAGE_ID,
            "type": "message",
            "role": "assistant",
            "model": SNAPSHOT,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage_json(usage),
        }

    def _message_start(self, usage: UsageSpec) -> Json:
        message = self._message([], "", usage)
        message["stop_reason"] = None
        message["usage"] = usage_json(usage, output_tokens=1)
        return {"type": "message_start", "message": message}

    def _text_block(self, index: int, text: str) -> list[Json]:
        return [
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
            *(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                }
                for piece in pieces_of(text, 3)
            ),
            {"type": "content_block_stop", "index": index},
        ]

    def _stream(self, blocks: list[list[Json]], stop_reason: str, usage: UsageSpec) -> list[Json]:
        events = [self._message_start(usage), {"type": "ping"}]
        for block in blocks:
            events.extend(block)
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": usage.output_tokens},
            }
        )
        events.append({"type": "message_stop"})
        return events
