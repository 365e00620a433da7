"""Anthropic error bodies, in HTTP answers and as ``error`` events inside a stream.

Both carry ``{"type": "error", "error": {"type": "<kind>", "message": "..."}}``.
A 400 whose message says the prompt is too long is the context-window case.
Inside a stream there is no status line, so the error ``type`` names the status
the API documents for it (``overloaded_error`` is 529, ``api_error`` 500...).
"""

from __future__ import annotations

from collections.abc import Mapping

from provider_adapters.anthropic.identity import PROVIDER
from provider_adapters.errors import ProviderError, error_for_status
from provider_adapters.http import UpstreamError
from provider_adapters.support.error_bodies import decode_json, fallback_message, mentions_any

STATUS_BY_ERROR_TYPE: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_CONTEXT_PHRASES = ("prompt is too long", "exceed context limit", "context window")


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """The message of an Anthropic error answer, flagging the context-window case."""
    kind, message = _error_fields(decode_json(raw))
    if message is None:
        return UpstreamError(fallback_message(status, raw))
    text = f"{kind}: {message}" if kind else message
    return UpstreamError(text, context_window=mentions_any(message, _CONTEXT_PHRASES))


def stream_error(payload: object) -> ProviderError:
    """The exception for an ``error`` event received inside a stream."""
    kind, message = _error_fields(payload)
    status = STATUS_BY_ERROR_TYPE.get(kind or "", 500)
    text = message or "anthropic reported an error in its stream"
    return error_for_status(
        status,
        f"{kind}: {text}" if kind else text,
        provider=PROVIDER,
        context_window=message is not None and mentions_any(message, _CONTEXT_PHRASES),
    )


def _error_fields(payload: object) -> tuple[str | None, str | None]:
    if not isinstance(payload, dict):
        return None, None
    error = payload.get("error")
    if not isinstance(error, dict):
        return None, None
    kind = error.get("type")
    message = error.get("message")
    return (
        kind if isinstance(kind, str) else None,
        message if isinstance(message, str) else None,
    )
