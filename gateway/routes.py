"""Routes: which cluster serves a call, chosen by gRPC service and method-name prefix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.clusters.cluster import Cluster
from gateway.settings import RouteSettings


@dataclass(frozen=True, slots=True)
class Route:
    """Where the calls of a service (and method prefix) go, and their limits."""

    service: str
    method_prefix: str
    cluster: Cluster
    timeout_seconds: float | None
    retries: int

    def matches(self, method: str) -> bool:
        """True for ``/service/Method`` paths this route takes."""
        service, _, name = method[1:].rpartition("/")
        return service == self.service and name.startswith(self.method_prefix)


class RouteTable:
    """The routes in configured order; the first matching route wins."""

    def __init__(self, routes: Sequence[RouteSettings], clusters: Mapping[str, Cluster]) -> None:
        self.routes = tuple(
            Route(
                service=route.match.service,
                method_prefix=route.match.method_prefix,
                cluster=clusters[route.cluster],
                timeout_seconds=route.timeout_seconds,
                retries=route.retries,
            )
            for route in routes
        )

    def services(self) -> list[str]:
        """The routed service names, in first-appearance order."""
        return list(dict.fromkeys(route.service for route in self.routes))

    def match(self, method: str) -> Route | None:
        """The route of ``method`` (``/package.Service/Method``), or None."""
        for route in self.routes:
            if route.matches(method):
                return route
        return None
