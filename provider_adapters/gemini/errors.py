"""Gemini API error bodies: ``{"error": {"code", "message", "status"}}``.

The same object may arrive as an SSE ``data:`` payload inside a stream, where
its ``code`` stands in for the HTTP status. A 400 whose message says the input
token count exceeds the maximum is the context-window case. A 429 says when
to retry in a ``google.rpc.RetryInfo`` detail (``"retryDelay": "7s"``).
"""

from __future__ import annotations

from provider_adapters.errors import ProviderError, error_for_status
from provider_adapters.gemini.identity import PROVIDER
from provider_adapters.http import UpstreamError
from provider_adapters.support.error_bodies import decode_json, fallback_message

_CONTEXT_PHRASES = ("exceeds the maximum number of tokens", "context window")


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """The message of a Gemini error answer, flagging the context-window case."""
    fields = error_fields(decode_json(raw))
    if fields is None:
        return UpstreamError(fallback_message(status, raw))
    _code, text, message = fields
    return UpstreamError(
        text,
        context_window=_is_context_case(message),
        retry_after_seconds=retry_delay(decode_json(raw)),
    )


def stream_error(payload: object) -> ProviderError | None:
    """The exception for an ``{"error": ...}`` object inside a stream; None if it is not one."""
    fields = error_fields(payload)
    if fields is None:
        return None
    code, text, message = fields
    return error_for_status(
        code or 500,
        text,
        provider=PROVIDER,
        retry_after_seconds=retry_delay(payload),
        context_window=_is_context_case(message),
    )


def error_fields(payload: object) -> tuple[int | None, str, str] | None:
    """``(code, display text, raw message)`` of an error object, or None."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    message = error.get("message")
    status = error.get("status")
    message = message if isinstance(message, str) else "gemini reported an error"
    text = f"{status}: {message}" if isinstance(status, str) and status else message
    return (code if isinstance(code, int) and code >= 400 else None), text, message


def retry_delay(payload: object) -> float | None:
    """Seconds of the ``RetryInfo`` detail of an error object, or None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if not str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 0.0)
            except ValueError:
                return None
    return None


def _is_context_case(message: str) -> bool:
    lowered = message.lower()
    return any(phrase in lowered for phrase in _CONTEXT_PHRASES)
