"""The gateway where things go wrong: replays, closed channels, ejected and removed endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from gateway.chain import FilterChain
from gateway.clusters.cluster import Cluster
from gateway.clusters.endpoint import Endpoint
from gateway.clusters.health_check import HealthChecker
from gateway.filters.base import Call, CallOutcome, CallShape, FilterContext
from gateway.filters.metrics import MAX_METHODS as METRICS_MAX_METHODS
from gateway.filters.metrics import OTHER_METHOD, GatewayMetrics
from gateway.model_field import ModelFieldReader
from gateway.proxy import Proxy, _Exchange
from gateway.routes import Route, RouteTable
from gateway.services_handler import MAX_CACHED_METHODS, RoutedService
from gateway.settings import (
    ClusterSettings,
    DnsDiscovery,
    HealthCheckSettings,
    OutlierDetectionSettings,
    RouteMatch,
    RouteSettings,
)
from services.kernel.config import ServerSettings
from services.kernel.errors import STATUS_DETAILS_KEY
from tests.unit.gateway.conftest import StartGateway, StartReplicas, cluster, eventually
from tests.unit.gateway.raw_upstream import INFERENCE

_NO_HEALTH_CHECKS = HealthCheckSettings(enabled=False)


def _cluster(*addresses: str) -> Cluster:
    settings = ClusterSettings(endpoints=addresses, health_check=_NO_HEALTH_CHECKS)
    return Cluster("upstream", settings, ServerSettings())


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method


def test_a_methods_handler_is_built_once_and_the_cache_is_bounded() -> None:
    upstream = _cluster("127.0.0.1:1")
    unknown = "test.unknown.v1.Service"  # not in the descriptor pool: any method name goes
    routes = RouteTable(
        (
            RouteSettings(match=RouteMatch(service=INFERENCE), cluster="upstream"),
            RouteSettings(match=RouteMatch(service=unknown), cluster="upstream"),
        ),
        {"upstream": upstream},
    )
    proxy = Proxy(FilterChain(()))
    service = RoutedService(INFERENCE, routes, proxy)
    first = service.service(_Details(f"/{INFERENCE}/Complete"))  # type: ignore[arg-type]
    assert first is not None
    assert service.service(_Details(f"/{INFERENCE}/Complete")) is first  # type: ignore[arg-type]
    assert service.service(_Details(f"/{INFERENCE}/Nope")) is None  # type: ignore[arg-type]

    open_ended = RoutedService(unknown, routes, proxy)
    for index in range(MAX_CACHED_METHODS + 50):
        handler = open_ended.service(_Details(f"/{unknown}/M{index}"))  # type: ignore[arg-type]
        assert handler is not None
    assert len(open_ended._handlers) == MAX_CACHED_METHODS


async def test_a_closed_channel_fails_its_health_check_instead_of_ending_the_checks() -> None:
    channel = aio.insecure_channel("127.0.0.1:1")
    await channel.close()
    endpoint = Endpoint("127.0.0.1:1", channel)
    settings = HealthCheckSettings(unhealthy_threshold=1, interval_seconds=0.01)
    checker = HealthChecker("upstream", settings, lambda: (endpoint,))
    await checker.check_all()  # raised UsageError ("Channel is closed") before
    assert not endpoint.healthy
    task = asyncio.create_task(checker.run())
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_upstream_status_worded_like_a_connect_failure_is_not_replayed(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(
        cluster((r.address for r in replicas), health_check=_NO_HEALTH_CHECKS)
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"x", metadata=(("x-test-fail", "connect"),))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert sum(len(replica.seen) for replica in replicas) == 1  # reached once, never replayed
    assert running.log_lines()[-1]["attempts"] == 1


async def test_a_lone_ejected_endpoint_still_takes_calls(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    outliers = OutlierDetectionSettings(consecutive_failures=1, base_ejection_seconds=60)
    running = await start_gateway(
        cluster((replicas[0].address,), health_check=_NO_HEALTH_CHECKS, outlier_detection=outliers)
    )
    with pytest.raises(aio.AioRpcError):
        await running.unary()(b"x", metadata=(("x-test-fail", "unavailable"),))
    (endpoint,) = running.gateway.clusters["upstream"].endpoints
    assert endpoint.ejected_until > 0
    assert (await running.unary()(b"x")).startswith(b"a:")  # not a minute of UNAVAILABLE


class _RemovedWhileConnecting(Endpoint):
    """Connects after a pause during which discovery drops the first one asked."""

    __slots__ = ()
    cluster: Any = None
    victims: list[str] = []  # noqa: RUF012 - shared by the two test endpoints on purpose

    async def connect(self, timeout: float) -> bool:
        if not self.victims:
            self.victims.append(self.address)
            survivors = [e.address for e in self.cluster.endpoints if e is not self]
            self.cluster.set_addresses(survivors)
        await asyncio.sleep(0)
        return True


async def test_an_endpoint_removed_while_connecting_is_skipped_without_blame() -> None:
    upstream = _cluster("127.0.0.1:1", "127.0.0.1:2")
    await upstream.start()
    try:
        _RemovedWhileConnecting.cluster = upstream
        _RemovedWhileConnecting.victims = []
        for endpoint in upstream.endpoints:
            endpoint.__class__ = _RemovedWhileConnecting
        before = upstream.endpoints
        route = Route(INFERENCE, "", upstream, None, retries=2)
        exchange = _Exchange(route, ())
        chosen = await Proxy(FilterChain(()))._connect(exchange, [])
        removed = next(e for e in before if e.address == _RemovedWhileConnecting.victims[0])
        assert chosen is not None and chosen is not removed
        assert removed.removed and removed.in_flight == 0
        assert removed.consecutive_failures == 0  # not the endpoint's fault
        assert chosen.in_flight == 1
    finally:
        await upstream.stop()


class _BrokenDownstream:
    """A caller whose writes fail (not a cancellation) once the stream started."""

    def time_remaining(self) -> float | None:
        return None

    async def send_initial_metadata(self, metadata: Any) -> None:
        return None

    async def write(self, message: bytes) -> None:
        raise RuntimeError("downstream broke")


async def test_a_failure_relaying_to_the_caller_cancels_the_upstream_call(
    start_replicas: StartReplicas,
) -> None:
    replicas = await start_replicas(1)
    upstream = _cluster(replicas[0].address)
    await upstream.start()
    try:
        method = f"/{INFERENCE}/StreamComplete"
        route = Route(INFERENCE, "", upstream, None, retries=0)
        exchange = _Exchange(route, ())
        call = Call(
            method=method,
            shape=CallShape.SERVER_STREAM,
            metadata=(),
            peer="test",
            started=0.0,
            upstream_metadata=(("x-test-sleep", "0.2"),),
        )
        proxy = Proxy(FilterChain(()))
        context: Any = _BrokenDownstream()
        with pytest.raises(RuntimeError):
            await proxy._forward_server_stream(call, exchange, context, b"50")
        (endpoint,) = upstream.endpoints
        assert endpoint.in_flight == 0  # the attempt was ended
        await eventually(lambda: replicas[0].cancelled == 1)
    finally:
        await upstream.stop()


async def test_per_method_state_stays_bounded_for_method_names_callers_make_up() -> None:
    unknown = "test.unknown.v1.Service"
    registry = CollectorRegistry()
    metrics = GatewayMetrics(FilterContext(registry))
    reader = ModelFieldReader()
    channel = aio.insecure_channel("127.0.0.1:1")  # never connected: callables only
    endpoint = Endpoint("127.0.0.1:1", channel)
    names = [f"/{unknown}/M{index}" for index in range(3000)]
    for method in names:
        call = Call(method, CallShape.UNARY, (), "test", 0.0, ())
        metrics.on_call_end(call, CallOutcome(grpc.StatusCode.OK, "", (), 0.001))
        assert reader.read(method, b"") == ""
        endpoint.unary_unary(method)
    labels = {
        sample.labels["grpc_method"]
        for family in registry.collect()
        if family.name == "llmgw_gateway_requests"
        for sample in family.samples
    }
    assert len(labels) == METRICS_MAX_METHODS + 1 and OTHER_METHOD in labels
    other = registry.get_sample_value(
        "llmgw_gateway_requests_total",
        {"grpc_service": unknown, "grpc_method": OTHER_METHOD, "grpc_code": "OK"},
    )
    assert other == len(names) - METRICS_MAX_METHODS
    assert len(reader._paths) <= 1024
    assert len(endpoint._multicallables) <= 1024
    await channel.close()


async def test_a_caller_cancelling_does_not_reset_an_endpoints_failure_count(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    outliers = OutlierDetectionSettings(consecutive_failures=2, base_ejection_seconds=60)
    running = await start_gateway(
        cluster((replicas[0].address,), health_check=_NO_HEALTH_CHECKS, outlier_detection=outliers)
    )
    (endpoint,) = running.gateway.clusters["upstream"].endpoints
    failing = (("x-test-fail", "unavailable"),)
    with pytest.raises(aio.AioRpcError):
        await running.unary()(b"x", metadata=failing)
    slow = running.unary()(b"x", metadata=(("x-test-sleep", "5"),))
    await eventually(lambda: replicas[0].in_progress == 1)
    slow.cancel()
    await eventually(lambda: replicas[0].cancelled == 1 and endpoint.in_flight == 0)
    with pytest.raises(aio.AioRpcError):
        await running.unary()(b"x", metadata=failing)
    assert endpoint.ejected_until > 0  # two failures in a row; the cancel was the caller's


def test_only_grpc_cores_own_connect_failure_is_retryable() -> None:
    route = Route(INFERENCE, "", _cluster("127.0.0.1:1"), None, retries=2)
    exchange = _Exchange(route, ())
    exchange.attempts = 1
    proxy = Proxy(FilterChain(()))
    local = "failed to connect to all addresses; last error: UNKNOWN: Connection refused"
    empty = aio.Metadata()

    def error(details: str, trailers: aio.Metadata = empty) -> aio.AioRpcError:
        return aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, empty, trailers, details)

    assert proxy._may_retry(exchange, error(local))
    with_status = aio.Metadata((STATUS_DETAILS_KEY, b"\x08\x0e"))
    assert not proxy._may_retry(exchange, error(local, with_status))  # an upstream said so
    assert not proxy._may_retry(exchange, error("upstream failed to connect to its database"))
    assert not proxy._may_retry(exchange, error("Socket closed"))
    exchange.attempts = 3
    assert not proxy._may_retry(exchange, error(local))  # retries spent


async def test_a_failing_resolver_neither_ends_dns_refresh_nor_breaks_stop() -> None:
    answers: list[list[str] | Exception] = [["127.0.0.1:1"], RuntimeError("bad answer")]

    async def resolver(dns: DnsDiscovery) -> list[str]:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    dns = DnsDiscovery(name="inference.example", port=1, refresh_seconds=0.01)
    settings = ClusterSettings(dns=dns, health_check=_NO_HEALTH_CHECKS)
    upstream = Cluster("upstream", settings, ServerSettings(), resolver)
    await upstream.start()
    await asyncio.sleep(0.05)  # several refreshes, each failing
    answers[0] = ["127.0.0.1:2"]
    await eventually(lambda: [e.address for e in upstream.endpoints] == ["127.0.0.1:2"])
    await upstream.stop()
    assert upstream.endpoints == ()
