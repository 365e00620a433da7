"""The provider-adapter plugin interface: the one extension point for LLM providers.

An adapter translates llmgw's inference messages (``llmgw.inference.v1``) to one
provider's HTTP API and back. It is built once per deployment from a frozen
:class:`Deployment` and then serves many concurrent requests.

A provider package exposes an :class:`AdapterPlugin` in the
``llmgw.provider_adapters`` entry-point group::

    [project.entry-points."llmgw.provider_adapters"]
    myprovider = "my_package:plugin"

Contracts every adapter keeps (the conformance kit in
``provider_adapters.conformance`` checks them):

* :meth:`ProviderAdapter.stream` yields zero or more ``CompletionChunk`` and then
  exactly one ``CompletionResult`` (finish reason and usage), or raises;
* failures are raised as :mod:`provider_adapters.errors` exceptions, never as
  transport exceptions;
* cancelling the awaiting task closes the upstream HTTP request at once.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import UnsupportedOperation
from services.kernel.plugins import PluginGroup, PluginRegistry, PluginSpec

PLUGIN_API_VERSION = 1
"""Major version of this interface. A plugin built for another version is refused."""

CompletionRequest = inference_pb2.CompletionRequest
CompletionChunk = inference_pb2.CompletionChunk
CompletionResult = inference_pb2.CompletionResult
EmbedRequest = inference_pb2.EmbedRequest
EmbedResponse = inference_pb2.EmbedResponse
StreamEvent = CompletionChunk | CompletionResult


class Capability(enum.StrEnum):
    """What a provider can do; the router only sends an adapter what it declares."""

    STREAMING = "streaming"
    TOOLS = "tools"
    JSON_SCHEMA = "json_schema"
    EMBEDDINGS = "embeddings"
    VISION = "vision"
    FINE_TUNING = "fine_tuning"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream time limits of one deployment, in seconds.

    ``first_byte`` bounds the wait for the response headers, ``between_chunks``
    each wait for more body bytes, ``total`` the whole request including the
    streamed body.
    """

    connect: float = 5.0
    first_byte: float = 60.0
    between_chunks: float = 30.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential. Its ``repr`` and ``str`` never show the value."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "Secret(***)"


def _frozen(options: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(options or {}))


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything an adapter needs to reach one deployment of one model.

    ``options`` carries provider-specific settings (e.g. ``api_version`` for
    Azure OpenAI, or the knobs of the simulated provider); each adapter
    documents the keys it reads and rejects unknown ones at construction.
    """

    provider: str
    model: str
    base_url: str = ""
    api_key: Secret | None = None
    options: Mapping[str, str] = field(default_factory=_frozen)
    timeouts: Timeouts = Timeouts()
    max_connections: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen(self.options))


class ProviderAdapter(abc.ABC):
    """One deployment's translator between llmgw messages and a provider API."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    @abc.abstractmethod
    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """Run one completion and return the whole result (message filled in)."""

    @abc.abstractmethod
    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Run one completion as deltas followed by exactly one result."""

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Embed ``request.inputs``; adapters without embeddings keep this default."""
        raise UnsupportedOperation(f"{type(self).__name__} does not support embeddings")

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        """Input tokens of ``request`` as the provider counts them; None if unknown."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release pooled connections; the adapter is unusable afterwards."""


@dataclass(frozen=True, slots=True)
class AdapterPlugin:
    """What the entry point names: a provider and how to build its adapters."""

    name: str
    create: Callable[[Deployment], ProviderAdapter]
    capabilities: frozenset[Capability]
    plugin_api_version: int = PLUGIN_API_VERSION


ADAPTERS = PluginSpec(PluginGroup.PROVIDER_ADAPTERS.value, AdapterPlugin, PLUGIN_API_VERSION)


def adapter_registry() -> PluginRegistry[AdapterPlugin]:
    """The installed provider adapters, by name."""
    return PluginRegistry(ADAPTERS)
