"""Optional checks a :class:`~provider_adapters.conformance.wire.ProviderWire` may offer.

The kit looks for these methods on a wire with ``isinstance`` (both protocols are
runtime-checkable) and runs them when present; a wire without them still passes.

* :class:`ChecksCredentials` -- the exact headers that carry the deployment's
  credentials. Without it the kit only checks that the secret appears in some
  header or query value.
* :class:`ChecksRequests` -- a look at each request the adapter sent in the
  successful scenarios (path, query, body fields); it fails by raising
  ``AssertionError``.
* :class:`FailsMidStream` -- a stream that starts answering and then reports,
  in the provider's own in-stream error format, that the provider failed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from provider_adapters.base import Deployment
from provider_adapters.conformance.fake_server import RecordedRequest
from provider_adapters.conformance.wire import WireReply


class Operation(enum.Enum):
    """Which adapter call produced a request."""

    COMPLETE = "complete"
    STREAM = "stream"
    EMBED = "embed"


@runtime_checkable
class ChecksCredentials(Protocol):
    """A wire that knows where its provider expects credentials."""

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """Header names (lower case) and exact values every request must carry."""
        ...


@runtime_checkable
class ChecksRequests(Protocol):
    """A wire that can judge the requests an adapter sends."""

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        """Raise ``AssertionError`` if ``request`` is not what the provider expects."""
        ...


@runtime_checkable
class FailsMidStream(Protocol):
    """A wire that knows how its provider reports a failure after a stream began."""

    def failure_mid_stream(self, text: str) -> WireReply:
        """A 200 stream that sends ``text``, then the provider's in-stream error.

        The error is one worth retrying: an overloaded or failing server.
        """
        ...
