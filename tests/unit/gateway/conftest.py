"""Fixtures: raw upstream replicas and a gateway KernelServer in front of them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from gateway.clusters.discovery import Resolver, resolve_dns
from gateway.edge import Gateway
from gateway.settings import (
    ClusterSettings,
    FilterSettings,
    GatewaySection,
    GatewaySettings,
    HealthCheckSettings,
    ListenerSettings,
    RouteMatch,
    RouteSettings,
)
from services.kernel.config import MetricsSettings, ServerSettings
from services.kernel.server import KernelServer
from tests.unit.gateway.raw_upstream import FINETUNING, INFERENCE, RawReplica


@dataclass
class RunningGateway:
    gateway: Gateway
    server: KernelServer
    channel: aio.Channel
    access_log: Path
    registry: CollectorRegistry

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        text = self.access_log.read_text(encoding="utf-8") if self.access_log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]

    def unary(self, method: str = "Complete") -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            f"/{INFERENCE}/{method}"
        )
        return call

    def server_stream(self) -> aio.UnaryStreamMultiCallable[bytes, bytes]:
        return self.channel.unary_stream(f"/{INFERENCE}/StreamComplete")

    def bidi(self) -> aio.StreamStreamMultiCallable[bytes, bytes]:
        return self.channel.stream_stream(f"/{INFERENCE}/Chat")

    def client_stream(self) -> aio.StreamUnaryMultiCallable[bytes, bytes]:
        return self.channel.stream_unary(f"/{FINETUNING}/UploadDataset")


def cluster(endpoints: Iterable[str], **overrides: Any) -> ClusterSettings:
    """A cluster of ``endpoints`` with fast health checks (overridable)."""
    values: dict[str, Any] = {
        "endpoints": tuple(endpoints),
        "health_check": HealthCheckSettings(interval_seconds=0.1, timeout_seconds=0.5),
    }
    values.update(overrides)
    return ClusterSettings(**values)


def gateway_settings(
    cluster_settings: ClusterSettings,
    access_log: Path,
    *,
    filters: tuple[FilterSettings, ...] | None = None,
    routes: tuple[RouteSettings, ...] | None = None,
    listener: ListenerSettings | None = None,
    grace: float = 5.0,
) -> GatewaySettings:
    default_filters = (
        FilterSettings(name="access_log", config={"output": str(access_log)}),
        FilterSettings(name="metrics"),
    )
    default_routes = (
        RouteSettings(match=RouteMatch(service=INFERENCE), cluster="upstream"),
        RouteSettings(match=RouteMatch(service=FINETUNING), cluster="upstream"),
    )
    return GatewaySettings(
        server=ServerSettings(port=0, grace_period_seconds=grace),
        metrics=MetricsSettings(enabled=False),
        gateway=GatewaySection(
            listener=listener or ListenerSettings(),
            filters=default_filters if filters is None else filters,
            clusters={"upstream": cluster_settings},
            routes=default_routes if routes is None else routes,
        ),
    )


StartGateway = Callable[..., Awaitable[RunningGateway]]
StartReplicas = Callable[[int], Awaitable[list[RawReplica]]]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def complete(channel: aio.Channel) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A raw-bytes ``InferenceService/Complete`` callable on ``channel``."""
    return channel.unary_unary(f"/{INFERENCE}/Complete")


@dataclass
class Started:
    gateways: list[RunningGateway] = field(default_factory=list)
    replicas: list[RawReplica] = field(default_factory=list)


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    record = Started()
    yield record
    for running in record.gateways:
        await running.channel.close(None)
        await running.server.drain(grace_seconds=0)
    for replica in record.replicas:
        await replica.stop()


@pytest.fixture
def start_replicas(started: Started) -> StartReplicas:
    async def start(count: int) -> list[RawReplica]:
        replicas = [RawReplica(name) for name in "abcdefgh"[:count]]
        for replica in replicas:
            await replica.start()
            started.replicas.append(replica)
        return replicas

    return start


@pytest.fixture
def start_gateway(started: Started, tmp_path: Path) -> StartGateway:
    async def start(
        settings: GatewaySettings | ClusterSettings,
        *,
        resolver: Resolver = resolve_dns,
        available_filters: Any = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        channel_options: Any = None,
    ) -> RunningGateway:
        access_log = tmp_path / f"access-{len(started.gateways)}.log"
        if isinstance(settings, ClusterSettings):
            settings = gateway_settings(settings, access_log)
        for entry in settings.gateway.filters:
            if entry.name == "access_log" and "output" in entry.config:
                access_log = Path(entry.config["output"])
        registry = CollectorRegistry()
        gateway = Gateway(
            settings, registry, resolver=resolver, available_filters=available_filters or ()
        )
        server = KernelServer(gateway.app(), settings.server, registry)
        await server.start()
        address = f"127.0.0.1:{server.port}"
        channel = (
            aio.secure_channel(address, channel_credentials, options=channel_options)
            if channel_credentials is not None
            else aio.insecure_channel(address)
        )
        running = RunningGateway(gateway, server, channel, access_log, registry)
        started.gateways.append(running)
        return running

    return start
