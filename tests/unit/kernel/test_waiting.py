"""wait_or_timeout: set, timed out, and never swallowing a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from services.kernel.waiting import wait_or_timeout


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_or_timeout(event, 0.001) is False
    event.set()
    assert await wait_or_timeout(event, 60) is True


async def test_a_cancel_arriving_as_the_event_is_set_still_cancels() -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_or_timeout(event, 60))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    event.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
