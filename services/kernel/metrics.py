"""Prometheus metrics of a process: the per-RPC server metrics and the ``/metrics`` endpoint.

Each process owns one :class:`prometheus_client.CollectorRegistry`, created at start
and passed to whatever records metrics; nothing registers into a global registry.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


class ServerMetrics:
    """Counters and histograms of the gRPC calls a server handles, by method and code."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        labels = ("grpc_service", "grpc_method", "grpc_type")
        self.started = Counter(
            "llmgw_grpc_server_started_total",
            "RPCs started on the server.",
            labels,
            registry=registry,
        )
        self.handled = Counter(
            "llmgw_grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.latency = Histogram(
            "llmgw_grpc_server_handling_seconds",
            "Time from the start of an RPC to its status.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "llmgw_grpc_server_in_flight",
            "RPCs currently being handled.",
            ("grpc_service", "grpc_method"),
            registry=registry,
        )
        info = Gauge(
            "llmgw_process_info",
            "Constant 1, labelled with the service.",
            ("service",),
            registry=registry,
        )
        info.labels(service=service).set(1)


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """A running ``/metrics`` HTTP endpoint; :meth:`close` stops it."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and wait for the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve ``registry`` at ``http://host:port/metrics`` (``port`` 0 picks a free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(host, server.server_port, server, thread)
