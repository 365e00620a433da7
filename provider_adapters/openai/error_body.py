"""OpenAI error bodies: ``{"error": {"message", "type", "param", "code"}}``.

The context-window case is code ``context_length_exceeded``; compatible servers
(vLLM and others) send the error's fields at the top level and a message that
says "maximum context length", which counts too. A body that is not JSON is
reported by its first bytes.
"""

from __future__ import annotations

import json

from provider_adapters.http import UpstreamError

CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
CONTEXT_PHRASES = ("maximum context length", "context length exceeded", "context_length_exceeded")
MAX_RAW_MESSAGE = 300


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """What an OpenAI-style error body says (an :data:`~provider_adapters.http.ErrorParser`)."""
    try:
        decoded = json.loads(raw)
    except ValueError:
        decoded = None
    error = None
    if isinstance(decoded, dict):
        # OpenAI nests the error; vLLM and others put its fields at the top level.
        error = decoded.get("error", decoded if "message" in decoded else None)
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        text = raw[:MAX_RAW_MESSAGE].decode("utf-8", errors="replace").strip()
        return UpstreamError(f"HTTP {status}: {text or 'no body'}", _mentions_context(text))
    message = str(error.get("message") or f"HTTP {status}")
    code = error.get("code")
    kind = error.get("type")
    label = code if isinstance(code, str) and code else kind if isinstance(kind, str) else ""
    context = (isinstance(code, str) and code in CONTEXT_CODES) or _mentions_context(message)
    return UpstreamError(f"{label}: {message}" if label else message, context)


def _mentions_context(text: str) -> bool:
    lowered = text.lower()
    return any(phrase in lowered for phrase in CONTEXT_PHRASES)
