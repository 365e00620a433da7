"""The gateway assembled from its settings: filter chain, clusters, routes and listeners.

The gRPC listener and the OpenAI-compatible HTTP edge (:mod:`gateway.http`) share one
:class:`~gateway.proxy.Proxy`, so both run every call through the same chain,
routes and clusters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib.metadata import EntryPoint

from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from gateway import api_descriptors
from gateway.admin.runtime import SecurityRuntime
from gateway.chain import FilterChain, build_chain
from gateway.clusters.cluster import Cluster
from gateway.clusters.discovery import Resolver, resolve_dns
from gateway.filters import filter_registry
from gateway.filters.base import FilterContext
from gateway.http.server import HttpEdge
from gateway.proxy import Proxy
from gateway.routes import RouteTable
from gateway.services_handler import RoutedService
from gateway.settings import GatewaySettings
from gateway.tls import listener_credentials
from services.kernel.config import ConfigError
from services.kernel.server import ServiceApp, ServiceRegistration

_RESERVED_SERVICES = frozenset(
    {health.SERVICE_NAME, reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection"}
)


class Gateway:
    """The edge of one process, built once from its settings.

    ``own_services`` are the services the gateway serves itself; routes may not
    name them. ``security`` (keys, policies, the admin API and audit) is what the
    filters check calls against and read policies from; without it no API key is
    known and nothing is limited. ``resolver`` resolves DNS clusters and
    ``available_filters`` adds filter entry points (both for tests and embedders).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        registry: CollectorRegistry,
        own_services: Iterable[ServiceRegistration] = (),
        resolver: Resolver = resolve_dns,
        available_filters: Iterable[EntryPoint] | None = None,
        *,
        security: SecurityRuntime | None = None,
    ) -> None:
        assert api_descriptors.API_FILES  # the upstream APIs are in the descriptor pool
        section = settings.gateway
        self.settings = settings
        self.registry = registry
        self.security = security
        self.own_services = tuple(own_services)
        context = FilterContext(registry)
        if security is not None:
            self.own_services += (security.registration(),)
            context = FilterContext(registry, policies=security.cache, security=security.context)
        self.chain: FilterChain = build_chain(
            section.filters, filter_registry(available_filters), context
        )
        self.clusters = {
            name: Cluster(name, cluster, settings.server, resolver)
            for name, cluster in section.clusters.items()
        }
        self.routes = RouteTable(section.routes, self.clusters)
        own = _RESERVED_SERVICES | {service.name for service in self.own_services}
        clashing = sorted(own & set(self.routes.services()))
        if clashing:
            raise ConfigError(f"gateway routes may not take the gateway's own services: {clashing}")
        proxy = Proxy(self.chain)
        self.routed = tuple(
            RoutedService(service, self.routes, proxy) for service in self.routes.services()
        )
        self.http: HttpEdge | None = (
            HttpEdge(section.http, proxy, self.routes) if section.http.enabled else None
        )

    def app(self) -> ServiceApp:
        """The process: own services, then one forwarding handler per routed service;
        the HTTP edge listens once the clusters and filters have started."""
        tls = self.settings.gateway.listener.tls
        http = () if self.http is None else (self.http.lifespan,)
        return ServiceApp(
            name="gateway",
            services=(*self.own_services, *(service.registration() for service in self.routed)),
            lifespans=(
                *((self.security.lifespan,) if self.security is not None else ()),
                self.lifespan,
                *http,
            ),
            server_credentials=listener_credentials(tls) if tls is not None else None,
            registry=self.registry,
        )

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open the clusters and start the filters before serving; undo both after the drain."""
        started: list[Cluster] = []
        try:
            for cluster in self.clusters.values():
                await cluster.start()
                started.append(cluster)
            await self.chain.start()
            try:
                yield
            finally:
                await self.chain.stop()
        finally:
            for cluster in reversed(started):
                await cluster.stop()
            self.chain.close()
