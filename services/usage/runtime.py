"""The resources of one ``usage`` process, opened before serving and closed after.

:meth:`UsageRuntime.lifespan` opens, in order: the database (migrated to the
usage schema), Redis for the spend ledger (only with ``redis_url``; without it
no budgets are kept), and, when ``kafka.bootstrap_servers`` is set, the
batch consumer of the usage and audit topics with its dead-letter producer.
Without Kafka there is nothing to consume: each llmgw process has its own
in-process bus, so the usage process then only answers queries over what its
database holds. Everything closes in reverse after the server drained; the
consumer finishes (and commits) the batch in hand first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.usage.v1 import usage_pb2_grpc
from services.kernel.cache import RedisConfig, connect_redis
from services.kernel.events import RetryPolicy, Subscription, kafka_config
from services.kernel.resources import open_database
from services.kernel.spend import SpendLedger
from services.usage.consumer import BatchConsumer, ConsumerSettings, KafkaDeadLetters
from services.usage.metrics import PipelineMetrics
from services.usage.pipeline import Pipeline, PipelineConfig
from services.usage.schema import COMPONENT, MIGRATIONS
from services.usage.servicer import UsageServicer
from services.usage.settings import UsageSettings
from services.usage.store import UsageStore

_log = logging.getLogger(__name__)


def consumer_settings(settings: UsageSettings) -> ConsumerSettings:
    """The batch consumer's settings from the process settings."""
    pipeline = settings.pipeline
    return ConsumerSettings(
        topics=(pipeline.usage_topic, pipeline.audit_topic),
        group_id=pipeline.group_id,
        max_batch_records=pipeline.max_batch_records,
        poll_timeout_ms=pipeline.poll_timeout_ms,
        session_timeout_ms=pipeline.session_timeout_ms,
        heartbeat_interval_ms=pipeline.heartbeat_interval_ms,
        commit_timeout_seconds=pipeline.commit_timeout_seconds,
        retry=RetryPolicy(
            initial_backoff_seconds=pipeline.retry_initial_seconds,
            max_backoff_seconds=pipeline.retry_max_seconds,
        ),
    )


class UsageRuntime:
    """Opens the process's resources, runs the consumer and serves the UsageService."""

    def __init__(
        self, settings: UsageSettings, registry: CollectorRegistry, env: Mapping[str, str]
    ) -> None:
        """Prepare; nothing is opened before :meth:`lifespan`. SASL secrets are read from
        ``env``."""
        self._settings = settings
        self._env = env
        self._metrics = PipelineMetrics(registry)
        self._servicer: UsageServicer | None = None

    @property
    def servicer(self) -> UsageServicer:
        """The servicer; only while :meth:`lifespan` is entered."""
        if self._servicer is None:
            raise RuntimeError("the usage runtime is not started")
        return self._servicer

    def add_to_server(self, server: aio.Server) -> None:
        """Register the servicer (the server calls this after the lifespans started)."""
        usage_pb2_grpc.add_UsageServiceServicer_to_server(self.servicer, server)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open everything, consume and serve, close everything in reverse."""
        settings = self._settings
        async with AsyncExitStack() as stack:
            database = await open_database(stack, settings.database_url, COMPONENT, MIGRATIONS)
            store = UsageStore(database)
            ledger: SpendLedger | None = None
            if settings.redis_url:
                client = await connect_redis(
                    RedisConfig(settings.redis_url, client_name="llmgw-usage")
                )
                stack.push_async_callback(client.aclose)
                ledger = SpendLedger(client, namespace=settings.pipeline.spend_namespace)
            else:
                _log.warning("no redis_url: spend is not recorded, budgets are not enforced")
            if settings.kafka.bootstrap_servers:
                await self._start_consumer(stack, store, ledger)
            else:
                _log.info("no Kafka configured: the usage service has nothing to consume")
            self._servicer = UsageServicer(store)
            try:
                yield
            finally:
                self._servicer = None

    async def _start_consumer(
        self, stack: AsyncExitStack, store: UsageStore, ledger: SpendLedger | None
    ) -> None:
        settings = self._settings
        kafka = kafka_config(settings.kafka, self._env)
        dead_letters = KafkaDeadLetters(kafka, settings.pipeline.dead_letter_topic)
        stack.push_async_callback(dead_letters.close)
        pipeline = Pipeline(
            store,
            ledger,
            dead_letters=dead_letters,
            metrics=self._metrics,
            config=PipelineConfig(
                usage_topic=settings.pipeline.usage_topic,
                audit_topic=settings.pipeline.audit_topic,
                processed_retention=timedelta(hours=settings.pipeline.processed_retention_hours),
            ),
        )
        consumer = BatchConsumer(kafka, consumer_settings(settings), pipeline, self._metrics)
        subscription = Subscription(f"usage:{settings.pipeline.group_id}", consumer.run)
        stack.push_async_callback(subscription.stop)
