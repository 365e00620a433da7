"""Publishing usage events through Kafka when the broker may come and go.

The inference process must start and serve while the broker is down; its usage
events then wait in the spool (:mod:`services.inference.usage`). This publisher
connects on first use. A publish that does not complete (error, timeout or
cancellation by the caller) discards the connection: the next publish opens a
fresh one, with fresh cluster metadata, so a broker that came back with other
partition leaders or without its topics is written to correctly. A failed
connection attempt is retried no sooner than ``retry_seconds`` later; in between
publishes fail at once, so their events go straight to the spool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError
from google.protobuf.message import Message

from services.kernel.errors import Unavailable
from services.kernel.events import KafkaEventBus

_log = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECONDS = 5.0
"""How long a discarded connection may take to close before it is abandoned."""


class ConnectingPublisher:
    """``publish`` over a :class:`KafkaEventBus` made by ``connect`` whenever one is needed."""

    def __init__(self, connect: Callable[[], KafkaEventBus], retry_seconds: float = 2.0) -> None:
        """Use ``connect()`` to make each (not yet started) bus."""
        self._connect = connect
        self._retry_seconds = retry_seconds
        self._bus: KafkaEventBus | None = None
        self._next_attempt = 0.0
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        """True while a started bus is in use."""
        return self._bus is not None

    async def connect(self) -> bool:
        """Try to connect now; True on success."""
        async with self._lock:
            return await self._connect_locked(force=True) is not None

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Publish ``event``; raises when there is no connection or the bus refuses."""
        bus = self._bus
        if bus is None:
            async with self._lock:
                bus = await self._connect_locked(force=False)
            if bus is None:
                raise Unavailable("the event broker is not reachable")
        try:
            await bus.publish(topic, event, key)
        except BaseException:
            self._discard(bus)
            raise

    async def close(self) -> None:
        """Close the connection and wait for discarded ones to close."""
        bus, self._bus = self._bus, None
        if bus is not None:
            await _close_quietly(bus)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _connect_locked(self, *, force: bool) -> KafkaEventBus | None:
        if self._bus is not None:
            return self._bus
        if not force and time.monotonic() < self._next_attempt:
            return None
        bus = self._connect()
        try:
            await bus.start()
        except (KafkaError, OSError) as exc:
            self._next_attempt = time.monotonic() + self._retry_seconds
            _log.warning("event broker not reachable, usage events are spooled: %r", exc)
            await _close_quietly(bus)
            return None
        self._bus = bus
        _log.info("connected to the event broker")
        return bus

    def _discard(self, bus: KafkaEventBus) -> None:
        if self._bus is not bus:
            return
        self._bus = None
        _log.warning("a publish did not complete; reconnecting to the event broker")
        task = asyncio.create_task(_close_quietly(bus), name="close-event-bus")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close_quietly(bus: KafkaEventBus) -> None:
    try:
        await asyncio.wait_for(bus.close(), CLOSE_TIMEOUT_SECONDS)
    except (TimeoutError, KafkaError, OSError) as exc:
        _log.warning("closing an event broker connection failed: %r", exc)
