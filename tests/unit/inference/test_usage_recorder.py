"""The usage recorder: never blocks, spools what the bus refuses, replays it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import Message

from llmgw.events.v1 import events_pb2
from services.inference.usage import UsageConfig, UsageRecorder


class FlakyBus:
    """A publisher that refuses everything while ``down`` and records what it took."""

    def __init__(self) -> None:
        self.down = False
        self.published: list[str] = []

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        if self.down:
            raise ConnectionError("broker away")
        assert isinstance(event, events_pb2.UsageRecorded)
        self.published.append(event.metadata.id)


class HangingBus:
    """A publisher that never answers."""

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        await asyncio.Event().wait()


def event(request_id: str) -> events_pb2.UsageRecorded:
    recorded = events_pb2.UsageRecorded(request_id=request_id)
    recorded.metadata.id = request_id
    return recorded


def config(tmp_path: Path, **overrides: float) -> UsageConfig:
    return UsageConfig(
        spool_dir=tmp_path / "spool",
        publish_timeout_seconds=overrides.get("publish_timeout_seconds", 0.5),
        replay_interval_seconds=0.05,
        buffer_size=int(overrides.get("buffer_size", 100)),
    )


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition still false after {timeout}s")


async def test_events_are_published_in_the_background(tmp_path: Path) -> None:
    bus = FlakyBus()
    async with UsageRecorder(bus, config(tmp_path)) as recorder:
        for n in range(10):
            recorder.record(event(f"e{n}"))
        await wait_until(lambda: len(bus.published) == 10)
    assert bus.published == [f"e{n}" for n in range(10)]


async def test_refused_events_are_spooled_and_replayed_when_the_bus_is_back(
    tmp_path: Path,
) -> None:
    bus = FlakyBus()
    async with UsageRecorder(bus, config(tmp_path)) as recorder:
        bus.down = True
        for n in range(20):
            recorder.record(event(f"e{n}"))
        await wait_until(lambda: not recorder.spool.is_empty())
        bus.down = False
        await wait_until(lambda: set(bus.published) == {f"e{n}" for n in range(20)})
        await wait_until(recorder.spool.is_empty)


async def test_a_hanging_bus_never_blocks_record(tmp_path: Path) -> None:
    recorder = UsageRecorder(HangingBus(), config(tmp_path, buffer_size=4))
    recorder.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(50):  # far more than the buffer holds
        recorder.record(event(f"e{n}"))
    assert loop.time() - started < 0.5
    await wait_until(lambda: not recorder.spool.is_empty())
    await recorder.aclose()

    # What the hanging bus never took is on disk; a later recorder delivers it all.
    bus = FlakyBus()
    async with UsageRecorder(bus, config(tmp_path)):
        await wait_until(lambda: set(bus.published) == {f"e{n}" for n in range(50)})
