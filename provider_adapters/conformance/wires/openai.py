"""OpenAI's wire format for the conformance kit: Chat Completions, Embeddings, errors.

Printed as OpenAI prints it (UTF-8 text unescaped): a whole answer is JSON
indented by two spaces, an error body by four, both ending in a newline; a
stream is Server-Sent Events of compact ``data:`` lines: the first chunk
carries the role (and, for a tool call, the call's id, name and empty
arguments), then content or argument deltas, a chunk with ``finish_reason``,
the usage chunk (empty ``choices``, asked for with
``stream_options.include_usage``) and ``data: [DONE]``. Errors carry
``x-request-id``; 429 carries ``retry-after``.

:class:`AzureOpenAIWire` is the wire of the ``azure`` flavour: it points the
deployment at the resource endpoint, checks the deployment path, the
``api-version`` query and the ``api-key`` header, and answers as Azure does:
compact JSON with sorted keys, a stream that opens with a ``prompt_filter_results``
chunk (empty ``choices``, empty ``model``), ``content_filter_results`` on every
choice, Azure's own bodies for 401, 404 and 429 (``code`` a string, no
``type``), and ``retry-after-ms`` beside ``retry-after``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from provider_adapters.base import Capability, Deployment, Secret, Timeouts
from provider_adapters.conformance.fake_server import RecordedRequest
from provider_adapters.conformance.wire import (
    ErrorCase,
    ToolCallSpec,
    UsageSpec,
    WireReply,
)
from provider_adapters.conformance.wire_hooks import Operation
from provider_adapters.conformance.wires.framing import (
    HTML_HEADERS,
    compact,
    pieces_of,
    pretty,
    proxy_502_page,
)

Json = dict[str, Any]

MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"
COMPLETION_ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
CREATED = 1741569952
FINGERPRINT = "fp_06737a9306"
REQUEST_ID = "req_7c3a1f1e2b9d4c5e8f0a1b2c3d4e5f60"
API_KEY = "sk-proj-conformance-0123456789abcdef"

JSON_HEADERS: Mapping[str, str] = {
    "content-type": "application/json",
    "openai-processing-ms": "312",
    "x-request-id": REQUEST_ID,
}
SSE_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "openai-processing-ms": "148",
    "x-request-id": REQUEST_ID,
}

_ERRORS: Mapping[ErrorCase, tuple[str, str, str | None, str | None]] = {
    ErrorCase.BAD_REQUEST: (
        "Invalid value for 'temperature': must be between 0 and 2.",
        "invalid_request_error",
        "temperature",
        "invalid_value",
    ),
    ErrorCase.CONTEXT_WINDOW: (
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    ),
    ErrorCase.UNAUTHORIZED: (
        "Incorrect API key provided: sk-proj-****cdef. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        "invalid_api_key",
    ),
    ErrorCase.FORBIDDEN: (
        "Country, region, or territory not supported",
        "request_forbidden",
        None,
        "unsupported_country_region_territory",
    ),
    ErrorCase.NOT_FOUND: (
        "The model `gpt-4o-mini` does not exist or you do not have access to it.",
        "invalid_request_error",
        None,
        "model_not_found",
    ),
    ErrorCase.REQUEST_TIMEOUT: ("Request timed out.", "timeout", None, None),
    ErrorCase.CONFLICT: (
        "Another request with the same idempotency key is in progress.",
        "invalid_request_error",
        None,
        "conflict",
    ),
    ErrorCase.UNPROCESSABLE: (
        "Unprocessable entity: 'messages' must contain at least one message.",
        "invalid_request_error",
        "messages",
        None,
    ),
    ErrorCase.RATE_LIMITED: (
        "Rate limit reached for gpt-4o-mini in organization org-conformance on requests "
        "per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 7s.",
        "requests",
        None,
        "rate_limit_exceeded",
    ),
    ErrorCase.INTERNAL: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    ),
    ErrorCase.UNAVAILABLE: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
        None,
    ),
    ErrorCase.OVERLOADED: ("The server is overloaded.", "server_error", None, "overloaded"),
}


ROLE_DELTA: Json = {"role": "assistant", "content": "", "refusal": None}
"""The delta of the first chunk of a text answer."""


def sse(chunks: Sequence[object], *, done: bool = True, sort_keys: bool = False) -> bytes:
    """``data: {...}`` events for ``chunks``, ended by ``data: [DONE]`` when ``done``."""
    events = [b"data: " + compact(chunk, sort_keys=sort_keys) + b"\n\n" for chunk in chunks]
    if done:
        events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def usage_json(usage: UsageSpec) -> Json:
    """OpenAI's ``usage`` object for ``usage``."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class OpenAIWire:
    """The OpenAI API as the kit needs it (see the module docstring)."""

    provider: str = "openai"
    capabilities: frozenset[Capability] = frozenset(
        {Capability.STREAMING, Capability.TOOLS, Capability.EMBEDDINGS}
    )

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """OpenAI's default flavour with ``base_url`` standing in for ``.../v1``."""
        return Deployment(
            provider=self.provider,
            model=MODEL,
            base_url=f"{base_url}/v1",
            api_key=Secret(API_KEY),
            timeouts=timeouts,
        )

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """``Authorization: Bearer <key>``."""
        assert deployment.api_key is not None
        return {"authorization": f"Bearer {deployment.api_key.value}"}

    def expected_path(self, operation: Operation) -> str:
        """The path (and query) a request for ``operation`` must use."""
        return "/v1/embeddings" if operation is Operation.EMBED else "/v1/chat/completions"

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        """Method, path, JSON content type and the body's model and stream fields."""
        assert request.method == "POST"
        assert request.target == self.expected_path(operation), request.target
        assert request.headers.get("content-type") == "application/json"
        body = request.json()
        assert body["model"] == MODEL
        if operation is Operation.EMBED:
            assert body["encoding_format"] == "float"
            assert isinstance(body["input"], list)
            return
        assert isinstance(body["messages"], list)
        if operation is Operation.STREAM:
            assert body["stream"] is True
            assert body["stream_options"] == {"include_usage": True}
        else:
            assert "stream" not in body

    def text(self, text: str, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A completion answering ``text`` with ``finish_reason: stop``."""
        if stream:
            deltas = [{"content": piece} for piece in pieces_of(text, 3)]
            return self._stream(ROLE_DELTA, deltas, "stop", usage)
        message: Json = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        return self._answer(self._completion(message, "stop", usage))

    def tool_call(self, call: ToolCallSpec, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A completion calling ``call`` with ``finish_reason: tool_calls``."""
        arguments = compact(dict(call.arguments)).decode()
        if stream:
            # The role chunk names the call; the arguments follow in small deltas.
            first: Json = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ],
                "refusal": None,
            }
            deltas: list[Json] = [
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                for piece in pieces_of(arguments, 4)
            ]
            return self._stream(first, deltas, "tool_calls", usage)
        message: Json = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }
            ],
            "refusal": None,
            "annotations": [],
        }
        return self._answer(self._completion(message, "tool_calls", usage))

    def truncated_stream(self, text: str) -> WireReply:
        """The role chunk and content chunks, then the body ends: no finish, no ``[DONE]``."""
        chunks = [*self._prelude(), self._chunk(ROLE_DELTA, None)]
        chunks += [self._chunk({"content": piece}, None) for piece in pieces_of(text, 3)]
        return WireReply(200, self._sse(chunks, done=False), SSE_HEADERS, streaming=True)

    def malformed_stream(self) -> WireReply:
        """Proper SSE framing around a payload cut off mid-object."""
        body = self._sse([*self._prelude(), self._chunk(ROLE_DELTA, None)], done=False)
        body += b'data: {"id":"chatcmpl-x","choices":[{"del\n\n'
        return WireReply(200, body + b"data: [DONE]\n\n", SSE_HEADERS, streaming=True)

    def failure_mid_stream(self, text: str) -> WireReply:
        """Content chunks, then a ``data:`` line holding OpenAI's error object, no ``[DONE]``."""
        chunks = [*self._prelude(), self._chunk(ROLE_DELTA, None)]
        chunks += [self._chunk({"content": piece}, None) for piece in pieces_of(text, 3)]
        failure = {
            "error": {
                "message": "The server had an error while processing your request. Sorry about"
                " that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        body = self._sse([*chunks, failure], done=False)
        return WireReply(200, body, SSE_HEADERS, streaming=True)

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """OpenAI's error object with ``x-request-id`` (and ``retry-after`` when given).

        A 502 comes from the Cloudflare edge in front of the API: an HTML page.
        """
        if case is ErrorCase.BAD_GATEWAY:
            return WireReply(
                502, proxy_502_page("cloudflare"), {**HTML_HEADERS, "server": "cloudflare"}
            )
        message, kind, param, code = _ERRORS[case]
        headers = dict(JSON_HEADERS)
        if retry_after_seconds is not None:
            headers["retry-after"] = str(retry_after_seconds)
            headers["x-ratelimit-limit-requests"] = "500"
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = f"{retry_after_seconds}s"
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return WireReply(case.http_status, pretty(body, 4), headers)

    def embeddings(self, vectors: Sequence[Sequence[float]], usage: UsageSpec) -> WireReply:
        """An ``object: list`` of embeddings with prompt-token usage."""
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": list(vector)}
                for index, vector in enumerate(vectors)
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
        }
        return self._answer(body)

    def _answer(self, body: Json) -> WireReply:
        """A whole 200 answer, printed as the server prints it."""
        return WireReply(200, pretty(body, 2), JSON_HEADERS)

    def _sse(self, chunks: Sequence[Json], *, done: bool = True) -> bytes:
        return sse(chunks, done=done)

    def _prelude(self) -> list[Json]:
        """Chunks the server sends before the first choice (none for OpenAI)."""
        return []

    def _completion(self, message: Json, finish: str, usage: UsageSpec) -> Json:
        return {
            "id": COMPLETION_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": SNAPSHOT,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": usage_json(usage),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }

    def _chunk(
        self, delta: Json | None, finish: str | None, usage: UsageSpec | None = None
    ) -> Json:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )
        return {
            "id": COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": SNAPSHOT,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": None if usage is None else usage_json(usage),
        }

    def _stream(
        self, first: Json, deltas: Sequence[Json], finish: str, usage: UsageSpec
    ) -> WireReply:
        chunks = [*self._prelude(), self._chunk(first, None)]
        chunks += [self._chunk(delta, None) for delta in deltas]
        chunks.append(self._chunk({}, finish))
        chunks.append(self._chunk(None, None, usage))
        return WireReply(200, self._sse(chunks), SSE_HEADERS, streaming=True)


_SAFE: Json = {"filtered": False, "severity": "safe"}
AZURE_FILTER_RESULTS: Json = {
    "hate": _SAFE,
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
"""``content_filter_results`` of a choice nothing was filtered from."""

AZURE_PROMPT_FILTER_RESULTS: Json = {
    **AZURE_FILTER_RESULTS,
    "jailbreak": {"filtered": False, "detected": False},
}

_AZURE_ERRORS: Mapping[ErrorCase, tuple[str, str]] = {
    ErrorCase.UNAUTHORIZED: (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to"
        " provide a valid key for an active subscription and use a correct regional API"
        " endpoint for your resource.",
    ),
    ErrorCase.NOT_FOUND: (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment"
        " within the last 5 minutes, please wait a moment and try again.",
    ),
    ErrorCase.RATE_LIMITED: (
        "429",
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version"
        " 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier."
        " Please retry after {seconds} seconds. Please go here:"
        " https://aka.ms/oai/quotaincrease if you would like to further increase the default"
        " rate limit.",
    ),
}
"""Errors Azure answers itself, before the model: ``{"error": {"code", "message"}}``."""

AZURE_HEADERS: Mapping[str, str] = {
    "apim-request-id": "5f0c7a3e-8f5d-4b7e-9a51-2c7d1e0b9f44",
    "x-ms-region": "Sweden Central",
}


class AzureOpenAIWire(OpenAIWire):
    """OpenAI's wire reached as Azure OpenAI (see the module docstring)."""

    azure_deployment: ClassVar[str] = "chat-prod-eu"
    api_version: ClassVar[str] = "2024-10-21"

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """The ``azure`` flavour with the fake server as the resource endpoint."""
        return Deployment(
            provider=self.provider,
            model=MODEL,
            base_url=base_url,
            api_key=Secret("0123456789abcdef0123456789abcdef"),
            options={
                "flavour": "azure",
                "api_version": self.api_version,
                "azure_deployment": self.azure_deployment,
            },
            timeouts=timeouts,
        )

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """``api-key: <key>``, and no bearer token."""
        assert deployment.api_key is not None
        return {"api-key": deployment.api_key.value}

    def expected_path(self, operation: Operation) -> str:
        name = "embeddings" if operation is Operation.EMBED else "chat/completions"
        return f"/openai/deployments/{self.azure_deployment}/{name}?api-version={self.api_version}"

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        super().check_request(request, operation)
        assert request.query_value("api-version") == self.api_version
        assert "authorization" not in request.headers

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """Azure's own body for 401, 404 and 429; the model's (OpenAI's) body otherwise."""
        if case is ErrorCase.BAD_GATEWAY:
            # Azure is not behind Cloudflare; its 502 body is unverified, so OpenAI's shape.
            failure = {
                "message": "Bad gateway.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            return WireReply(502, pretty({"error": failure}, 4), {**JSON_HEADERS, **AZURE_HEADERS})
        if case not in _AZURE_ERRORS:
            reply = super().error(case, retry_after_seconds)
            return WireReply(reply.status, reply.body, {**reply.headers, **AZURE_HEADERS})
        code, message = _AZURE_ERRORS[case]
        headers = {**JSON_HEADERS, **AZURE_HEADERS}
        message = message.format(seconds=retry_after_seconds or 60)
        if retry_after_seconds is not None:
            headers["retry-after"] = str(retry_after_seconds)
            headers["retry-after-ms"] = str(retry_after_seconds * 1000)
        body = {"error": {"code": code, "message": message}}
        return WireReply(case.http_status, compact(body), headers)

    def _answer(self, body: Json) -> WireReply:
        choices = [
            {**choice, "content_filter_results": AZURE_FILTER_RESULTS}
            for choice in body.get("choices", [])
        ]
        if "choices" in body:
            body = {**body, "choices": choices, "prompt_filter_results": self._prompt_filter()}
        headers = {**JSON_HEADERS, **AZURE_HEADERS}
        return WireReply(200, compact(body, sort_keys=True), headers)

    def _sse(self, chunks: Sequence[Json], *, done: bool = True) -> bytes:
        filtered = [
            {
                **chunk,
                "choices": [
                    {**choice, "content_filter_results": {}} for choice in chunk["choices"]
                ],
            }
            if chunk.get("choices")
            else chunk
            for chunk in chunks
        ]
        return sse(filtered, done=done, sort_keys=True)

    def _prelude(self) -> list[Json]:
        """Azure's first chunk: the prompt's filter results, no choices, no model yet."""
        return [
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": self._prompt_filter(),
            }
        ]

    def _prompt_filter(self) -> list[Json]:
        return [{"prompt_index": 0, "content_filter_results": AZURE_PROMPT_FILTER_RESULTS}]
