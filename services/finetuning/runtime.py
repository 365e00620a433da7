"""The resources of one ``finetuning`` process, opened before serving and closed after.

:meth:`FineTuningRuntime.lifespan` opens, in order: the database (migrated to
the fine-tuning schema, with the project of jobs stored before it had a column
of its own filled in), the blob store, the event bus (Kafka when
``kafka.bootstrap_servers`` is set, else in-process), the registry client,
the backends, the event relay and the job runner (which resumes unfinished
jobs). They close in reverse; running jobs stay unfinished and resume at the
next start, events not yet published stay in the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.finetuning.v1 import finetuning_pb2_grpc
from services.finetuning.backends.base import Backend, backend_registry
from services.finetuning.blobs import LocalBlobStore
from services.finetuning.datasets import Datasets
from services.finetuning.feed import SOURCE, EventRelay, JobFeed, Publisher, RelayConfig
from services.finetuning.jobs import Jobs, JobsConfig
from services.finetuning.metrics import JobMetrics
from services.finetuning.registry_client import RegistryClient
from services.finetuning.schema import COMPONENT, MIGRATIONS
from services.finetuning.servicer import FineTuningServicer
from services.finetuning.settings import FineTuningSettings
from services.finetuning.store import FineTuningStore
from services.kernel.resources import open_database, open_event_bus, run_in_background


class Backends:
    """The backend plugins, each built once on first use and closed at the end."""

    def __init__(self, settings: FineTuningSettings) -> None:
        """Build backends from ``settings.finetuning``."""
        self._section = settings.finetuning
        self._registry = backend_registry()
        self._built: dict[str, Backend] = {}

    def get(self, name: str) -> Backend:
        """The backend called ``name``; PluginError when none is installed."""
        if name not in self._built:
            self._built[name] = self._registry.get(name).create(self._section)
        return self._built[name]

    async def close(self) -> None:
        """Close every built backend."""
        for backend in self._built.values():
            await backend.aclose()


class FineTuningRuntime:
    """Opens the process's resources and serves the FineTuningService over them."""

    def __init__(
        self,
        settings: FineTuningSettings,
        env: Mapping[str, str],
        publisher: Publisher | None = None,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        """Prepare; nothing opens before :meth:`lifespan`. ``publisher`` replaces the
        bus; ``metrics`` receives the job metrics."""
        self._settings = settings
        self._env = env
        self._publisher = publisher
        self._metrics = JobMetrics(metrics if metrics is not None else CollectorRegistry())
        self._servicer: FineTuningServicer | None = None

    @property
    def servicer(self) -> FineTuningServicer:
        """The servicer; only while :meth:`lifespan` is entered."""
        if self._servicer is None:
            raise RuntimeError("the finetuning runtime is not started")
        return self._servicer

    def add_to_server(self, server: aio.Server) -> None:
        """Register the servicer (the server calls this after the lifespans started)."""
        finetuning_pb2_grpc.add_FineTuningServiceServicer_to_server(self.servicer, server)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open everything, serve, close everything in reverse."""
        settings = self._settings
        section = settings.finetuning
        async with AsyncExitStack() as stack:
            database = await open_database(stack, settings.database_url, COMPONENT, MIGRATIONS)
            store = FineTuningStore(database)
            await store.fill_job_projects()
            publisher = self._publisher or await open_event_bus(
                stack, settings.kafka, self._env, SOURCE
            )
            registry = RegistryClient(section.registry_address, section.registry_timeout_seconds)
            stack.push_async_callback(registry.close)
            backends = Backends(settings)
            stack.push_async_callback(backends.close)
            relay = EventRelay(
                store,
                publisher,
                RelayConfig(
                    topic=section.topic,
                    usage_topic=section.usage_topic,
                    poll_interval_seconds=section.relay_poll_interval_seconds,
                    retry_seconds=section.relay_retry_seconds,
                ),
            )
            feed = JobFeed(store, section.watch_poll_interval_seconds)

            def committed() -> None:
                feed.notify()
                relay.notify()

            datasets = Datasets(
                store,
                LocalBlobStore(section.blob_dir),
                registry,
                section,
                lambda: backends.get(section.default_backend).price_per_million_tokens_nanos,
            )
            jobs = Jobs(
                store,
                datasets,
                registry,
                backends.get,
                JobsConfig(section.max_concurrent_jobs),
                on_event=committed,
                metrics=self._metrics,
            )
            task = asyncio.create_task(relay.run(), name="finetuning-event-relay")
            run_in_background(stack, task)
            await jobs.start()
            stack.push_async_callback(jobs.stop)
            self._servicer = FineTuningServicer(
                datasets, jobs, feed, store, section.max_dataset_bytes
            )
            try:
                yield
            finally:
                self._servicer = None
