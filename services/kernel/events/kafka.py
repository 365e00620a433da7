"""The event bus on any Kafka-protocol broker (Kafka, Redpanda, MSK, Tansu...).

Producer: ``acks="all"``, idempotence off (not every broker grants producer
ids; consumers de-duplicate by event id instead). Consumers: one
``AIOKafkaConsumer`` per subscription, auto-commit off; offsets are committed
after each handled batch, only up to the last event whose handler returned.
A failing handler makes the consumer seek back to that event and retry it
after a backoff, see :mod:`services.kernel.events.bus`; a failing fetch
(broker away) is retried with the same backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.helpers import create_ssl_context
from google.protobuf.message import Message

from services.kernel.config import KafkaSettings
from services.kernel.events.bus import Envelope, EventHandler, RetryPolicy, Subscription
from services.kernel.events.cloudevents import (
    EventDecodeError,
    EventTypeRegistry,
    decode_event,
    encode_event,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How subscriptions consume.

    ``auto_offset_reset`` applies only to a group without committed offsets;
    ``earliest`` means a new group starts with the oldest retained event.
    """

    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = 100
    poll_timeout_ms: int = 1000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """How to reach the brokers; mirrors ``KafkaSettings`` with secrets resolved."""

    bootstrap_servers: str
    client_id: str = "llmgw"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    request_timeout_ms: int = 30_000
    linger_ms: int = 5
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)


class KafkaEventBus:
    """:class:`~services.kernel.events.bus.EventBus` over Kafka.

    Use as ``async with KafkaEventBus(...) as bus:`` or call :meth:`start`
    and :meth:`close`. ``source`` is the CloudEvents source stamped on events
    that do not name one (e.g. ``"//llmgw/inference"``).
    """

    def __init__(self, config: KafkaConfig, registry: EventTypeRegistry, source: str) -> None:
        """Prepare the bus; no connection is made before :meth:`start`."""
        self._config = config
        self._registry = registry
        self._source = source
        self._producer: Any = None
        self._subscriptions: list[Subscription] = []

    async def __aenter__(self) -> KafkaEventBus:
        """Start the bus."""
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Close the bus."""
        await self.close()

    async def start(self) -> None:
        """Connect the producer; raises :class:`aiokafka.errors.KafkaError` if unreachable."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **_connection_kwargs(self._config),
            acks="all",
            enable_idempotence=False,
            linger_ms=self._config.linger_ms,
        )
        await producer.start()
        self._producer = producer

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Send ``event`` and wait for the brokers' acknowledgement (all in-sync replicas)."""
        if self._producer is None:
            raise RuntimeError("KafkaEventBus.publish() before start()")
        encoded = encode_event(event, default_source=self._source)
        await self._producer.send_and_wait(
            topic, encoded.value, key=encoded.record_key(key), headers=list(encoded.headers)
        )

    async def subscribe(
        self, topics: Sequence[str], group_id: str, handler: EventHandler
    ) -> Subscription:
        """Join ``group_id`` on ``topics`` and feed ``handler`` in the background.

        Returns once the consumer is connected; partitions are assigned shortly after.
        """
        if not topics:
            raise ValueError("subscribe() needs at least one topic")
        settings = self._config.consumer
        consumer = AIOKafkaConsumer(
            *topics,
            **{
                **_connection_kwargs(self._config),
                "client_id": f"{self._config.client_id}-{group_id}",
            },
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        loop = _ConsumeLoop(consumer, handler, self._registry, settings)
        subscription = Subscription(f"kafka:{group_id}:{','.join(topics)}", loop.run)
        self._subscriptions.append(subscription)
        return subscription

    async def close(self) -> None:
        """Stop all subscriptions (letting in-flight handlers finish), then the producer."""
        subscriptions, self._subscriptions = self._subscriptions, []
        results = await asyncio.gather(*(s.stop() for s in subscriptions), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                _log.warning("subscription ended with an error: %r", result)
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


class _ConsumeLoop:
    """Polls one consumer and feeds its handler until asked to stop."""

    def __init__(
        self,
        consumer: Any,
        handler: EventHandler,
        registry: EventTypeRegistry,
        settings: ConsumerConfig,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._registry = registry
        self._settings = settings

    async def run(self, stopping: asyncio.Event) -> None:
        stop_requested = asyncio.ensure_future(stopping.wait())
        failures = 0
        try:
            while not stopping.is_set():
                fetch = asyncio.ensure_future(
                    self._consumer.getmany(
                        timeout_ms=self._settings.poll_timeout_ms,
                        max_records=self._settings.max_poll_records,
                    )
                )
                await asyncio.wait({fetch, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.wait({fetch})
                    break
                try:
                    failed = await self._handle_batch(fetch.result(), stopping)
                except KafkaError as exc:
                    _log.warning("fetching events failed, will retry: %r", exc)
                    failed = True
                failures = failures + 1 if failed else 0
                if failed:
                    delay = self._settings.retry.backoff(failures)
                    await asyncio.wait({stop_requested}, timeout=delay)
        finally:
            stop_requested.cancel()
            await self._consumer.stop()

    async def _handle_batch(self, batch: dict[Any, list[Any]], stopping: asyncio.Event) -> bool:
        """Handle records partition by partition; commit what succeeded; ``True`` on a failure."""
        done: dict[Any, int] = {}
        failed = False
        for partition, records in batch.items():
            for record in records:
                if stopping.is_set():
                    break
                envelope = self._envelope(record)
                if envelope is not None:
                    try:
                        await self._handler(envelope)
                    except Exception:
                        _log.exception(
                            "handler failed for event %s at %s:%d@%d; will retry",
                            envelope.id,
                            record.topic,
                            record.partition,
                            record.offset,
                        )
                        self._consumer.seek(partition, record.offset)
                        failed = True
                        break
                done[partition] = record.offset + 1
        if done:
            try:
                await self._consumer.commit(done)
            except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                # Partitions moved to another member; it will see these again.
                _log.warning("offset commit failed, events will be redelivered: %r", exc)
        return failed

    def _envelope(self, record: Any) -> Envelope | None:
        try:
            decoded = decode_event(record.value, record.headers, self._registry)
        except EventDecodeError as exc:
            _log.warning(
                "skipping record %s:%d@%d: %s", record.topic, record.partition, record.offset, exc
            )
            return None
        attributes = decoded.attributes
        return Envelope(
            id=attributes.id,
            type=attributes.type,
            source=attributes.source,
            time=attributes.time,
            subject=attributes.subject,
            event=decoded.event,
            topic=record.topic,
            key=record.key,
            partition=record.partition,
            offset=record.offset,
        )


def _connection_kwargs(config: KafkaConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap_servers,
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": config.request_timeout_ms,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context(
            cafile=config.ssl_cafile, certfile=config.ssl_certfile, keyfile=config.ssl_keyfile
        )
    if config.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = config.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = config.sasl_username
        kwargs["sasl_plain_password"] = config.sasl_password
    return kwargs


def connection_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """The aiokafka client arguments (servers, client id, TLS, SASL) of ``config``.

    For components that need a raw aiokafka client next to the bus, e.g. a
    consumer that handles whole batches or a producer of undecoded records.
    """
    return _connection_kwargs(config)


def kafka_config(settings: KafkaSettings, env: Mapping[str, str]) -> KafkaConfig:
    """``settings`` with the SASL credentials read from the variables they name in ``env``."""
    return KafkaConfig(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        security_protocol=settings.security_protocol,
        sasl_mechanism=settings.sasl_mechanism,
        sasl_username=env.get(settings.sasl_username_env) if settings.sasl_username_env else None,
        sasl_password=env.get(settings.sasl_password_env) if settings.sasl_password_env else None,
        ssl_cafile=settings.ssl_cafile,
    )
