"""The gateway as a server: its own health, reflection of the upstream APIs, drain, config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from gateway.edge import Gateway
from gateway.settings import GatewaySection, GatewaySettings, RouteMatch, RouteSettings
from services.kernel.config import ConfigError, load_settings
from tests.unit.gateway.conftest import (
    StartGateway,
    StartReplicas,
    cluster,
    complete,
    gateway_settings,
)
from tests.unit.gateway.raw_upstream import INFERENCE


async def test_gateway_health_and_reflection_describe_the_routed_apis(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    health = health_pb2_grpc.HealthStub(running.channel)
    for service in ("", INFERENCE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)

    async def ask(
        request: reflection_pb2.ServerReflectionRequest,
    ) -> reflection_pb2.ServerReflectionResponse:
        call = stub.ServerReflectionInfo()
        await call.write(request)
        await call.done_writing()
        reply: reflection_pb2.ServerReflectionResponse = await call.read()
        return reply

    listed = await ask(reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert {INFERENCE, "llmgw.finetuning.v1.FineTuningService"} <= names
    described = await ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=INFERENCE))
    assert described.file_descriptor_response.file_descriptor_proto


async def test_drain_refuses_new_calls_and_lets_a_long_stream_finish(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(
        gateway_settings(cluster(r.address for r in replicas), tmp_path / "a.log", grace=10)
    )
    stream = running.server_stream()(b"10", metadata=(("x-test-sleep", "0.1"),))
    received = [await stream.read()]
    drain = asyncio.create_task(running.server.drain())
    await asyncio.sleep(0.1)
    async with aio.insecure_channel(running.address) as fresh:
        with pytest.raises(aio.AioRpcError):
            await complete(fresh)(b"x", timeout=1)
    while (message := await stream.read()) is not aio.EOF:
        received.append(message)
    assert len(received) == 10
    assert await stream.code() is grpc.StatusCode.OK
    await drain


async def test_drain_turns_health_not_serving_first(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(
        gateway_settings(cluster(r.address for r in replicas), tmp_path / "a.log", grace=10)
    )
    stream = running.server_stream()(b"10", metadata=(("x-test-sleep", "0.1"),))
    await stream.read()
    await running.server.health.enter_graceful_shutdown()
    health = health_pb2_grpc.HealthStub(running.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=INFERENCE))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    stream.cancel()


def test_routes_may_not_take_the_gateways_own_services(tmp_path: Path) -> None:
    settings = gateway_settings(
        cluster(["127.0.0.1:1"]),
        tmp_path / "a.log",
        routes=(
            RouteSettings(match=RouteMatch(service="grpc.health.v1.Health"), cluster="upstream"),
        ),
    )
    with pytest.raises(ConfigError, match=r"grpc\.health\.v1\.Health"):
        Gateway(settings, CollectorRegistry())


def test_gateway_section_loads_from_yaml(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        """
gateway:
  filters:
    - name: access_log
      config: {output: stdout}
  clusters:
    inference:
      dns: {name: inference-headless.llmgw.svc, port: 50052, refresh_seconds: 10}
      lb_policy: least_request
      health_check: {interval_seconds: 2, unhealthy_threshold: 3}
      outlier_detection: {consecutive_failures: 3, base_ejection_seconds: 5}
  routes:
    - match: {service: llmgw.inference.v1.InferenceService, method_prefix: Stream}
      cluster: inference
      timeout_seconds: 600
    - match: {service: llmgw.inference.v1.InferenceService}
      cluster: inference
      timeout_seconds: 60
""",
        encoding="utf-8",
    )
    settings = load_settings(GatewaySettings, path=config, env={})
    section = settings.gateway
    assert section.clusters["inference"].dns is not None
    assert section.clusters["inference"].lb_policy.value == "least_request"
    assert [route.timeout_seconds for route in section.routes] == [600, 60]
    with pytest.raises(ConfigError):
        bad = tmp_path / "bad.yaml"
        bad.write_text("gateway:\n  routes:\n    - {match: {service: a.B}, cluster: nowhere}\n")
        load_settings(GatewaySettings, path=bad, env={})
    assert GatewaySection().routes  # the defaults route every llmgw API
