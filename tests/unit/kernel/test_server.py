"""The server bootstrap: health per service, reflection, limits, graceful drain."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from services.kernel.config import ServerSettings
from services.kernel.health_client import UNREACHABLE, check_health
from services.kernel.metrics import serve_metrics
from services.kernel.server import KernelServer, ServiceApp
from tests.unit.kernel import probe_service
from tests.unit.kernel.conftest import RunningProbe


async def test_health_reports_serving_per_service_and_unknown(probe: RunningProbe) -> None:
    assert await check_health(probe.address) == "SERVING"
    assert await check_health(probe.address, probe_service.SERVICE) == "SERVING"
    assert await check_health(probe.address, "no.such.Service") == "SERVICE_UNKNOWN"


async def test_reflection_lists_services(probe: RunningProbe) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(probe.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {probe_service.SERVICE, "grpc.health.v1.Health"} <= names


async def test_message_size_limit_is_enforced() -> None:
    settings = ServerSettings(port=0, max_receive_message_bytes=1024)
    app = ServiceApp(name="probe", services=(probe_service.registration(),))
    server = KernelServer(app, settings, CollectorRegistry())
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            echo = probe_service.unary(channel, "Slow")
            with pytest.raises(aio.AioRpcError) as caught:
                await echo(b"0" * 4096)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.drain(grace_seconds=0)


async def test_drain_finishes_in_flight_call_and_refuses_new_ones(probe: RunningProbe) -> None:
    slow = probe_service.unary(probe.channel, "Slow")
    in_flight = asyncio.ensure_future(slow(b"0.6"))
    await asyncio.sleep(0.1)
    watcher = health_pb2_grpc.HealthStub(probe.channel).Watch(
        health_pb2.HealthCheckRequest(service="")
    )
    assert (await watcher.read()).status == health_pb2.HealthCheckResponse.SERVING
    drain = asyncio.ensure_future(probe.server.drain(grace_seconds=5))
    assert (await watcher.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watcher.cancel()  # a long-lived watch would otherwise hold the drain for the whole grace
    assert await in_flight == b"done"
    await drain
    assert await check_health(probe.address, timeout=0.5) == UNREACHABLE


def _recording_resource(events: list[str]) -> Callable[[], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def resource() -> AsyncIterator[None]:
        events.append("enter")
        yield
        events.append("exit")

    return resource


async def test_lifespans_enter_before_serving_and_exit_after_drain() -> None:
    events: list[str] = []
    resource = _recording_resource(events)
    app = ServiceApp(name="probe", services=(), lifespans=(resource,))
    server = KernelServer(app, ServerSettings(port=0), CollectorRegistry())
    await server.start()
    assert events == ["enter"]
    await server.drain(grace_seconds=0)
    assert events == ["enter", "exit"]


async def test_failed_bind_exits_lifespans() -> None:
    events: list[str] = []
    resource = _recording_resource(events)
    first = KernelServer(ServiceApp(name="a"), ServerSettings(port=0), CollectorRegistry())
    port = await first.start()
    try:
        clash = KernelServer(
            ServiceApp(name="b", lifespans=(resource,)),
            ServerSettings(port=port),
            CollectorRegistry(),
        )
        with pytest.raises(RuntimeError):
            await clash.start()
        assert events == ["enter", "exit"]
    finally:
        await first.drain(grace_seconds=0)


async def test_metrics_endpoint_serves_prometheus_text(probe: RunningProbe) -> None:
    await probe_service.unary(probe.channel, "Slow")(b"0")
    endpoint = serve_metrics(probe.registry, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{endpoint.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    finally:
        endpoint.close()
    text = body.decode()
    assert 'llmgw_grpc_server_handled_total{grpc_code="OK",grpc_method="Slow"' in text
    assert 'llmgw_process_info{service="probe"} 1.0' in text
