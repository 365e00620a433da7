"""What a service process opens at start, pushed on its exit stack so it closes in reverse.

Every runtime opens the same kinds of things: its SQL database (migrated to its
schema), its event bus (Kafka when ``kafka.bootstrap_servers`` is set, else the
in-process bus) and background tasks. These helpers open each one and register
its closing on the caller's :class:`~contextlib.AsyncExitStack`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack

from llmgw.events.v1 import events_pb2
from services.kernel.config import KafkaSettings
from services.kernel.events.bus import EventBus
from services.kernel.events.cloudevents import EventTypeRegistry
from services.kernel.events.inprocess import InProcessEventBus
from services.kernel.events.kafka import KafkaEventBus, kafka_config
from services.kernel.events.publisher import ConnectingPublisher
from services.kernel.migrations import Migration, migrate
from services.kernel.sql import Database, DatabaseConfig


async def open_database(
    stack: AsyncExitStack, url: str, component: str, migrations: Sequence[Migration]
) -> Database:
    """Connect to ``url`` and bring ``component``'s schema up to date."""
    database = await Database.connect(DatabaseConfig(url))
    stack.push_async_callback(database.close)
    await migrate(database, component, migrations)
    return database


def event_types() -> EventTypeRegistry:
    """The llmgw event types (``llmgw.events.v1``)."""
    return EventTypeRegistry.from_module(events_pb2)


async def open_event_bus(
    stack: AsyncExitStack, kafka: KafkaSettings, env: Mapping[str, str], source: str
) -> EventBus:
    """A started event bus: Kafka when configured (raising when the broker is
    unreachable), else the in-process bus."""
    types = event_types()
    if kafka.bootstrap_servers:
        bus = KafkaEventBus(kafka_config(kafka, env), types, source)
        await bus.start()
        stack.push_async_callback(bus.close)
        return bus
    in_process = InProcessEventBus(types, source)
    stack.push_async_callback(in_process.close)
    return in_process


async def open_publisher(
    stack: AsyncExitStack,
    kafka: KafkaSettings,
    env: Mapping[str, str],
    source: str,
    retry_seconds: float = 2.0,
    *,
    connect_now: bool = True,
) -> ConnectingPublisher | InProcessEventBus:
    """Somewhere to publish that never stops the process from starting: Kafka through
    a :class:`ConnectingPublisher` (connected now when ``connect_now`` and it can be,
    else on first use; again after a failure, at most every ``retry_seconds``) when
    configured, else the in-process bus."""
    types = event_types()
    if kafka.bootstrap_servers:
        config = kafka_config(kafka, env)
        publisher = ConnectingPublisher(lambda: KafkaEventBus(config, types, source), retry_seconds)
        stack.push_async_callback(publisher.close)
        if connect_now:
            await publisher.connect()
        return publisher
    in_process = InProcessEventBus(types, source)
    stack.push_async_callback(in_process.close)
    return in_process


def run_in_background(stack: AsyncExitStack, task: asyncio.Task[None]) -> None:
    """Cancel ``task`` (and wait for it) when ``stack`` closes."""
    stack.push_async_callback(cancel_and_wait, task)


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
