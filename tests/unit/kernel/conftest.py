"""Fixtures: a real KernelServer on a loopback port serving the probe service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from services.kernel.config import ServerSettings
from services.kernel.server import KernelServer, ServiceApp
from tests.unit.kernel import probe_service


@dataclass
class RunningProbe:
    server: KernelServer
    registry: CollectorRegistry
    channel: aio.Channel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture
async def probe() -> AsyncIterator[RunningProbe]:
    registry = CollectorRegistry()
    app = ServiceApp(name="probe", services=(probe_service.registration(),))
    server = KernelServer(app, ServerSettings(port=0, grace_period_seconds=5), registry)
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield RunningProbe(server, registry, channel)
    finally:
        await channel.close(None)
        await server.drain(grace_seconds=0)
