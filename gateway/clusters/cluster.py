"""A cluster: its endpoints, balancer, health checking, outlier detection and retry budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence

import grpc
from grpc import aio

from gateway.clusters.balancers import BALANCERS
from gateway.clusters.channels import ChannelFactory
from gateway.clusters.discovery import Resolver, initial_addresses, resolve_dns
from gateway.clusters.endpoint import Endpoint
from gateway.clusters.health_check import HealthChecker
from gateway.clusters.outlier import OutlierDetector
from gateway.clusters.retry_budget import RetryBudget
from gateway.settings import ClusterSettings
from services.kernel.config import ServerSettings

_log = logging.getLogger("llmgw.gateway.cluster")


class Cluster:
    """The endpoints of one upstream service and the policies that choose among them.

    Built from config; :meth:`start` opens the channels and starts the background
    tasks (health checks, DNS refresh, TLS reload), :meth:`stop` ends them.
    """

    def __init__(
        self,
        name: str,
        settings: ClusterSettings,
        server: ServerSettings,
        resolver: Resolver = resolve_dns,
    ) -> None:
        self.name = name
        self.settings = settings
        self.endpoints: tuple[Endpoint, ...] = ()
        self.budget = RetryBudget(settings.retry_budget)
        self._resolver = resolver
        self._balancer = BALANCERS[settings.lb_policy]()
        self._outliers = OutlierDetector(name, settings.outlier_detection)
        self._channels = ChannelFactory(settings, server)
        self._health = HealthChecker(name, settings.health_check, lambda: self.endpoints)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: dict[aio.Channel, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Open a channel per initial endpoint and start the background tasks."""
        self.set_addresses(await initial_addresses(self.settings, self._resolver))
        if self.settings.health_check.enabled:
            self._tasks.append(asyncio.create_task(self._health.run()))
        if self.settings.dns is not None:
            self._tasks.append(asyncio.create_task(self._refresh_dns()))
        if self.settings.tls is not None:
            self._tasks.append(asyncio.create_task(self._watch_tls()))

    async def stop(self) -> None:
        """Stop the background tasks and close every channel."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that died must not keep the channels open
                _log.exception("cluster task failed", extra={"cluster": self.name})
        self._tasks.clear()
        for task in self._closing.values():
            task.cancel()
        channels = [*self._closing, *(endpoint.channel for endpoint in self.endpoints)]
        self._closing.clear()
        await asyncio.gather(*(channel.close(None) for channel in channels))
        self.endpoints = ()

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next call, not one of ``exclude``; None when none is available.

        When every healthy endpoint is ejected by outlier detection (a one-endpoint
        cluster after a burst of failures), the ejected ones are used anyway, as in
        Envoy's panic mode: refusing every call for the ejection time is worse than
        trying an endpoint that active health checking still finds serving.
        """
        now = asyncio.get_running_loop().time()
        candidates = [
            endpoint
            for endpoint in self.endpoints
            if endpoint.available(now) and endpoint not in exclude
        ]
        if not candidates:
            candidates = [
                endpoint
                for endpoint in self.endpoints
                if endpoint.healthy and endpoint not in exclude
            ]
            if not candidates:
                return None
        return self._balancer.pick(candidates)

    def record(self, endpoint: Endpoint, code: grpc.StatusCode) -> None:
        """Account the status of a call (or failed connect) for outlier detection."""
        now = asyncio.get_running_loop().time()
        self._outliers.record(endpoint, code, self.endpoints, now)

    async def check_health(self) -> None:
        """Run one round of active health checks now (the periodic task runs them anyway)."""
        await self._health.check_all()

    def set_addresses(self, addresses: Sequence[str]) -> None:
        """Make the endpoints exactly ``addresses``, keeping the state of those that stay."""
        current = {endpoint.address: endpoint for endpoint in self.endpoints}
        wanted = list(dict.fromkeys(addresses))
        if wanted == list(current):
            return
        kept = [
            current.get(address) or Endpoint(address, self._channels.create(address))
            for address in wanted
        ]
        removed = [endpoint for address, endpoint in current.items() if address not in wanted]
        self.endpoints = tuple(kept)
        for endpoint in removed:
            endpoint.removed = True
            self._close_later(endpoint.channel)
        _log.info("endpoints changed", extra={"cluster": self.name, "endpoints": wanted})

    async def _refresh_dns(self) -> None:
        dns = self.settings.dns
        assert dns is not None
        while True:
            await asyncio.sleep(dns.refresh_seconds)
            try:
                addresses = await self._resolver(dns)
            except OSError as exc:
                # Keep the last known endpoints while the name does not resolve.
                _log.warning("dns lookup failed", extra={"cluster": self.name, "error": str(exc)})
                continue
            except Exception:  # keep refreshing: a bad answer must not freeze the endpoints
                _log.exception("dns lookup failed", extra={"cluster": self.name})
                continue
            self.set_addresses(addresses)

    async def _watch_tls(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tls_reload_seconds)
            if self._channels.reload_if_changed():
                for endpoint in self.endpoints:
                    previous = endpoint.replace_channel(self._channels.create(endpoint.address))
                    self._close_later(previous)
                _log.info("upstream certificates reloaded", extra={"cluster": self.name})

    def _close_later(self, channel: aio.Channel) -> None:
        """Close ``channel`` once its calls finished or the grace period is over."""
        task = asyncio.create_task(channel.close(self.settings.channel_close_grace_seconds))
        self._closing[channel] = task
        task.add_done_callback(lambda _: self._closing.pop(channel, None))
