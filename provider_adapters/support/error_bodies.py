"""Reading provider error bodies that may not be JSON at all (proxies send HTML)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

_MAX_TEXT = 500


def decode_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def fallback_message(status: int, raw: bytes) -> str:
    """A short message for an error body nobody could parse."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return f"HTTP {status}"
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def mentions_any(text: str, phrases: Iterable[str]) -> bool:
    """True when ``text`` contains one of the lower-case ``phrases``, ignoring case.

    How adapters recognise the context-window case in a provider's error message.
    """
    lowered = text.lower()
    return any(phrase in lowered for phrase in phrases)
