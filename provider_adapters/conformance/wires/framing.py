"""Bytes the provider wires share: JSON printed the way each provider prints it, token pieces.

Providers differ in how they print the same JSON value, and a fake must print
it their way: OpenAI pretty-prints whole bodies (2 spaces for answers, 4 for
errors) but streams compact ``data:`` lines; Google pretty-prints whole bodies
with 2 spaces and streams lines with ``": "`` after keys but nothing after
commas; Anthropic and Ollama print compact JSON. Non-ASCII text is never
escaped. A 502 often comes from a proxy in front of the API, as an HTML page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def proxy_502_page(server: str) -> bytes:
    """The HTML page a proxy answers 502 with when the service behind it fails.

    ``server`` is the proxy's name as its page prints it: ``nginx`` or
    ``cloudflare``. There is no JSON at all, so adapters must cope.
    """
    return (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n"
        f"<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


HTML_HEADERS: Mapping[str, str] = {"content-type": "text/html"}
"""Headers of :func:`proxy_502_page`."""


def compact(value: object, *, sort_keys: bool = False) -> bytes:
    """``{"a":1,"b":[2,3]}``: no spaces, UTF-8 encoded."""
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys
    ).encode()


def colon_spaced(value: object) -> bytes:
    """``{"a": 1,"b": [2,3]}``: a space after each colon only (Google's streamed lines)."""
    return json.dumps(value, separators=(",", ": "), ensure_ascii=False).encode()


def pretty(value: object, indent: int) -> bytes:
    """``value`` indented by ``indent`` spaces per level, ending with a newline."""
    return json.dumps(value, indent=indent, ensure_ascii=False).encode() + b"\n"


def pieces_of(text: str, size: int) -> list[str]:
    """``text`` in pieces of ``size`` characters, as a model emits tokens."""
    return [text[start : start + size] for start in range(0, len(text), size)]
