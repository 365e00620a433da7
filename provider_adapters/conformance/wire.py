"""What a provider's fake must say for the conformance kit: its wire format, nothing more.

The kit (``provider_adapters.conformance.suite``) runs every scenario against a
real HTTP server on loopback. For each scenario it asks the adapter's
:class:`ProviderWire` for the exact bytes the provider would send (status,
headers, body, framing as the provider's public API documents it), then serves
those bytes itself, cut into chunks at awkward places (inside lines and inside
multi-byte UTF-8 characters), and checks what the adapter makes of them.

A wire describes replies in terms of the kit's neutral specs below; it never
sees the adapter under test.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from provider_adapters.base import Capability, Deployment, Timeouts


@dataclass(frozen=True, slots=True)
class UsageSpec:
    """Token counts the fake reports; the adapter must hand them on unchanged."""

    input_tokens: int = 11
    output_tokens: int = 7
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallSpec:
    """One function call the fake's model makes."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]


class ErrorCase(enum.Enum):
    """Upstream failures every adapter must map; values are the HTTP status."""

    BAD_REQUEST = 400
    CONTEXT_WINDOW = 4000  # a 400 whose body says the prompt is too long
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    REQUEST_TIMEOUT = 408
    CONFLICT = 409
    UNPROCESSABLE = 422
    RATE_LIMITED = 429
    INTERNAL = 500
    BAD_GATEWAY = 502
    UNAVAILABLE = 503
    OVERLOADED = 529

    @property
    def http_status(self) -> int:
        """The status line's code for this case."""
        return 400 if self is ErrorCase.CONTEXT_WINDOW else self.value


@dataclass(frozen=True, slots=True)
class WireReply:
    """One HTTP response as the provider sends it.

    ``body`` is the complete body; for streams, ``streaming`` is true and the
    body holds the whole framed stream (SSE events or NDJSON lines) which the
    kit serves with chunked transfer encoding in pieces of its choosing.
    """

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    streaming: bool = False


class ProviderWire(Protocol):
    """A provider's wire format, as the conformance kit needs it."""

    provider: str
    """The adapter plugin name (entry-point name) this wire belongs to."""

    capabilities: frozenset[Capability]
    """What the scenarios may exercise (streaming, tools, embeddings...)."""

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """A deployment of the adapter pointed at the kit's fake server."""

    def text(self, text: str, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A completion whose answer is ``text`` and that stopped naturally."""

    def tool_call(self, call: ToolCallSpec, usage: UsageSpec, *, stream: bool) -> WireReply:
        """A completion that ends with the model calling ``call``."""

    def truncated_stream(self, text: str) -> WireReply:
        """A stream that starts ``text`` and ends without the provider's final event."""

    def malformed_stream(self) -> WireReply:
        """A stream whose framing is right but whose payload is not valid JSON."""

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """The provider's error body and headers for ``case``."""

    def embeddings(self, vectors: Sequence[Sequence[float]], usage: UsageSpec) -> WireReply:
        """An embeddings answer (only called when EMBEDDINGS is declared)."""
