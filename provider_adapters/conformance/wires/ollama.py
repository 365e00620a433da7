"""Ollama's native wire format for the conformance kit: ``/api/chat`` and ``/api/embed``.

Bodies are compact JSON with UTF-8 text unescaped, keys in the order the
server writes them. A stream
(``application/x-ndjson``) is one chat object per line, each with the next
``message.content`` piece and ``done: false``; the last line has ``done: true``,
``done_reason`` and the token counts. Tool calls arrive whole, with arguments
as an object. Errors are ``{"error": "<message>"}``. The deployment carries an
API key, as for ollama.com or a server behind an authenticating proxy, sent as
a bearer token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from provider_adapters.base import Capability, Deployment, Secret, Timeouts
from provider_adapters.conformance.fake_server import RecordedRequest
from provider_adapters.conformance.wire import ErrorCase, ToolCallSpec, UsageSpec, WireReply
from provider_adapters.conformance.wire_hooks import Operation
from provider_adapters.conformance.wires.framing import (
    HTML_HEADERS,
    compact,
    pieces_of,
    proxy_502_page,
)

Json = dict[str, Any]

MODEL = "llama3.2"
CREATED_AT = "2026-01-15T10:24:31.518422Z"
API_KEY = "ollama-conformance-0123456789abcdef"

JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json; charset=utf-8"}
NDJSON_HEADERS: Mapping[str, str] = {"content-type": "application/x-ndjson"}

_ERRORS: Mapping[ErrorCase, str] = {
    ErrorCase.BAD_REQUEST: "invalid options: temperature must be a number",
    ErrorCase.CONTEXT_WINDOW: "the input length exceeds the context length",
    ErrorCase.UNAUTHORIZED: "unauthorized",
    ErrorCase.FORBIDDEN: "forbidden",
    ErrorCase.NOT_FOUND: f'model "{MODEL}" not found, try pulling it first',
    ErrorCase.REQUEST_TIMEOUT: "request timed out",
    ErrorCase.CONFLICT: "model is being modified, try again",
    ErrorCase.UNPROCESSABLE: "messages: invalid role",
    ErrorCase.RATE_LIMITED: "too many requests",
    ErrorCase.INTERNAL: "llama runner process has terminated: exit status 2",
    ErrorCase.UNAVAILABLE: "server busy, please try again. maximum pending requests exceeded",
    ErrorCase.OVERLOADED: "server overloaded",
}


def ndjson(objects: Sequence[object]) -> bytes:
    """One JSON object per line."""
    return b"".join(compact(item) + b"\n" for item in objects)


def chat(message: Json, *, done: bool, usage: UsageSpec | None = None) -> Json:
    """One ``/api/chat`` object; the final one has the reason and counts.

    Keys come in the order Ollama's server writes them: ``done_reason`` before
    ``done``, the timings and counts after it.
    """
    body: Json = {"model": MODEL, "created_at": CREATED_AT, "message": message}
    if done and usage is not None:
        body["done_reason"] = "stop"
    body["done"] = done
    if done and usage is not None:
        body.update(
            {
                "total_duration": 4883583458,
                "load_duration": 1334875,
                "prompt_eval_count": usage.input_tokens,
                "prompt_eval_duration": 342546000,
                "eval_count": usage.output_tokens,
                "eval_duration": 4535599000,
            }
        )
    return body


def assistant(content: str, **extra: Any) -> Json:
    """An assistant ``message`` object."""
    return {"role": "assistant", "content": content, **extra}


class OllamaWire:
    """The Ollama native API as the kit needs it (see the module docstring)."""

    provider: str = "ollama"
    capabilities: frozenset[Capability] = frozenset(
        {Capability.STREAMING, Capability.TOOLS, Capability.EMBEDDINGS}
    )

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """The fake server standing in for ``http://localhost:11434``."""
        return Deployment(
            provider=self.provider,
            model=MODEL,
            base_url=base_url,
            api_key=Secret(API_KEY),
            timeouts=timeouts,
        )

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """``Authorization: Bearer <key>``."""
        assert deployment.api_key is not None
        return {"authorization": f"Bearer {deployment.api_key.value}"}

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        """Path, content type, and the body's model, stream flag, messages and options."""
        assert request.method == "POST"
        assert request.headers.get("content-type") == "application/json"
        body = request.json()
        assert body["model"] == MODEL
        if operation is Operation.EMBED:
            assert request.target == "/api/embed", request.target
            assert body["input"] == ["first", "second"]
            return
        assert request.target == "/api/chat", request.target
        assert body["stream"] is (operation is Operation.STREAM)
        assert body["messages"] == [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Say hello in three scripts."},
        ]
        assert body["options"]["num_predict"] == 64
        for tool in body.get("tools", []):
            assert tool["type"] == "function"
            assert tool["function"]["parameters"]["type"] == "object"

    def text(self, text: str, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A chat answering ``text`` with ``done_reason: stop``."""
        if stream:
            lines = [chat(assistant(piece), done=False) for piece in pieces_of(text, 3)]
            lines.append(chat(assistant(""), done=True, usage=usage))
            return WireReply(200, ndjson(lines), NDJSON_HEADERS, streaming=True)
        return WireReply(200, compact(chat(assistant(text), done=True, usage=usage)), JSON_HEADERS)

    def tool_call(self, call: ToolCallSpec, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A chat whose message calls ``call`` (Ollama still says ``stop``)."""
        calls = [
            {
                "id": call.call_id,
                "function": {"index": 0, "name": call.name, "arguments": dict(call.arguments)},
            }
        ]
        if stream:
            lines = [
                chat(assistant("", tool_calls=calls), done=False),
                chat(assistant(""), done=True, usage=usage),
            ]
            return WireReply(200, ndjson(lines), NDJSON_HEADERS, streaming=True)
        body = chat(assistant("", tool_calls=calls), done=True, usage=usage)
        return WireReply(200, compact(body), JSON_HEADERS)

    def truncated_stream(self, text: str) -> WireReply:
        """Content lines, then the body ends without a ``done: true`` line."""
        lines = [chat(assistant(piece), done=False) for piece in pieces_of(text, 3)]
        return WireReply(200, ndjson(lines), NDJSON_HEADERS, streaming=True)

    def malformed_stream(self) -> WireReply:
        """One good line, then a line cut off mid-object."""
        body = ndjson([chat(assistant("Hel"), done=False)])
        body += b'{"model":"llama3.2","created_at":"2026-01-15T10:24:31Z","mess\n'
        return WireReply(200, body, NDJSON_HEADERS, streaming=True)

    def failure_mid_stream(self, text: str) -> WireReply:
        """Content lines, then an ``{"error": ...}`` line: the model runner died."""
        lines: list[Json] = [chat(assistant(piece), done=False) for piece in pieces_of(text, 3)]
        lines.append({"error": "an error was encountered while running the model: unexpected EOF"})
        return WireReply(200, ndjson(lines), NDJSON_HEADERS, streaming=True)

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """``{"error": ...}`` with the status (and ``retry-after`` when given).

        A 502 comes from the proxy in front of the server: nginx's HTML page.
        """
        if case is ErrorCase.BAD_GATEWAY:
            return WireReply(502, proxy_502_page("nginx"), {**HTML_HEADERS, "server": "nginx"})
        headers = dict(JSON_HEADERS)
        if retry_after_seconds is not None:
            headers["retry-after"] = str(retry_after_seconds)
        return WireReply(case.http_status, compact({"error": _ERRORS[case]}), headers)

    def embeddings(self, vectors: Sequence[Sequence[float]], usage: UsageSpec) -> WireReply:
        """An ``/api/embed`` answer: one vector per input and the prompt token count."""
        body = {
            "model": MODEL,
            "embeddings": [list(vector) for vector in vectors],
            "total_duration": 14143917,
            "load_duration": 1019500,
            "prompt_eval_count": usage.input_tokens,
        }
        return WireReply(200, compact(body), JSON_HEADERS)
