"""The resources of one ``models`` process, opened before serving and closed after.

:meth:`RegistryRuntime.lifespan` opens, in order: the database (migrated to
the registry schema), the event bus (Kafka when ``kafka.bootstrap_servers``
is set, else in-process), the registry with its change feed and the secrets
keyring of ``env`` (:mod:`services.kernel.secrets`; malformed keys fail the
start), the seed document (when configured), the event relay task and the consumer
of fine-tuning job events (:mod:`services.models.finetunes`; without Kafka, the
poller of :mod:`services.models.finetune_poller` when an address is set). They
close in reverse after the server drained; changes not yet published stay in
the outbox and are published by the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import entry_points

from grpc import aio

from llmgw.models.v1 import models_pb2_grpc
from services.kernel.events import (
    EventBus,
)
from services.kernel.plugins import PluginGroup
from services.kernel.resources import open_database, open_event_bus, run_in_background
from services.kernel.secrets import Keyring
from services.models.caller import SYSTEM
from services.models.feed import ChangeFeed, FeedConfig
from services.models.finetune_poller import FineTunePoller, PollerConfig
from services.models.finetunes import CONSUMER_GROUP, FineTuneConsumer
from services.models.portable import import_registry
from services.models.registry import Registry
from services.models.relay import SOURCE, EventRelay, Publisher, RelayConfig
from services.models.schema import COMPONENT, MIGRATIONS
from services.models.servicer import ModelRegistryServicer
from services.models.settings import ModelsSettings
from services.models.store import RegistryStore
from services.models.validation import Rules

_log = logging.getLogger(__name__)


def installed_providers() -> frozenset[str]:
    """Names of the installed provider adapter plugins."""
    return frozenset(ep.name for ep in entry_points(group=PluginGroup.PROVIDER_ADAPTERS.value))


class RegistryRuntime:
    """Opens the process's resources and serves the ModelRegistryService over them."""

    def __init__(
        self,
        settings: ModelsSettings,
        env: Mapping[str, str],
        publisher: Publisher | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """Prepare; nothing opens before :meth:`lifespan`. ``publisher`` replaces the
        configured event bus for publishing and ``bus`` for both publishing and
        consuming (tests)."""
        self._settings = settings
        self._env = env
        self._publisher = publisher
        self._bus = bus
        self._servicer: ModelRegistryServicer | None = None
        self._registry: Registry | None = None

    @property
    def servicer(self) -> ModelRegistryServicer:
        """The servicer; only while :meth:`lifespan` is entered."""
        if self._servicer is None:
            raise RuntimeError("the models runtime is not started")
        return self._servicer

    @property
    def registry(self) -> Registry:
        """The registry; only while :meth:`lifespan` is entered."""
        if self._registry is None:
            raise RuntimeError("the models runtime is not started")
        return self._registry

    def add_to_server(self, server: aio.Server) -> None:
        """Register the servicer (the server calls this after the lifespans started)."""
        models_pb2_grpc.add_ModelRegistryServiceServicer_to_server(self.servicer, server)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open everything, serve, close everything in reverse."""
        settings = self._settings
        options = settings.registry
        async with AsyncExitStack() as stack:
            database = await open_database(stack, settings.database_url, COMPONENT, MIGRATIONS)
            store = RegistryStore(database)
            bus = self._bus
            if bus is None and self._publisher is None:
                bus = await open_event_bus(stack, settings.kafka, self._env, SOURCE)
            publisher: Publisher
            if self._publisher is not None:
                publisher = self._publisher
            else:
                assert bus is not None
                publisher = bus
            relay = EventRelay(
                store,
                publisher,
                RelayConfig(
                    poll_interval_seconds=options.relay_poll_interval_seconds,
                    retry_seconds=options.relay_retry_seconds,
                    models_topic=options.models_topic,
                    audit_topic=options.audit_topic,
                ),
            )
            feed = ChangeFeed(store, FeedConfig(options.watch_poll_interval_seconds))

            def committed() -> None:
                feed.notify()
                relay.notify()

            rules = Rules(frozenset(options.providers) or installed_providers())
            keyring = Keyring.from_env(self._env)
            registry = Registry(store, rules, on_commit=committed, keyring=keyring)
            if options.seed_file is not None:
                document = await asyncio.to_thread(options.seed_file.read_text, encoding="utf-8")
                result = await import_registry(registry, document, SYSTEM)
                _log.info("registry seeded", extra={"changed": result.changed})
            task = asyncio.create_task(relay.run(), name="registry-event-relay")
            run_in_background(stack, task)
            if options.consume_fine_tunes:
                await self._consume_fine_tunes(FineTuneConsumer(registry), bus, stack)
            self._registry = registry
            self._servicer = ModelRegistryServicer(registry, feed)
            try:
                yield
            finally:
                self._servicer = None
                self._registry = None

    async def _consume_fine_tunes(
        self, consumer: FineTuneConsumer, bus: EventBus | None, stack: AsyncExitStack
    ) -> None:
        """Subscribe to the fine-tuning events on Kafka, or poll the fine-tuning service."""
        options = self._settings.registry
        if self._settings.kafka.bootstrap_servers or options.finetuning_address is None:
            if bus is not None:
                subscription = await bus.subscribe(
                    [options.finetuning_topic], CONSUMER_GROUP, consumer.handle
                )
                stack.push_async_callback(subscription.stop)
            return
        poller = FineTunePoller(
            consumer,
            PollerConfig(options.finetuning_address, options.finetuning_poll_interval_seconds),
        )
        task = asyncio.create_task(poller.run(), name="registry-fine-tune-poller")
        run_in_background(stack, task)
