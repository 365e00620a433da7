"""The resources of one inference process, opened before serving and closed after.

:meth:`InferenceRuntime.lifespan` opens, in order: Redis (only with ``redis_url``;
it holds the response cache and the shared deployment cooldowns), the event bus
(Kafka when ``kafka.bootstrap_servers`` is set, else in-process), the usage
recorder, and the router, wrapped in the response cache when Redis is there.
The router serves the routing file, or, when ``routing.registry_address`` is
set, follows the registry's ``WatchRegistry`` stream: the lifespan then waits
for the first snapshot before the server starts serving, and fails the start
when none arrives within ``routing.registry_start_timeout_seconds``. They are
closed in reverse order after the server drained (the registry watch first), so
the last usage events are still published (or spooled).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as redis
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.inference.v1 import inference_pb2_grpc
from llmgw.models.v1 import models_pb2
from services.inference.cache import CacheConfig, CachingEngine
from services.inference.engine import CompletionEngine
from services.inference.metrics import InferenceMetrics
from services.inference.routing import Router, RoutingOptions, load_snapshot
from services.inference.routing.registry_watch import RegistryWatch, WatchConfig, channel_options
from services.inference.routing.watch_metrics import RegistryWatchMetrics
from services.inference.servicer import InferenceServicer
from services.inference.settings import ROUTING_SOURCE_FIELDS, InferenceSettings
from services.inference.usage import SOURCE, UsageConfig, UsageRecorder
from services.kernel.cache import RedisConfig, connect_redis
from services.kernel.resources import open_publisher

_log = logging.getLogger(__name__)


def usage_config(settings: InferenceSettings) -> UsageConfig:
    """The usage recorder's configuration from the process settings."""
    usage = settings.usage
    return UsageConfig(
        spool_dir=usage.spool_dir,
        topic=usage.topic,
        buffer_size=usage.buffer_size,
        batch_size=usage.batch_size,
        publish_timeout_seconds=usage.publish_timeout_seconds,
        replay_interval_seconds=usage.replay_interval_seconds,
        spool_segment_bytes=usage.spool_segment_bytes,
        linger_seconds=usage.linger_seconds,
    )


def routing_options(settings: InferenceSettings) -> RoutingOptions:
    """The router's tunables from the process settings."""
    return RoutingOptions(**settings.routing.model_dump(exclude=set(ROUTING_SOURCE_FIELDS)))


def watch_config(settings: InferenceSettings) -> WatchConfig | None:
    """How to follow the registry, or None when the routing file is the source."""
    routing = settings.routing
    if not routing.registry_address:
        return None
    return WatchConfig(
        address=routing.registry_address,
        reconnect_base_seconds=routing.registry_reconnect_base_seconds,
        reconnect_max_seconds=routing.registry_reconnect_max_seconds,
        batch_seconds=routing.registry_batch_seconds,
        channel_options=channel_options(settings.server),
    )


class InferenceRuntime:
    """Opens the process's resources and serves the InferenceService over them."""

    def __init__(
        self,
        settings: InferenceSettings,
        registry: CollectorRegistry,
        env: Mapping[str, str],
    ) -> None:
        """Prepare; nothing is opened before :meth:`lifespan`.

        ``env`` is where credential variables (provider API keys, SASL) are read.
        """
        self._settings = settings
        self._env = env
        self._routing_options = routing_options(settings)
        self._metrics = InferenceMetrics(registry)
        self._watch_config = watch_config(settings)
        self._watch_metrics = RegistryWatchMetrics(registry) if self._watch_config else None
        self._servicer: InferenceServicer | None = None

    @property
    def servicer(self) -> InferenceServicer:
        """The servicer; only while :meth:`lifespan` is entered."""
        if self._servicer is None:
            raise RuntimeError("the inference runtime is not started")
        return self._servicer

    def add_to_server(self, server: aio.Server) -> None:
        """Register the servicer (the server calls this after the lifespans started)."""
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(self.servicer, server)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open everything, serve, close everything in reverse."""
        settings = self._settings
        async with AsyncExitStack() as stack:
            client: redis.Redis | None = None
            if settings.redis_url:
                client = await connect_redis(
                    RedisConfig(settings.redis_url, client_name="llmgw-inference")
                )
                stack.push_async_callback(client.aclose)
            publisher = await open_publisher(
                stack,
                settings.kafka,
                self._env,
                SOURCE,
                settings.usage.replay_interval_seconds,
            )
            recorder = await stack.enter_async_context(
                UsageRecorder(publisher, usage_config(settings))
            )
            snapshot = (
                models_pb2.RegistrySnapshot()
                if self._watch_config
                else load_snapshot(settings.routing.file)
            )
            router = await Router.create(snapshot, self._routing_options, client, env=self._env)
            engine: CompletionEngine = router
            if client is not None and settings.cache.enabled:
                engine = CachingEngine(
                    router,
                    client,
                    CacheConfig(settings.cache.key_prefix, settings.cache.ttl_seconds),
                )
            stack.push_async_callback(engine.aclose)
            if self._watch_config is not None:
                await self._follow_registry(stack, self._watch_config, router)
            self._servicer = InferenceServicer(engine, (recorder, self._metrics))
            _log.info(
                "inference ready",
                extra={
                    "routing_source": settings.routing.registry_address
                    or str(settings.routing.file),
                    "models": len(engine.list_models()),
                    "cache": engine is not router,
                },
            )
            try:
                yield
            finally:
                self._servicer = None

    async def _follow_registry(
        self, stack: AsyncExitStack, config: WatchConfig, router: Router
    ) -> None:
        """Start the registry watch on ``stack`` and wait for its first snapshot."""
        listeners = (self._watch_metrics,) if self._watch_metrics else ()
        watch = await stack.enter_async_context(
            RegistryWatch(config, router.replace_table, listeners)
        )
        timeout = self._settings.routing.registry_start_timeout_seconds
        try:
            await watch.wait_ready(timeout)
        except TimeoutError:
            raise RuntimeError(
                f"no routing snapshot from the registry at {config.address} within {timeout:g}s"
            ) from None
