"""The Echo API: a deliberately small HTTP/JSON completion API.

``POST {base_url}/v1/generate`` with header ``x-echo-key: <key>`` and body::

    {"model": "...", "messages": [{"role": "user", "text": "..."}],
     "tools": [{"name": "...", "schema": {...}}], "max_tokens": 64, "stream": false}

A unary answer is one object::

    {"text": "...", "call": {"id": "...", "name": "...", "input": {...}} | null,
     "stop": "end" | "call" | "limit", "tokens": {"in": 11, "out": 7}}

A streamed answer is newline-delimited JSON: ``{"type": "text", "text": "..."}``,
``{"type": "call", "id": "...", "name": "..."}``, ``{"type": "call_input", "json":
"..."}`` pieces, and last ``{"type": "end", "stop": "...", "tokens": {...}}``.

Errors are ``{"error": {"kind": "...", "detail": "..."}}`` with the HTTP status;
kind ``context_overflow`` marks a prompt longer than the model's window.
"""

from __future__ import annotations

from collections.abc import Mapping

PATH = "/v1/generate"
KEY_HEADER = "x-echo-key"
CONTEXT_OVERFLOW = "context_overflow"
STOP_REASONS: Mapping[str, str] = {"end": "stop", "call": "tool_calls", "limit": "length"}
