"""Active health checking of a cluster's endpoints with ``grpc.health.v1.Health/Check``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from grpc import aio
from grpc_health.v1 import health_pb2

from gateway.clusters.endpoint import Endpoint
from gateway.settings import HealthCheckSettings

_log = logging.getLogger("llmgw.gateway.health_check")
_CHECK = "/grpc.health.v1.Health/Check"


class HealthChecker:
    """Checks every endpoint each interval and flips ``Endpoint.healthy`` at the thresholds.

    ``endpoints`` is asked for the current endpoints before each round, so endpoints
    added or removed by discovery are followed.
    """

    def __init__(
        self,
        cluster: str,
        settings: HealthCheckSettings,
        endpoints: Callable[[], Sequence[Endpoint]],
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._endpoints = endpoints
        self._request = health_pb2.HealthCheckRequest(service=settings.service)

    async def run(self) -> None:
        """Check forever, one round per interval; cancel the task to stop."""
        while True:
            try:
                await self.check_all()
            except Exception:  # a bug must not end health checking for good
                _log.exception("health check round failed", extra={"cluster": self._cluster})
            await asyncio.sleep(self._settings.interval_seconds)

    async def check_all(self) -> None:
        """One round: check every endpoint concurrently and update its state."""
        endpoints = tuple(self._endpoints())
        results = await asyncio.gather(*(self._check(endpoint) for endpoint in endpoints))
        for endpoint, serving in zip(endpoints, results, strict=True):
            self._update(endpoint, serving)

    async def _check(self, endpoint: Endpoint) -> bool:
        check = endpoint.channel.unary_unary(
            _CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(self._request, timeout=self._settings.timeout_seconds)
        except (aio.AioRpcError, aio.UsageError):
            return False  # UsageError: the channel was closed (endpoint removed or replaced)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def _update(self, endpoint: Endpoint, serving: bool) -> None:
        settings = self._settings
        if serving:
            endpoint.health_streak = max(endpoint.health_streak, 0) + 1
            if not endpoint.healthy and endpoint.health_streak >= settings.healthy_threshold:
                endpoint.healthy = True
                _log.info("endpoint healthy", extra=self._fields(endpoint))
        else:
            endpoint.health_streak = min(endpoint.health_streak, 0) - 1
            if endpoint.healthy and -endpoint.health_streak >= settings.unhealthy_threshold:
                endpoint.healthy = False
                _log.warning("endpoint unhealthy", extra=self._fields(endpoint))

    def _fields(self, endpoint: Endpoint) -> dict[str, str]:
        return {"cluster": self._cluster, "endpoint": endpoint.address}
