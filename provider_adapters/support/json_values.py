"""Reading providers' JSON values: tool-call arguments and token counts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provider_adapters.errors import ProviderBadRequest

Json = dict[str, Any]


def arguments_object(arguments: str, *, provider: str, call_id: str) -> Json:
    """A tool call's arguments text as the JSON object providers want in history.

    Empty text means no arguments. Anything that is not a JSON object raises
    :class:`ProviderBadRequest`: the provider cannot be sent such a call.
    """
    if not arguments.strip():
        return {}
    try:
        decoded = json.loads(arguments)
    except ValueError as exc:
        raise ProviderBadRequest(
            f"arguments of tool call {call_id!r} are not valid JSON: {exc}", provider=provider
        ) from exc
    if not isinstance(decoded, dict):
        raise ProviderBadRequest(
            f"arguments of tool call {call_id!r} are not a JSON object", provider=provider
        )
    return decoded


def arguments_text(arguments: Any) -> str:
    """A provider's parsed arguments object as the compact JSON text llmgw carries."""
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def token_count(raw: Mapping[str, Any], key: str) -> int:
    """``raw[key]`` when it is an integer (not a bool); 0 when missing or of another type.

    For usage fields a provider may leave out; adapters that must refuse a
    malformed count check it themselves.
    """
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
