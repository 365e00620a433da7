"""A client of the standard ``grpc.health.v1`` service, for supervisors and probes."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

UNREACHABLE = "UNREACHABLE"
"""Reported instead of a serving status when the server does not answer."""


async def check_health(address: str, service: str = "", timeout: float = 2.0) -> str:
    """The serving status name of ``service`` at ``address`` (``host:port``).

    Returns ``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN``, ... as the server says,
    or :data:`UNREACHABLE` when it cannot be reached within ``timeout`` seconds.
    """
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return UNREACHABLE
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return name


async def wait_until_serving(address: str, service: str = "", timeout: float = 30.0) -> bool:
    """Poll ``address`` until it reports SERVING; False if ``timeout`` runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check_health(address, service, timeout=1.0) == "SERVING":
            return True
        await asyncio.sleep(0.1)
    return False
