"""The ``metrics`` filter: Prometheus metrics of the calls through the gateway.

=========================================  ==========================================
``llmgw_gateway_requests_total``           calls, by service, method and status code
``llmgw_gateway_request_seconds``          time from arrival to status
``llmgw_gateway_upstream_seconds``         time of the upstream call, by cluster
``llmgw_gateway_streams_in_flight``        streaming calls in progress
``llmgw_gateway_bytes_total``              message bytes, by direction
``llmgw_gateway_upstream_attempts_total``  upstream attempts, by cluster
=========================================  ==========================================

Labels are bounded: the gateway only serves the methods of routed services, and a
routed service the gateway has no descriptor of (whose method names are the
callers') gets at most ``MAX_METHODS`` method labels; further methods count as
``other``.
"""

from __future__ import annotations

from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from gateway.filters.base import (
    Call,
    CallOutcome,
    CallShape,
    FilterContext,
    FilterPlugin,
    GatewayFilter,
)
from services.kernel.config import Section
from services.kernel.metrics import LATENCY_BUCKETS

MAX_METHODS = 512
"""Distinct (method, call shape) label sets before further methods count as ``other``."""
OTHER_METHOD = "other"


class MetricsConfig(Section):
    """Config of the metrics filter (none yet; the section keeps the shape uniform)."""


class GatewayMetrics(GatewayFilter):
    """Counts every call that reaches it; registers its metrics once at build."""

    def __init__(self, context: FilterContext) -> None:
        registry = context.registry
        call_labels = ("grpc_service", "grpc_method")
        self._requests = Counter(
            "llmgw_gateway_requests_total",
            "Calls through the gateway, by status code.",
            (*call_labels, "grpc_code"),
            registry=registry,
        )
        self._latency = Histogram(
            "llmgw_gateway_request_seconds",
            "Time from a call's arrival at the gateway to its status.",
            call_labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._upstream_latency = Histogram(
            "llmgw_gateway_upstream_seconds",
            "Time of the upstream call, from its start to its status.",
            ("cluster",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._streams = Gauge(
            "llmgw_gateway_streams_in_flight",
            "Streaming calls in progress through the gateway.",
            (*call_labels, "grpc_type"),
            registry=registry,
        )
        self._bytes = Counter(
            "llmgw_gateway_bytes_total",
            "Message bytes through the gateway (received: from clients; sent: to clients).",
            (*call_labels, "direction"),
            registry=registry,
        )
        self._attempts = Counter(
            "llmgw_gateway_upstream_attempts_total",
            "Upstream attempts, retries included.",
            ("cluster",),
            registry=registry,
        )

        self._children: dict[tuple[str, str], _MethodChildren] = {}
        self._cluster_children: dict[str, tuple[Any, Any]] = {}

    def _of(self, call: Call) -> _MethodChildren:
        key = (call.method, call.shape.value)
        children = self._children.get(key)
        if children is None:
            service, method = call.service, call.method_name
            if len(self._children) >= MAX_METHODS:
                key, method = (f"/{service}/{OTHER_METHOD}", call.shape.value), OTHER_METHOD
                children = self._children.get(key)
                if children is not None:
                    return children
            children = self._children[key] = _MethodChildren(
                requests=self._requests,
                labels=(service, method),
                latency=self._latency.labels(service, method),
                streams=self._streams.labels(service, method, call.shape.value),
                received=self._bytes.labels(service, method, "received"),
                sent=self._bytes.labels(service, method, "sent"),
            )
        return children

    async def on_request(self, call: Call) -> None:
        """Count a stream as in flight."""
        if call.shape is not CallShape.UNARY:
            self._of(call).streams.inc()

    def on_call_end(self, call: Call, outcome: CallOutcome) -> None:
        """Record the call's status, latencies and bytes."""
        children = self._of(call)
        if call.shape is not CallShape.UNARY:
            children.streams.dec()
        children.handled(outcome.code).inc()
        children.latency.observe(outcome.duration_seconds)
        children.received.inc(outcome.request_bytes)
        children.sent.inc(outcome.response_bytes)
        if outcome.cluster and outcome.attempts:
            attempts, upstream_latency = self._of_cluster(outcome.cluster)
            attempts.inc(outcome.attempts)
            upstream_latency.observe(outcome.upstream_seconds)

    def _of_cluster(self, cluster: str) -> tuple[Any, Any]:
        children = self._cluster_children.get(cluster)
        if children is None:
            children = self._cluster_children[cluster] = (
                self._attempts.labels(cluster),
                self._upstream_latency.labels(cluster),
            )
        return children


class _MethodChildren:
    """The metric children of one method, looked up once (labels() takes a lock)."""

    __slots__ = ("_by_code", "_labels", "_requests", "latency", "received", "sent", "streams")

    def __init__(
        self,
        *,
        requests: Counter,
        labels: tuple[str, str],
        latency: Any,
        streams: Any,
        received: Any,
        sent: Any,
    ) -> None:
        self._requests = requests
        self._labels = labels
        self._by_code: dict[grpc.StatusCode, Any] = {}
        self.latency = latency
        self.streams = streams
        self.received = received
        self.sent = sent

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._requests.labels(*self._labels, code.name)
        return child


def build(config: MetricsConfig, context: FilterContext) -> GatewayMetrics:
    """The metrics filter, registered in ``context.registry``."""
    return GatewayMetrics(context)


plugin = FilterPlugin(config_model=MetricsConfig, build=build)
