"""The usage process on a real broker, Redis and database: exact totals, spend, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from llmgw.events.v1 import events_pb2
from llmgw.usage.v1 import usage_pb2
from services.kernel.events import encode_event
from services.kernel.migrations import migrate
from services.kernel.spend import BudgetPeriod, SpendLedger, SpendSubject, SubjectKind
from services.kernel.sql import Database, DatabaseConfig
from services.usage.metrics import PipelineMetrics
from services.usage.pipeline import (
    DEAD_LETTER_ORIGIN_HEADER,
    DEAD_LETTER_REASON_HEADER,
    Pipeline,
    PipelineConfig,
    RawRecord,
)
from services.usage.schema import COMPONENT, MIGRATIONS
from services.usage.store import UsageQuery, UsageStore
from tests.harness.process import free_port
from tests.integration.usage.support import (
    BASE_TIME,
    audit_event,
    eventually,
    producer_bus,
    running_usage,
    settings_for,
    time_range,
    usage_event,
)

pytestmark = pytest.mark.integration

KEYS = ("key-a", "key-b", "key-c")


def served_events(count: int) -> list[events_pb2.UsageRecorded]:
    """``count`` requests over three keys and two projects, costs 1000 + n nanos."""
    return [
        usage_event(
            f"req-{n}",
            api_key_id=KEYS[n % 3],
            project_id=f"proj-{n % 2}",
            input_tokens=n,
            output_tokens=2 * n,
            cost_nanos=1000 + n,
            at=BASE_TIME + n,
        )
        for n in range(count)
    ]


async def test_totals_and_spend_are_exact_despite_duplicates_and_malformed_records(
    database_url: str,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    unique_name: Callable[[str], str],
) -> None:
    usage_topic, audit_topic = unique_name("usage"), unique_name("audit")
    dead_letter_topic = unique_name("dead")
    namespace = redis_prefix.rstrip(":")
    settings = settings_for(
        database_url,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        usage_topic=usage_topic,
        audit_topic=audit_topic,
        dead_letter_topic=dead_letter_topic,
        group_id=unique_name("group"),
        spend_namespace=namespace,
        max_batch_records=50,
    )
    events = served_events(60)
    audits = [audit_event(f"audit-{n}", at_micros=(BASE_TIME + n) * 1_000_000) for n in range(5)]
    async with running_usage(settings) as usage, producer_bus(kafka_bootstrap) as bus:
        for event in events:
            await bus.publish(usage_topic, event)
        for audit in audits:
            await bus.publish(audit_topic, audit)
        # A burst of duplicates: every event twice more, and every audit entry once more.
        for event in [*events, *events]:
            await bus.publish(usage_topic, event)
        for audit in audits:
            await bus.publish(audit_topic, audit)
        await publish_malformed(kafka_bootstrap, usage_topic)
        for event in served_events(62)[60:]:
            await bus.publish(usage_topic, event)

        async def all_seen() -> bool:
            totals = await usage.totals()
            return (
                totals.request_count == 62
                and usage.metric("llmgw_usage_duplicates_skipped_total", topic=usage_topic) == 120
                and usage.metric("llmgw_usage_duplicates_skipped_total", topic=audit_topic) == 5
            )

        await eventually(all_seen, timeout=60)

        totals = await usage.totals()
        expected = served_events(62)
        assert totals.request_count == 62
        assert totals.usage.input_tokens == sum(e.usage.input_tokens for e in expected)
        assert totals.usage.total_tokens == sum(e.usage.total_tokens for e in expected)
        assert totals.cost.total_nanos == sum(e.cost.total_nanos for e in expected)
        assert totals.cost.currency_code == "USD"
        assert usage.metric("llmgw_usage_events_processed_total", topic=usage_topic) == 62
        assert usage.metric("llmgw_usage_events_processed_total", topic=audit_topic) == 5
        dead = usage.metric(
            "llmgw_usage_dead_lettered_total", topic=usage_topic, reason="undecodable"
        ) + usage.metric("llmgw_usage_dead_lettered_total", topic=usage_topic, reason="invalid")
        assert dead == 4

        by_key = await usage.stub.QueryUsage(
            usage_pb2.QueryUsageRequest(
                time_range=time_range(BASE_TIME - 60),
                group_by=[usage_pb2.USAGE_DIMENSION_API_KEY],
            )
        )
        spent_by_key = {row.group.api_key_id: row.totals.cost.total_nanos for row in by_key.rows}
        assert spent_by_key == {
            key: sum(e.cost.total_nanos for e in expected if e.api_key_id == key) for key in KEYS
        }

        audit_log = await usage.stub.QueryAuditLog(
            usage_pb2.QueryAuditLogRequest(time_range=time_range(BASE_TIME - 60))
        )
        assert [e.id for e in audit_log.entries] == [f"audit-{n}" for n in reversed(range(5))]

    await assert_spend(redis_url, namespace, expected)
    await assert_dead_letters(kafka_bootstrap, dead_letter_topic, usage_topic, count=4)


async def publish_malformed(bootstrap: str, topic: str) -> None:
    """Four records that must be dead-lettered, between good ones."""
    wrong_topic = encode_event(audit_event("misplaced"), default_source="//llmgw/tests")
    negative = usage_event("negative", input_tokens=-1)
    negative_record = encode_event(negative, default_source="//llmgw/tests")
    good = encode_event(usage_event("req-x"), default_source="//llmgw/tests")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not a protobuf event", headers=[])
        await producer.send_and_wait(topic, b"\xff\xff\xff", headers=list(good.headers))
        await producer.send_and_wait(topic, wrong_topic.value, headers=list(wrong_topic.headers))
        await producer.send_and_wait(
            topic, negative_record.value, headers=list(negative_record.headers)
        )
    finally:
        await producer.stop()


async def assert_spend(
    redis_url: str, namespace: str, expected: list[events_pb2.UsageRecorded]
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        ledger = SpendLedger(client, namespace=namespace)
        at = datetime.fromtimestamp(BASE_TIME, UTC)
        subjects = [SpendSubject(SubjectKind.API_KEY, key) for key in KEYS] + [
            SpendSubject(SubjectKind.PROJECT, f"proj-{n}") for n in range(2)
        ]
        spent = await ledger.spent("USD", [(subject, BudgetPeriod.DAY) for subject in subjects], at)
        wanted = [
            sum(
                e.cost.total_nanos
                for e in expected
                if (e.api_key_id if s.kind is SubjectKind.API_KEY else e.project_id) == s.id
            )
            for s in subjects
        ]
        assert spent == wanted
    finally:
        await client.aclose()


async def assert_dead_letters(bootstrap: str, topic: str, origin_topic: str, count: int) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        records: list[Any] = []
        async with asyncio.timeout(30):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert len(records) == count
    for record in records:
        headers = dict(record.headers)
        assert headers[DEAD_LETTER_ORIGIN_HEADER].decode().startswith(f"{origin_topic}:")
        assert headers[DEAD_LETTER_REASON_HEADER]


class NoDeadLetters:
    """A sink for dead letters in a test that sends none."""

    async def send(self, record: RawRecord, reason: str, detail: str) -> None:
        raise AssertionError(f"unexpected dead letter: {reason}: {detail}")


async def test_spend_missed_after_the_sql_commit_is_completed_on_redelivery(
    database_url: str, redis_url: str, redis_prefix: str
) -> None:
    namespace = redis_prefix.rstrip(":")
    events = served_events(30)
    records = [
        RawRecord("usage", 0, offset, None, encoded.value, encoded.headers)
        for offset, encoded in enumerate(
            encode_event(e, default_source="//llmgw/tests") for e in events
        )
    ]
    config = PipelineConfig(usage_topic="usage", audit_topic="audit")
    database = await Database.connect(DatabaseConfig(database_url))
    unreachable = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    working = aioredis.Redis.from_url(redis_url)
    try:
        await migrate(database, COMPONENT, MIGRATIONS)
        store = UsageStore(database)

        def pipeline(client: aioredis.Redis) -> Pipeline:
            return Pipeline(
                store,
                SpendLedger(client, namespace=namespace),
                dead_letters=NoDeadLetters(),
                metrics=PipelineMetrics(CollectorRegistry()),
                config=config,
            )

        # Redis is away: the SQL transaction commits, then the batch fails.
        with pytest.raises(RedisError):
            await pipeline(unreachable).handle(records)
        # The batch is delivered again, twice: counted once in SQL and in Redis.
        redelivered = await pipeline(working).handle(records)
        assert (redelivered.applied, redelivered.duplicates) == (0, 30)
        await pipeline(working).handle(records)
        rows = await store.usage_rows(UsageQuery(start=BASE_TIME, end=BASE_TIME + 86400))
        assert rows[0].totals.value("request_count") == 30
    finally:
        await unreachable.aclose()
        await working.aclose()
        await database.close()
    await assert_spend(redis_url, namespace, events)
