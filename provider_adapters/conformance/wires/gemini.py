"""Gemini's wire format for the conformance kit: generateContent, streaming, embeddings.

Printed as Google prints it (UTF-8 text unescaped): a whole answer or error is
JSON indented by two spaces, ending in a newline; a stream
(``:streamGenerateContent?alt=sse``) is ``data:`` lines with a space after each
colon and none after commas, each event ended by CRLF CRLF, each a whole
``GenerateContentResponse`` with the next parts; the last one carries
``finishReason`` and the full ``usageMetadata``. Function calls arrive whole,
with the ``id`` the API assigns. Errors are ``{"error": {"code", "message",
"status", "details"?}}``; a 429 says when to retry in a ``google.rpc.RetryInfo``
detail. An invalid API key is not a 401 but a 400 ``INVALID_ARGUMENT`` with an
``ErrorInfo`` detail, reason ``API_KEY_INVALID`` (:meth:`GeminiWire.invalid_api_key`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from provider_adapters.base import Capability, Deployment, Secret, Timeouts
from provider_adapters.conformance.fake_server import RecordedRequest
from provider_adapters.conformance.wire import ErrorCase, ToolCallSpec, UsageSpec, WireReply
from provider_adapters.conformance.wire_hooks import Operation
from provider_adapters.conformance.wires.framing import colon_spaced, pieces_of, pretty

Json = dict[str, Any]

MODEL = "gemini-2.5-flash"
RESPONSE_ID = "mAitaP-3LsDUz7IPwIfk0Qg"
API_KEY = "AIzaSyConformance0123456789abcdefghijk"
PREFIX = f"/v1beta/models/{MODEL}"

JSON_HEADERS: Mapping[str, str] = {
    "content-type": "application/json; charset=UTF-8",
    "vary": "Origin, X-Origin, Referer",
    "server": "scaffolding on HTTPServer2",
}
SSE_HEADERS: Mapping[str, str] = {
    "content-type": "text/event-stream",
    "content-disposition": "attachment",
    "server": "scaffolding on HTTPServer2",
}

_ERRORS: Mapping[ErrorCase, tuple[str, str]] = {
    ErrorCase.BAD_REQUEST: (
        "INVALID_ARGUMENT",
        "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"",
    ),
    ErrorCase.CONTEXT_WINDOW: (
        "INVALID_ARGUMENT",
        "The input token count (1203847) exceeds the maximum number of tokens allowed (1048576).",
    ),
    ErrorCase.UNAUTHORIZED: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token,"
        " login cookie or other valid authentication credential.",
    ),
    ErrorCase.FORBIDDEN: (
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity).",
    ),
    ErrorCase.NOT_FOUND: (
        "NOT_FOUND",
        f"models/{MODEL}-nope is not found for API version v1beta, or is not supported for"
        " generateContent.",
    ),
    ErrorCase.REQUEST_TIMEOUT: ("DEADLINE_EXCEEDED", "The request timed out."),
    ErrorCase.CONFLICT: ("ABORTED", "The operation was aborted due to a conflict."),
    ErrorCase.UNPROCESSABLE: ("INVALID_ARGUMENT", "* GenerateContentRequest.contents: empty"),
    ErrorCase.RATE_LIMITED: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    ErrorCase.INTERNAL: ("INTERNAL", "An internal error has occurred."),
    ErrorCase.UNAVAILABLE: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    ErrorCase.OVERLOADED: ("UNAVAILABLE", "The service is currently overloaded."),
}


GFE_502_PAGE = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    '  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">\n'
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>\n"
    "  <p><b>502.</b> <ins>That\u2019s an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds.  <ins>That\u2019s all we know.</ins>\n"
).encode()
"""The Google front end's 502 page (its ``<style>`` block left out)."""


def sse(chunks: Sequence[object]) -> bytes:
    """One ``data: {...}`` event per chunk, printed and ended (CRLF) as the API sends them."""
    return b"".join(b"data: " + colon_spaced(chunk) + b"\r\n\r\n" for chunk in chunks)


def usage_json(usage: UsageSpec) -> Json:
    """``usageMetadata``: prompt tokens include cached content tokens."""
    metadata: Json = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens,
        "totalTokenCount": usage.input_tokens + usage.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_tokens}],
    }
    if usage.cached_input_tokens:
        metadata["cachedContentTokenCount"] = usage.cached_input_tokens
    return metadata


def response(parts: list[Json], finish: str | None, usage: Json | None) -> Json:
    """One ``GenerateContentResponse`` with a single candidate."""
    candidate: Json = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    body: Json = {"candidates": [candidate]}
    if usage is not None:
        body["usageMetadata"] = usage
    body["modelVersion"] = MODEL
    body["responseId"] = RESPONSE_ID
    return body


class GeminiWire:
    """The Gemini API as the kit needs it (see the module docstring)."""

    provider: str = "gemini"
    capabilities: frozenset[Capability] = frozenset(
        {Capability.STREAMING, Capability.TOOLS, Capability.EMBEDDINGS}
    )

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """The fake server standing in for ``https://generativelanguage.googleapis.com``."""
        return Deployment(
            provider=self.provider,
            model=MODEL,
            base_url=base_url,
            api_key=Secret(API_KEY),
            timeouts=timeouts,
        )

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """The API key in ``x-goog-api-key``."""
        assert deployment.api_key is not None
        return {"x-goog-api-key": deployment.api_key.value}

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        """Method and path per operation, the key never in the URL, the body's main fields."""
        assert request.method == "POST"
        assert "key" not in request.query
        body = request.json()
        if operation is Operation.EMBED:
            assert request.target == f"{PREFIX}:batchEmbedContents", request.target
            assert [entry["model"] for entry in body["requests"]] == [f"models/{MODEL}"] * 2
            return
        if operation is Operation.STREAM:
            assert request.target == f"{PREFIX}:streamGenerateContent?alt=sse", request.target
        else:
            assert request.target == f"{PREFIX}:generateContent", request.target
        assert body["systemInstruction"] == {"parts": [{"text": "Answer briefly."}]}
        assert [content["role"] for content in body["contents"]] == ["user"]
        assert body["generationConfig"]["maxOutputTokens"] == 64
        for tool in body.get("tools", []):
            for declaration in tool["functionDeclarations"]:
                assert declaration["parametersJsonSchema"]["type"] == "object"

    def text(self, text: str, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A response answering ``text`` with ``finishReason: STOP``."""
        if stream:
            pieces = pieces_of(text, 4)
            chunks = [response([{"text": piece}], None, None) for piece in pieces[:-1]]
            chunks.append(response([{"text": pieces[-1]}], "STOP", usage_json(usage)))
            return WireReply(200, sse(chunks), SSE_HEADERS, streaming=True)
        body = response([{"text": text}], "STOP", usage_json(usage))
        return WireReply(200, pretty(body, 2), JSON_HEADERS)

    def tool_call(self, call: ToolCallSpec, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A response calling ``call`` (Gemini says ``STOP`` after function calls too)."""
        part = {"functionCall": {"id": call.call_id, "name": call.name, "args": call.arguments}}
        if stream:
            chunks = [
                response([{"text": "Checking."}], None, None),
                response([part], "STOP", usage_json(usage)),
            ]
            return WireReply(200, sse(chunks), SSE_HEADERS, streaming=True)
        body = response([{"text": "Checking."}, part], "STOP", usage_json(usage))
        return WireReply(200, pretty(body, 2), JSON_HEADERS)

    def truncated_stream(self, text: str) -> WireReply:
        """Text chunks without any ``finishReason``, then the body ends."""
        chunks = [response([{"text": piece}], None, None) for piece in pieces_of(text, 4)]
        return WireReply(200, sse(chunks), SSE_HEADERS, streaming=True)

    def malformed_stream(self) -> WireReply:
        """Proper SSE framing around a payload cut off mid-object."""
        body = sse([response([{"text": "Hel"}], None, None)])
        body += b'data: {"candidates": [{"content": {"par\r\n\r\n'
        return WireReply(200, body, SSE_HEADERS, streaming=True)

    def failure_mid_stream(self, text: str) -> WireReply:
        """Text chunks, then a ``data:`` event holding Google's error object (503)."""
        chunks: list[Json] = [
            response([{"text": piece}], None, None) for piece in pieces_of(text, 4)
        ]
        failure = {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        }
        return WireReply(200, sse([*chunks, failure]), SSE_HEADERS, streaming=True)

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """Google's error object; the retry delay as a ``RetryInfo`` detail when given.

        A 502 comes from the Google front end, not the API: an HTML page.
        """
        if case is ErrorCase.BAD_GATEWAY:
            return WireReply(502, GFE_502_PAGE, {"content-type": "text/html; charset=UTF-8"})
        status, message = _ERRORS[case]
        error: Json = {"code": case.http_status, "message": message, "status": status}
        if retry_after_seconds is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after_seconds}s",
                },
            ]
        return WireReply(case.http_status, pretty({"error": error}, 2), JSON_HEADERS)

    def invalid_api_key(self) -> WireReply:
        """The answer to a request whose ``x-goog-api-key`` is not a valid key."""
        message = "API key not valid. Please pass a valid API key."
        error: Json = {
            "code": 400,
            "message": message,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                },
            ],
        }
        return WireReply(400, pretty({"error": error}, 2), JSON_HEADERS)

    def embeddings(self, vectors: Sequence[Sequence[float]], usage: UsageSpec) -> WireReply:
        """A ``batchEmbedContents`` answer: one ``values`` list per request, usage metadata."""
        body = {
            "embeddings": [{"values": list(vector)} for vector in vectors],
            "usageMetadata": {"promptTokenCount": usage.input_tokens},
        }
        return WireReply(200, pretty(body, 2), JSON_HEADERS)
