"""OpenAI error bodies: ``{"error": {"message", "type", "param", "code"}}``.

The context-window case is code ``context_length_exceeded``; compatible servers
(vLLM and others) send the error's fields at the top level and a message that
says "maximum context length", which counts too. A body that is not JSON is
reported by its first bytes.
"""

from __future__ import annotations

from provider_adapters.http import UpstreamError
from provider_adapters.support.error_bodies import decode_json, mentions_any

CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
CONTEXT_PHRASES = ("maximum context length", "context length exceeded", "context_length_exceeded")
MAX_RAW_MESSAGE = 300


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """What an OpenAI-style error body says (an :data:`~provider_adapters.http.ErrorParser`)."""
    decoded = decode_json(raw)
    error = None
    if isinstance(decoded, dict):
        # OpenAI nests the error; vLLM and others put its fields at the top level.
        error = decoded.get("error", decoded if "message" in decoded else None)
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        text = raw[:MAX_RAW_MESSAGE].decode("utf-8", errors="replace").strip()
        context = mentions_any(text, CONTEXT_PHRASES)
        return UpstreamError(f"HTTP {status}: {text or 'no body'}", context)
    message = str(error.get("message") or f"HTTP {status}")
    code = error.get("code")
    kind = error.get("type")
    label = code if isinstance(code, str) and code else kind if isinstance(kind, str) else ""
    context = (isinstance(code, str) and code in CONTEXT_CODES) or mentions_any(
        message, CONTEXT_PHRASES
    )
    return UpstreamError(f"{label}: {message}" if label else message, context)
