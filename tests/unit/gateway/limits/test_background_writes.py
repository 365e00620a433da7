from __future__ import annotations

import asyncio

from gateway.limits.redis_access import BackgroundWrites


async def test_drain_waits_for_every_write_and_survives_failures() -> None:
    writes = BackgroundWrites()
    release = asyncio.Event()
    done: list[str] = []

    async def slow() -> None:
        await release.wait()
        done.append("slow")

    async def failing() -> None:
        raise ValueError("lost connection")

    writes.spawn(slow())
    writes.spawn(failing())
    draining = asyncio.create_task(writes.drain())
    await asyncio.sleep(0)
    assert not draining.done()
    release.set()
    await draining
    assert done == ["slow"]


async def test_writes_spawned_while_draining_are_waited_for_too() -> None:
    writes = BackgroundWrites()
    done: list[int] = []

    async def chained(depth: int) -> None:
        await asyncio.sleep(0)
        done.append(depth)
        if depth < 3:
            writes.spawn(chained(depth + 1))

    writes.spawn(chained(0))
    await writes.drain()
    assert done == [0, 1, 2, 3]
