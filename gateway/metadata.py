"""Which metadata the gateway passes on, each way.

Keys gRPC manages itself (pseudo-headers, ``grpc-timeout``, encodings, status) are
never copied: the gateway's own channels and server set them. Towards upstreams
the gateway also drops every ``llmgw-`` key a client sends, because upstreams
trust those keys as set by the gateway (the caller's identity), and sends the
call's request id as ``x-request-id``.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.filters.base import Metadata, MetadataValue
from services.kernel.context import REQUEST_ID_HEADER

GATEWAY_KEY_PREFIX = "llmgw-"
"""Prefix of the keys only the gateway may set on calls to upstreams."""

_NOT_FORWARDED = frozenset(
    {
        "content-type",
        "te",
        "host",
        "connection",
        "user-agent",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-internal-encoding-request",
        "grpc-status",
        "grpc-message",
        "grpc-previous-rpc-attempts",
        "grpc-retry-pushback-ms",
    }
)


def upstream_request_metadata(
    metadata: Iterable[tuple[str, MetadataValue]], request_id: str
) -> Metadata:
    """What the upstream receives of the caller's metadata, plus the request id."""
    kept = tuple(
        (key, value)
        for key, value in metadata
        if key not in _NOT_FORWARDED
        and key != REQUEST_ID_HEADER
        and not key.startswith((":", GATEWAY_KEY_PREFIX))
    )
    return (*kept, (REQUEST_ID_HEADER, request_id)) if request_id else kept


def downstream_metadata(metadata: Iterable[tuple[str, MetadataValue]] | None) -> Metadata:
    """What the caller receives of an upstream's initial or trailing metadata."""
    if not metadata:
        return ()
    return tuple(
        (key, value)
        for key, value in metadata
        if key not in _NOT_FORWARDED and not key.startswith(":")
    )
