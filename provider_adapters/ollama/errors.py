"""Ollama error bodies: ``{"error": "<message>"}`` with the HTTP status.

The same object may arrive as one line of a streamed answer (after the 200
status line); it is then mapped as a server error unless it names the context
length, which is the context-window case.
"""

from __future__ import annotations

from provider_adapters.errors import ProviderError, error_for_status
from provider_adapters.http import UpstreamError
from provider_adapters.ollama.identity import PROVIDER
from provider_adapters.support.error_bodies import decode_json, fallback_message, mentions_any

_CONTEXT_PHRASES = ("context length", "context window", "exceeds the context")


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """The message of an Ollama error answer, flagging the context-window case."""
    message = error_message(decode_json(raw))
    if message is None:
        return UpstreamError(fallback_message(status, raw))
    return UpstreamError(message, context_window=mentions_any(message, _CONTEXT_PHRASES))


def stream_error(payload: object) -> ProviderError | None:
    """The exception for an ``{"error": ...}`` line of a stream; None if it is not one."""
    message = error_message(payload)
    if message is None:
        return None
    context = mentions_any(message, _CONTEXT_PHRASES)
    return error_for_status(
        400 if context else 500, message, provider=PROVIDER, context_window=context
    )


def error_message(payload: object) -> str | None:
    """The ``error`` text of an error object, or None when ``payload`` is not one."""
    if not isinstance(payload, dict) or "error" not in payload:
        return None
    error = payload["error"]
    return error if isinstance(error, str) else str(error)
