"""Waiting for an event with a time limit, without losing a cancellation.

``asyncio.wait_for`` on Python 3.11 returns normally when the awaited future
completes in the same loop iteration as the waiting task is cancelled, so the
cancellation is lost and a loop that waits this way may never stop
(python/cpython#86296). :func:`wait_or_timeout` always lets it through.
"""

from __future__ import annotations

import asyncio


async def wait_or_timeout(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` passed; True when it was set."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
    return bool(done)
