"""Gemini API error bodies: ``{"error": {"code", "message", "status", "details"?}}``.

The same object may arrive as an SSE ``data:`` payload inside a stream, where
its ``code`` stands in for the HTTP status. A 400 whose message says the input
token count exceeds the maximum is the context-window case. An invalid or
expired API key is also a 400 (``INVALID_ARGUMENT``), told apart by its
``google.rpc.ErrorInfo`` detail with reason ``API_KEY_INVALID``: that is refused
credentials, not a bad request. A 429 says when to retry in a
``google.rpc.RetryInfo`` detail (``"retryDelay": "7s"``).
"""

from __future__ import annotations

from collections.abc import Iterator

from provider_adapters.errors import ProviderError, error_for_status
from provider_adapters.gemini.identity import PROVIDER
from provider_adapters.http import UpstreamError
from provider_adapters.support.error_bodies import decode_json, fallback_message, mentions_any
from provider_adapters.support.json_values import Json

_CONTEXT_PHRASES = ("exceeds the maximum number of tokens", "context window")
_KEY_REFUSED = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
"""``ErrorInfo`` reasons that mean the deployment's API key was refused."""


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """The message of a Gemini error answer, flagging the context and refused-key cases."""
    payload = decode_json(raw)
    fields = error_fields(payload)
    if fields is None:
        return UpstreamError(fallback_message(status, raw))
    _code, text, message = fields
    return UpstreamError(
        text,
        context_window=mentions_any(message, _CONTEXT_PHRASES),
        retry_after_seconds=retry_delay(payload),
        auth_failed=key_refused(payload),
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
        context_window=mentions_any(message, _CONTEXT_PHRASES),
        auth_failed=key_refused(payload),
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
    for detail in _details(payload, "google.rpc.RetryInfo"):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 0.0)
            except ValueError:
                return None
    return None


def key_refused(payload: object) -> bool:
    """True when an ``ErrorInfo`` detail says the API key is invalid or expired."""
    return any(
        detail.get("reason") in _KEY_REFUSED for detail in _details(payload, "google.rpc.ErrorInfo")
    )


def _details(payload: object, kind: str) -> Iterator[Json]:
    """The ``details`` entries of an error object whose ``@type`` names ``kind``."""
    error = payload.get("error") if isinstance(payload, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(kind):
            yield detail
