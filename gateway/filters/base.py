"""The gateway filter interface: what a filter is, sees, and returns.

A filter is built once, from its validated config, by a :class:`FilterPlugin`
found by name (see :mod:`gateway.filters`); the proxy then runs the chain for
every call::

    on_request(call)                    in chain order, until one returns a Stop
    on_first_message(call, message)     only filters that read the method's first message
    on_stream_message(call, message)    each later message of a request stream, to the
                                        filters that read every message of the method
    ... the call is forwarded upstream ...
    on_call_end(call, outcome)          every filter whose on_request ran, in reverse order
                                        (every filter, when the caller went away while
                                        on_request hooks were still running)

Around them, ``await start()`` runs once before the gateway serves (open connections,
load caches) and ``await stop()`` once after it has drained, then ``close()``.

A filter stops the chain by *returning* a :class:`Stop` (the call then ends with its
status and never reaches an upstream); it never raises to refuse a call. Hooks it
does not override cost nothing: the chain skips them.

:class:`Call` is the one per-call object filters share: they read the method and
the caller's metadata, may edit ``upstream_metadata`` (what the upstream receives),
and record what later filters and the access log want to know (``key_id``,
``model``, ``annotations``).
"""

from __future__ import annotations

import enum
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc
from google.rpc import status_pb2
from prometheus_client import CollectorRegistry

from gateway.auth.context import SecurityContext
from gateway.policies import NoPolicies, PolicySource
from services.kernel.config import Section
from services.kernel.errors import STATUS_DETAILS_KEY, LlmgwError
from services.kernel.identity import Principal

ANONYMOUS = Principal()
"""The principal of a call no filter has authenticated."""

FILTER_API_VERSION = 1
"""Version of the filter interface; a plugin built for another one is refused."""

MetadataValue = str | bytes
Metadata = tuple[tuple[str, MetadataValue], ...]


class CallShape(enum.Enum):
    """The four kinds of gRPC call."""

    UNARY = "unary"
    CLIENT_STREAM = "client_stream"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"

    @property
    def streams_requests(self) -> bool:
        """True when the client may send more than one message."""
        return self in (CallShape.CLIENT_STREAM, CallShape.BIDI_STREAM)

    @property
    def streams_responses(self) -> bool:
        """True when the server may send more than one message."""
        return self in (CallShape.SERVER_STREAM, CallShape.BIDI_STREAM)


@dataclass(slots=True)
class Call:
    """One call through the gateway, as its filters see it.

    Set by the proxy and read-only for filters: ``method`` (``/package.Service/Method``),
    ``shape``, ``metadata`` (the caller's invocation metadata), ``peer`` and
    ``started`` (``time.perf_counter()`` at arrival).

    Filters may replace ``upstream_metadata`` (initially the caller's metadata less
    the keys gRPC manages itself) and set ``principal`` (who the caller is, once
    authenticated), ``key_id`` (the authenticated API key), ``model`` and
    ``annotations`` (extra fields for the access log; never secrets).
    """

    method: str
    shape: CallShape
    metadata: Metadata
    peer: str
    started: float
    upstream_metadata: Metadata
    principal: Principal = ANONYMOUS
    key_id: str = ""
    model: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> str:
        """The full gRPC service name, e.g. ``llmgw.inference.v1.InferenceService``."""
        return self.method[1:].rpartition("/")[0]

    @property
    def method_name(self) -> str:
        """The method name alone, e.g. ``Complete``."""
        return self.method.rpartition("/")[2]

    def header(self, key: str) -> MetadataValue | None:
        """The caller's first value of metadata ``key`` (lower case), or None."""
        for name, value in self.metadata:
            if name == key:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Stop:
    """Ends the call at the gateway with ``status`` (a non-OK ``google.rpc.Status``)."""

    status: status_pb2.Status

    @classmethod
    def of(cls, error: LlmgwError) -> Stop:
        """A stop with the status (code, public message, details) of ``error``."""
        return cls(error.to_status())

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code of the stop."""
        return _CODES[self.status.code]

    def trailing_metadata(self) -> Metadata:
        """The trailers that carry the rich status to the caller."""
        return ((STATUS_DETAILS_KEY, self.status.SerializeToString()),)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How a call ended, given to every filter's ``on_call_end``.

    ``trailing_metadata`` are the upstream's trailers (or the gateway's own when the
    call never got one). ``upstream_seconds`` is 0.0 and ``endpoint`` empty when no
    upstream was called; ``stopped_by`` names the filter that stopped the call.
    """

    code: grpc.StatusCode
    message: str
    trailing_metadata: Metadata
    duration_seconds: float
    cluster: str = ""
    endpoint: str = ""
    attempts: int = 0
    upstream_seconds: float = 0.0
    request_messages: int = 0
    response_messages: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    stopped_by: str = ""

    def trailer(self, key: str) -> MetadataValue | None:
        """The first trailer called ``key``, or None."""
        for name, value in self.trailing_metadata:
            if name == key:
                return value
        return None


class GatewayFilter(ABC):  # noqa: B024 - every hook has a default; subclasses pick theirs
    """Base of every filter. Override only the hooks the filter needs.

    ``name`` is set by the chain to the name the filter was configured under.
    Hooks run on the event loop for every call: they must not block, and the
    async ones should await only what the decision needs.
    """

    reads_first_message: bool = False
    """True (on the class or the instance) makes the proxy read the first request message
    before calling upstream and pass its serialized bytes to :meth:`on_first_message`
    (decoding is up to the filter)."""

    name: str = ""

    def reads_first_message_of(self, method: str) -> bool:
        """Whether the filter wants the first request message of calls of ``method``.

        Asked once per method; the default is :attr:`reads_first_message`. A filter
        that only needs some methods' messages says so here, sparing the others.
        """
        return self.reads_first_message

    async def on_request(self, call: Call) -> Stop | None:
        """Decide on a call from its method and metadata; None lets it continue."""
        return None

    async def on_first_message(self, call: Call, message: bytes) -> Stop | None:
        """Decide on a call from its first request message; None lets it continue.

        Not called when the client sends no message at all.
        """
        return None

    def reads_every_message_of(self, method: str) -> bool:
        """Whether the filter also wants every later request message of ``method``'s streams.

        Asked once per method, only of filters that read the first message; the default
        is False. Such a filter's :meth:`on_stream_message` sees each message the client
        streams after the first, before it goes upstream.
        """
        return False

    async def on_stream_message(self, call: Call, message: bytes) -> Stop | None:
        """Decide on a later message of a request stream; a Stop ends the whole call."""
        return None

    def on_call_end(self, call: Call, outcome: CallOutcome) -> None:
        """Observe the end of a call (log, count). Must not raise."""
        return None

    async def start(self) -> None:
        """Prepare to serve (connect, load caches); awaited once before the first call.

        Raising stops the gateway from starting, with the error logged.
        """
        return None

    async def stop(self) -> None:
        """Undo :meth:`start` (close connections); awaited once after the drain."""
        return None

    def close(self) -> None:
        """Release what the filter holds (files, connections); called once at stop."""
        return None


@dataclass(frozen=True, slots=True)
class FilterContext:
    """What the gateway gives a filter factory besides its config."""

    registry: CollectorRegistry
    """Where the filter registers its Prometheus metrics (the process's registry)."""
    policies: PolicySource = field(default_factory=NoPolicies)
    """The rate-limit and budget policies of callers, answered from memory."""
    security: SecurityContext = field(default_factory=SecurityContext)
    """API keys, the audit sink and per-call grants, for the authn and authz filters."""


ConfigT = TypeVar("ConfigT", bound=Section)


@dataclass(frozen=True, slots=True)
class FilterPlugin(Generic[ConfigT]):
    """A filter kind: its config model and the factory building a filter from it.

    Modules under ``gateway/filters/`` (and third-party packages, through the
    ``llmgw.gateway_filters`` entry-point group) expose one as ``plugin``.
    """

    config_model: type[ConfigT]
    build: Callable[[ConfigT, FilterContext], GatewayFilter]
    plugin_api_version: int = FILTER_API_VERSION


__all__ = [
    "FILTER_API_VERSION",
    "Call",
    "CallOutcome",
    "CallShape",
    "FilterContext",
    "FilterPlugin",
    "GatewayFilter",
    "Metadata",
    "Stop",
]
