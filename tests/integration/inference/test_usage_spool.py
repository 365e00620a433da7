"""Usage events survive a broker outage: spooled to disk, replayed once it is back.

The test runs its own Tansu broker on a fixed port so it can stop and restart
it. Tansu's memory storage forgets everything on restart, so the events
published before the outage are collected before it, and those spooled during
it are collected after the restart by a new consumer group.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpc import aio

from llmgw.inference.v1 import inference_pb2
from tests.harness import binaries
from tests.harness.kafka_broker import broker_answers
from tests.harness.process import ServerProcess, ServerSpec, free_port
from tests.integration.inference.app_support import (
    RunningApp,
    UsageLog,
    consumer_bus,
    running_app,
    settings_for,
)
from tests.integration.inference.helpers import completion, eventually

pytestmark = pytest.mark.integration

PUBLISH_TIMEOUT_SECONDS = 1.0


def tansu_spec(port: int, workdir: Path) -> ServerSpec:
    address = f"127.0.0.1:{port}"
    return ServerSpec(
        name="tansu-outage",
        url=address,
        argv=(
            str(binaries.tansu()),
            "broker",
            "--listener-url", f"tcp://{address}",
            "--advertised-listener-url", f"tcp://{address}",
            "--storage-engine", "memory://tansu/",
        ),
        probe=lambda: broker_answers(address),
        log_path=workdir / "tansu.log",
        cwd=workdir,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ServerProcess]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    process = ServerProcess(tansu_spec(free_port(), workdir))
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def collect(bootstrap: str, topic: str, group: str, ids: set[str]) -> UsageLog:
    log = UsageLog()
    bus = consumer_bus(bootstrap)
    await bus.start()
    try:
        await bus.subscribe([topic], group, log)
        await log.wait_for(ids, timeout=60)
    finally:
        await bus.close()
    return log


async def serve_mixed_requests(app: RunningApp, prefix: str, count: int) -> list[str]:
    """Unary, streamed and Chat requests; returns their ids."""
    ids: list[str] = []
    for n in range(count):
        request_id = f"{prefix}-{n}"
        ids.append(request_id)
        request = completion(text=f"{prefix} prompt {n}", request_id=request_id)
        if n % 3 == 0:
            await app.stub.Complete(inference_pb2.CompleteRequest(completion=request))
        elif n % 3 == 1:
            async for _ in app.stub.StreamComplete(
                inference_pb2.StreamCompleteRequest(completion=request)
            ):
                pass
        else:
            chat = app.stub.Chat()
            await chat.write(inference_pb2.ChatRequest(start=request))
            await chat.done_writing()
            while await chat.read() is not aio.EOF:
                pass
    return ids


async def test_events_of_an_outage_are_spooled_and_replayed_exactly(
    tmp_path: Path, broker: ServerProcess, unique_name: Callable[[str], str]
) -> None:
    bootstrap = broker.spec.url
    topic = unique_name("usage")
    settings = settings_for(
        tmp_path,
        kafka_bootstrap=bootstrap,
        topic=topic,
        publish_timeout_seconds=PUBLISH_TIMEOUT_SECONDS,
    )
    spool_dir = tmp_path / "spool"
    async with running_app(settings) as app:
        before = await serve_mixed_requests(app, "before", 6)
        seen_before = await collect(bootstrap, topic, unique_name("before"), set(before))

        await asyncio.to_thread(broker.stop)
        started = time.monotonic()
        during = await serve_mixed_requests(app, "during", 12)
        elapsed = time.monotonic() - started
        # Requests never wait for the broker.
        assert elapsed < PUBLISH_TIMEOUT_SECONDS * 3, elapsed
        await eventually(lambda: any(spool_dir.glob("*.spool")), timeout=15)

        await asyncio.to_thread(broker.start)
        seen_after = await collect(bootstrap, topic, unique_name("after"), set(during))
        await eventually(lambda: not any(spool_dir.glob("*.spool")), timeout=15)

    delivered = {**seen_before.events(), **seen_after.events()}
    assert set(delivered) == set(before) | set(during)
    for request_id, event in delivered.items():
        assert event.request_id == request_id
        assert event.usage.output_tokens == 16


async def test_the_service_starts_and_serves_before_the_broker_exists(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    workdir = tmp_path / "late-broker"
    workdir.mkdir()
    broker = ServerProcess(tansu_spec(free_port(), workdir))
    topic = unique_name("usage")
    settings = settings_for(
        tmp_path,
        kafka_bootstrap=broker.spec.url,
        topic=topic,
        publish_timeout_seconds=PUBLISH_TIMEOUT_SECONDS,
    )
    try:
        async with running_app(settings) as app:
            ids = await serve_mixed_requests(app, "early", 6)
            await eventually(lambda: any((tmp_path / "spool").glob("*.spool")), timeout=15)
            await asyncio.to_thread(broker.start)
            seen = await collect(broker.spec.url, topic, unique_name("late"), set(ids))
        assert set(seen.events()) == set(ids)
    finally:
        broker.stop()
