"""Failures mid-load: totals stay exactly the sum of the requests served.

- The consumer process is killed (SIGKILL) while it works through a backlog,
  twice, and started again: batches whose SQL commit happened are skipped as
  duplicates, the others are applied, and spend reaches Redis exactly once.
- The broker is stopped and started again while events are being published
  and consumed. The test broker (Tansu, memory storage) forgets its topics and
  committed offsets on restart, so the producer side does what an outbox or
  spool does after such a loss: it publishes again everything it had sent. The
  consumer must ride out the outage and count every request once.
- A burst of duplicates is in ``test_pipeline.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from llmgw.events.v1 import events_pb2
from services.kernel.events.publisher import ConnectingPublisher
from services.kernel.spend import BudgetPeriod, SpendLedger, SpendSubject, SubjectKind
from services.kernel.sql import Database, DatabaseConfig
from services.usage.store import UsageQuery, UsageStore
from tests.harness.process import ServerProcess, free_port
from tests.integration.inference.test_usage_spool import tansu_spec
from tests.integration.usage.support import (
    BASE_TIME,
    eventually,
    producer_bus,
    running_usage,
    settings_for,
    usage_event,
)

pytestmark = pytest.mark.integration

KEYS = ("key-a", "key-b")


def served(count: int, prefix: str) -> list[events_pb2.UsageRecorded]:
    return [
        usage_event(
            f"{prefix}-{n}",
            api_key_id=KEYS[n % 2],
            project_id="proj",
            input_tokens=n % 7,
            output_tokens=n % 11,
            cost_nanos=100 + n % 13,
            at=BASE_TIME + n % 600,
        )
        for n in range(count)
    ]


async def publish_all(bootstrap: str, topic: str, events: list[events_pb2.UsageRecorded]) -> None:
    async with producer_bus(bootstrap) as bus:
        for start in range(0, len(events), 200):
            await asyncio.gather(*(bus.publish(topic, e) for e in events[start : start + 200]))


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[Database]:
    database = await Database.connect(DatabaseConfig(url))
    try:
        yield database
    finally:
        await database.close()


async def processed_count(database: Database) -> int:
    try:
        async with database.connection() as conn:
            result = await conn.execute(text("SELECT COUNT(*) FROM usage_processed_events"))
            return int(result.scalar_one())
    except Exception:  # the consumer has not created its tables yet
        return 0


async def assert_exact(
    database: Database,
    redis_url: str,
    namespace: str,
    events: list[events_pb2.UsageRecorded],
) -> None:
    rows = await UsageStore(database).usage_rows(
        UsageQuery(start=BASE_TIME, end=BASE_TIME + 86400, group_by=("api_key_id",))
    )
    got = {row.group[0]: (row.totals.value("request_count"), row.totals.value("total_tokens"),
                          row.totals.value("total_nanos")) for row in rows}  # fmt: skip
    want = {
        key: (
            sum(1 for e in events if e.api_key_id == key),
            sum(e.usage.total_tokens for e in events if e.api_key_id == key),
            sum(e.cost.total_nanos for e in events if e.api_key_id == key),
        )
        for key in KEYS
    }
    assert got == want
    client = aioredis.Redis.from_url(redis_url)
    try:
        spent = await SpendLedger(client, namespace=namespace).spent(
            "USD",
            [(SpendSubject(SubjectKind.API_KEY, key), BudgetPeriod.MONTH) for key in KEYS]
            + [(SpendSubject(SubjectKind.PROJECT, "proj"), BudgetPeriod.DAY)],
            datetime.fromtimestamp(BASE_TIME, UTC),
        )
    finally:
        await client.aclose()
    assert spent == [want[key][2] for key in KEYS] + [sum(e.cost.total_nanos for e in events)]


@pytest.fixture
def consumer_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@dataclass(frozen=True)
class Backlog:
    """Where the consumer processes read from and write to."""

    kafka_bootstrap: str
    redis_url: str
    namespace: str
    topic: str
    env: dict[str, str]


@pytest.fixture
def backlog(
    database_url: str,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    unique_name: Callable[[str], str],
) -> Backlog:
    topic = unique_name("usage")
    namespace = redis_prefix.rstrip(":")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LLMGW_PIPELINE__USAGE_TOPIC": topic,
        "LLMGW_PIPELINE__AUDIT_TOPIC": unique_name("audit"),
        "LLMGW_PIPELINE__GROUP_ID": unique_name("group"),
        "LLMGW_PIPELINE__SPEND_NAMESPACE": namespace,
        "LLMGW_PIPELINE__MAX_BATCH_RECORDS": "100",
        "LLMGW_PIPELINE__SESSION_TIMEOUT_MS": "1000",
        "LLMGW_PIPELINE__HEARTBEAT_INTERVAL_MS": "200",
        "LLMGW_PIPELINE__POLL_TIMEOUT_MS": "200",
    }
    return Backlog(kafka_bootstrap, redis_url, namespace, topic, env)


async def test_a_consumer_killed_mid_batch_and_restarted_counts_everything_once(
    tmp_path: Path,
    database_url: str,
    backlog: Backlog,
    consumer_processes: list[subprocess.Popen[bytes]],
) -> None:
    events = served(3000, "kill")
    await publish_all(backlog.kafka_bootstrap, backlog.topic, events)
    env = backlog.env
    llmgw = Path(sys.executable).parent / "llmgw"

    def start_consumer(n: int) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"usage-{n}.log").open("wb")
        process = subprocess.Popen(
            [str(llmgw), "serve", "usage", "--port", str(free_port()), "--metrics-port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        consumer_processes.append(process)
        return process

    async with open_database(database_url) as database:
        seen = 0
        for round_number in range(2):
            process = start_consumer(round_number)
            before = seen

            async def progressed(floor: int = before) -> bool:
                return await processed_count(database) > floor

            await eventually(progressed, timeout=60)
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
            seen = await processed_count(database)
            assert seen < len(events), "the backlog was done before the kill; make it larger"

        final = start_consumer(2)

        async def finished() -> bool:
            return await processed_count(database) == len(events)

        await eventually(finished, timeout=120)
        await asyncio.sleep(1)  # let a wrongly repeated batch show up, were there one
        await assert_exact(database, backlog.redis_url, backlog.namespace, events)
        final.send_signal(signal.SIGTERM)
        await asyncio.to_thread(final.wait, 15)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[ServerProcess]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    process = ServerProcess(tansu_spec(free_port(), workdir))
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def test_a_broker_restart_mid_load_loses_and_doubles_nothing(
    database_url: str,
    private_broker: ServerProcess,
    redis_url: str,
    redis_prefix: str,
    unique_name: Callable[[str], str],
) -> None:
    bootstrap = private_broker.spec.url
    topic = unique_name("usage")
    namespace = redis_prefix.rstrip(":")
    settings = settings_for(
        database_url,
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        usage_topic=topic,
        audit_topic=unique_name("audit"),
        group_id=unique_name("group"),
        spend_namespace=namespace,
        max_batch_records=20,
    )
    events = served(600, "outage")
    sent: list[events_pb2.UsageRecorded] = []
    publisher = ConnectingPublisher(lambda: producer_bus(bootstrap), retry_seconds=0.2)

    async def produce() -> None:
        for event in events:
            while True:
                try:
                    await asyncio.wait_for(publisher.publish(topic, event), 2)
                    break
                except Exception:  # broker away: retry this event, as a spool would
                    await asyncio.sleep(0.05)
            sent.append(event)

    async with running_usage(settings) as usage:
        producer = asyncio.create_task(produce())
        try:
            await eventually(lambda: len(sent) >= 200, timeout=60)

            async def consuming() -> bool:
                return (await usage.totals()).request_count > 0

            await eventually(consuming, timeout=60)
            await asyncio.to_thread(private_broker.stop)
            lost = list(sent)  # what the restarted (empty) broker no longer holds
            await asyncio.sleep(1.5)
            await asyncio.to_thread(private_broker.start)
            for event in lost:
                await publisher.publish(topic, event)
            await asyncio.wait_for(producer, 120)
        finally:
            producer.cancel()
            await publisher.close()

        async def complete() -> bool:
            return (await usage.totals()).request_count >= len(events)

        await eventually(complete, timeout=60)
        await asyncio.sleep(1)  # let a wrongly repeated batch show up, were there one
        assert (await usage.totals()).request_count == len(events)
        assert usage.metric("llmgw_usage_duplicates_skipped_total", topic=topic) > 0

    async with open_database(database_url) as database:
        await assert_exact(database, redis_url, namespace, events)
