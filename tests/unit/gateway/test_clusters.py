"""Clusters through the gateway: balancing, health checks, outlier ejection, DNS, retries."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import grpc
import pytest
from grpc import aio

from gateway.clusters.balancers import LeastRequest, RoundRobin
from gateway.clusters.endpoint import Endpoint
from gateway.clusters.retry_budget import RetryBudget
from gateway.settings import (
    DnsDiscovery,
    HealthCheckSettings,
    LbPolicy,
    OutlierDetectionSettings,
    RetryBudgetSettings,
)
from tests.unit.gateway.conftest import StartGateway, StartReplicas, cluster, eventually


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _names(running: Any, count: int, **kwargs: Any) -> list[str]:
    replies = [await running.unary()(b"x", **kwargs) for _ in range(count)]
    return [reply.split(b":")[0].decode() for reply in replies]


def test_round_robin_takes_turns() -> None:
    endpoints = [Endpoint(f"e{i}", None) for i in range(3)]  # type: ignore[arg-type]
    balancer = RoundRobin()
    picks = [balancer.pick(endpoints).address for _ in range(6)]
    assert sorted(picks) == ["e0", "e0", "e1", "e1", "e2", "e2"]


def test_least_request_prefers_the_less_busy_of_two() -> None:
    endpoints = [Endpoint(f"e{i}", None) for i in range(2)]  # type: ignore[arg-type]
    endpoints[0].in_flight = 10
    balancer = LeastRequest(random.Random(7))
    assert {balancer.pick(endpoints).address for _ in range(20)} == {"e1"}


def test_retry_budget_is_a_share_of_active_calls_with_a_floor() -> None:
    budget = RetryBudget(RetryBudgetSettings(budget_percent=20, min_retry_concurrency=2))
    budget.active_calls = 20
    assert [budget.try_acquire() for _ in range(5)] == [True, True, True, True, False]
    budget.release()
    assert budget.try_acquire()
    budget.active_calls = 0
    assert not budget.try_acquire()


async def test_least_request_spreads_concurrent_calls(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(
        cluster((r.address for r in replicas), lb_policy=LbPolicy.LEAST_REQUEST)
    )
    slow = (("x-test-sleep", "0.3"),)
    await asyncio.gather(*(running.unary()(b"x", metadata=slow) for _ in range(8)))
    assert sorted(len(replica.seen) for replica in replicas) == [4, 4]


async def test_a_not_serving_replica_is_taken_out_and_readmitted(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(cluster(r.address for r in replicas))
    endpoints = running.gateway.clusters["upstream"].endpoints
    await replicas[0].set_serving(False)
    await eventually(lambda: not endpoints[0].healthy)
    assert set(await _names(running, 6)) == {"b"}
    await replicas[0].set_serving(True)
    await eventually(lambda: endpoints[0].healthy)
    assert set(await _names(running, 6)) == {"a", "b"}


async def test_consecutive_failures_eject_a_replica_until_its_time_is_up(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    outliers = OutlierDetectionSettings(consecutive_failures=2, base_ejection_seconds=0.5)
    running = await start_gateway(
        cluster(
            (r.address for r in replicas),
            health_check=HealthCheckSettings(enabled=False),
            outlier_detection=outliers,
        )
    )
    failing = (("x-test-fail", "unavailable"),)
    codes = []
    for _ in range(4):  # round robin: a, b, a, b -> each fails twice
        with pytest.raises(aio.AioRpcError) as caught:
            await running.unary()(b"x", metadata=failing)
        codes.append(caught.value.code())
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 4
    endpoints = running.gateway.clusters["upstream"].endpoints
    ejected = [endpoint for endpoint in endpoints if endpoint.ejected_until > 0]
    assert len(ejected) == 1  # at most half of the endpoints are ejected
    kept = next(replica.name for replica in replicas if replica.address != ejected[0].address)
    assert set(await _names(running, 4)) == {kept}
    await asyncio.sleep(0.6)
    assert set(await _names(running, 4)) == {"a", "b"}


async def test_calls_that_cannot_connect_are_retried_on_another_endpoint(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    dead = f"127.0.0.1:{_closed_port()}"
    running = await start_gateway(
        cluster((dead, replicas[0].address), health_check=HealthCheckSettings(enabled=False))
    )
    assert await _names(running, 6) == ["a"] * 6
    stream = running.bidi()()
    await stream.write(b"x")
    reply = await stream.read()
    assert isinstance(reply, bytes) and reply.startswith(b"a:")
    await stream.done_writing()
    line = running.log_lines()[0]
    assert line["code"] == "OK" and line["upstream"] == replicas[0].address


async def test_no_reachable_endpoint_is_unavailable_with_a_reason(
    start_gateway: StartGateway,
) -> None:
    dead = f"127.0.0.1:{_closed_port()}"
    running = await start_gateway(cluster((dead,), health_check=HealthCheckSettings(enabled=False)))
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"x")
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "could be reached" in (caught.value.details() or "")


async def test_dns_cluster_follows_the_addresses_of_its_name(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    port_of = {replica.name: int(replica.address.rsplit(":", 1)[1]) for replica in replicas}
    records = {"answer": ["127.0.0.1"]}

    async def resolver(dns: DnsDiscovery) -> list[str]:
        assert dns.name == "inference.llmgw.svc.cluster.local"
        return [f"{host}:{dns.port}" for host in records["answer"]]

    # A headless service with one, then two, then another single A record.
    dns = DnsDiscovery(
        name="inference.llmgw.svc.cluster.local", port=port_of["a"], refresh_seconds=0.1
    )
    running = await start_gateway(cluster((), dns=dns), resolver=resolver)
    upstream = running.gateway.clusters["upstream"]
    assert [e.address for e in upstream.endpoints] == [f"127.0.0.1:{port_of['a']}"]
    records["answer"] = ["127.0.0.1", "127.0.0.2"]
    await eventually(lambda: len(upstream.endpoints) == 2)
    records["answer"] = ["127.0.0.2"]
    await eventually(
        lambda: [e.address for e in upstream.endpoints] == [f"127.0.0.2:{port_of['a']}"]
    )


async def test_real_dns_lookup_of_localhost_gives_loopback_endpoints(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    port = int(replicas[0].address.rsplit(":", 1)[1])
    running = await start_gateway(cluster((), dns=DnsDiscovery(name="localhost", port=port)))
    assert [e.address for e in running.gateway.clusters["upstream"].endpoints] == [
        f"127.0.0.1:{port}"
    ]
    assert await _names(running, 2) == ["a", "a"]
