"""The gRPC server bootstrap every llmgw process uses.

A process describes itself as a :class:`ServiceApp` (its gRPC services and start/stop
hooks); :class:`KernelServer` serves it on grpc.aio with the standard health service
(one status per service plus the overall ``""``), server reflection, message size
limits, keepalive, the kernel interceptor, and a graceful drain:

1. health turns NOT_SERVING for every service, so balancers stop sending new calls;
2. the listener stops accepting new calls;
3. in-flight calls get ``grace_period_seconds`` to finish, then are cancelled;
4. the app's stop hooks run.

:func:`serve` runs a server until SIGTERM or SIGINT and then drains it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from services.kernel.config import ServerSettings, Settings
from services.kernel.interceptors import KernelInterceptor
from services.kernel.metrics import MetricsEndpoint, ServerMetrics, serve_metrics

_log = logging.getLogger("llmgw.kernel.server")

Lifespan = Callable[[], AbstractAsyncContextManager[None]]
OVERALL = ""
"""The health-check service name that stands for the whole process."""


@dataclass(frozen=True, slots=True)
class ServiceRegistration:
    """One gRPC service of a process: its full name and how to add it to a server."""

    name: str
    add_to_server: Callable[[aio.Server], None]


def grpc_service(
    descriptor: FileDescriptor,
    service: str,
    add_servicer: Callable[[Any, aio.Server], None],
    servicer: object,
) -> ServiceRegistration:
    """A registration for ``servicer`` of the generated ``service`` in ``descriptor``."""
    full_name = descriptor.services_by_name[service].full_name
    return ServiceRegistration(full_name, lambda server: add_servicer(servicer, server))


@dataclass(frozen=True, slots=True)
class ServiceApp:
    """What a process serves.

    ``lifespans`` are entered in order before the listener opens (connect to
    databases, start consumers) and exited in reverse after the drain.
    """

    name: str
    services: tuple[ServiceRegistration, ...] = ()
    lifespans: tuple[Lifespan, ...] = ()
    interceptors: tuple[aio.ServerInterceptor, ...] = ()
    server_credentials: grpc.ServerCredentials | None = None
    """TLS of the listener; None serves plaintext."""
    registry: CollectorRegistry | None = None
    """Where the app registered its own metrics; :func:`serve` exposes it (with the
    server's metrics added) instead of a fresh registry."""


class KernelServer:
    """A started-on-demand grpc.aio server for one :class:`ServiceApp`."""

    def __init__(
        self, app: ServiceApp, settings: ServerSettings, registry: CollectorRegistry
    ) -> None:
        self.app = app
        self.settings = settings
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server = aio.server(
            interceptors=(KernelInterceptor(ServerMetrics(registry, app.name)), *app.interceptors),
            options=channel_options(settings),
        )
        self._resources = AsyncExitStack()

    async def start(self) -> int:
        """Enter the lifespans, bind, serve, and mark every service SERVING.

        Returns the bound port (useful when ``port`` is 0). If a lifespan or the bind
        fails, the lifespans already entered are exited before the error propagates.
        """
        try:
            for lifespan in self.app.lifespans:
                await self._resources.enter_async_context(lifespan())
            self._register()
            address = f"{self.settings.host}:{self.settings.port}"
            credentials = self.app.server_credentials
            self.port = (
                self._server.add_secure_port(address, credentials)
                if credentials is not None
                else self._server.add_insecure_port(address)
            )
            await self._server.start()
        except BaseException:
            await self._resources.aclose()
            raise
        for name in (OVERALL, *self.service_names()):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        _log.info("serving", extra={"address": f"{self.settings.host}:{self.port}"})
        return self.port

    def service_names(self) -> list[str]:
        """The full names of the app's own services (health and reflection excluded)."""
        return [service.name for service in self.app.services]

    async def drain(self, grace_seconds: float | None = None) -> None:
        """Stop gracefully: NOT_SERVING, refuse new calls, let in-flight calls finish."""
        grace = self.settings.grace_period_seconds if grace_seconds is None else grace_seconds
        _log.info("draining", extra={"grace_seconds": grace})
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        await self._resources.aclose()
        _log.info("stopped")

    async def wait_for_termination(self) -> None:
        """Return when the server has stopped."""
        await self._server.wait_for_termination()

    def _register(self) -> None:
        for service in self.app.services:
            service.add_to_server(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        if self.settings.reflection:
            reflection.enable_server_reflection(
                (*self.service_names(), health.SERVICE_NAME, reflection.SERVICE_NAME),
                self._server,
            )


def channel_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """grpc core options for the listener: size limits, keepalive, no port sharing."""
    options = [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(settings.min_client_ping_interval_seconds * 1000),
        ),
        # Two processes must never silently share one port.
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_idle_seconds > 0:
        options.append(
            ("grpc.max_connection_idle_ms", int(settings.max_connection_idle_seconds * 1000))
        )
    return options


async def serve(
    app: ServiceApp,
    settings: Settings,
    *,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    on_serving: Callable[[KernelServer, MetricsEndpoint | None], None] | None = None,
) -> None:
    """Serve ``app`` until one of ``stop_signals`` arrives, then drain and return."""
    registry = app.registry if app.registry is not None else CollectorRegistry()
    server = KernelServer(app, settings.server, registry)
    metrics = (
        serve_metrics(registry, settings.metrics.host, settings.metrics.port)
        if settings.metrics.enabled
        else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if on_serving is not None:
            on_serving(server, metrics)
        await stop.wait()
        await server.drain()
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        if metrics is not None:
            metrics.close()


def health_status_name(status: int) -> str:
    """The enum name of a ``HealthCheckResponse.ServingStatus`` value."""
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return name


__all__ = [
    "OVERALL",
    "KernelServer",
    "ServiceApp",
    "ServiceRegistration",
    "channel_options",
    "grpc_service",
    "health_status_name",
    "serve",
]
