"""The gRPC handler of each routed service: finds a method's route and call shape.

The shape of a method comes from the protobuf descriptor pool (every llmgw API is
in it). Methods of services the pool does not know are forwarded as bidirectional
streams, which carry any call shape unchanged on the wire; methods a known service
does not have are answered UNIMPLEMENTED by the gateway itself.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pool

from gateway.filters.base import CallShape
from gateway.proxy import Handler, Proxy
from gateway.routes import RouteTable
from services.kernel.server import ServiceRegistration

_SHAPES = {
    (False, False): CallShape.UNARY,
    (True, False): CallShape.CLIENT_STREAM,
    (False, True): CallShape.SERVER_STREAM,
    (True, True): CallShape.BIDI_STREAM,
}


def call_shape(method: str, pool: descriptor_pool.DescriptorPool | None = None) -> CallShape | None:
    """The shape of ``method`` (``/package.Service/Method``).

    BIDI_STREAM for a service unknown to ``pool`` (default: the default pool), None
    for a method its known service does not declare.
    """
    service_name, _, name = method[1:].rpartition("/")
    try:
        service = (pool or descriptor_pool.Default()).FindServiceByName(service_name)
    except KeyError:
        return CallShape.BIDI_STREAM
    descriptor = service.methods_by_name.get(name)
    if descriptor is None:
        return None
    return _SHAPES[(bool(descriptor.client_streaming), bool(descriptor.server_streaming))]


MAX_CACHED_METHODS = 1024
"""How many method handlers a routed service keeps; more are built per call.

A service the descriptor pool knows has a fixed set of methods, but the method
names of a service it does not know come from the callers, so the cache is bounded.
"""


class RoutedService(grpc.GenericRpcHandler):
    """Serves the methods of one routed service by forwarding them through the proxy.

    The handler of a method (its route, call shape and first-message readers) is
    built on its first call and reused, so a call costs one dictionary lookup here.
    """

    def __init__(self, service: str, routes: RouteTable, proxy: Proxy) -> None:
        self.service_name = service
        self._prefix = f"/{service}/"
        self._routes = routes
        self._proxy = proxy
        self._handlers: dict[str, Handler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        """The forwarding handler of the called method, or None (UNIMPLEMENTED)."""
        method: str = handler_call_details.method
        try:
            return self._handlers[method]
        except KeyError:
            pass  # first call of the method (or one past the cache's bound)
        if not method.startswith(self._prefix):
            return None
        handler = self._build(method)
        if handler is not None and len(self._handlers) < MAX_CACHED_METHODS:
            self._handlers[method] = handler
        return handler

    def _build(self, method: str) -> Handler | None:
        route = self._routes.match(method)
        shape = call_shape(method)
        if route is None or shape is None:
            return None
        return self._proxy.handler(method, shape, route)

    def registration(self) -> ServiceRegistration:
        """This service, ready to add to the gateway's server (health and reflection list it)."""

        def add(server: Any) -> None:
            server.add_generic_rpc_handlers((self,))

        return ServiceRegistration(self.service_name, add)
