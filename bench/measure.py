"""Measurement helpers shared by the benchmarks: sequential timings, throughput, percentiles."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

Call = Callable[[], Awaitable[None]]
"""One request of a benchmark, awaited to its end."""


async def timed(call: Call, count: int) -> list[float]:
    """The duration in seconds of each of ``count`` calls made one after another."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def throughput(call: Call, total: int, concurrency: int) -> float:
    """Calls per second when ``total`` calls are made by ``concurrency`` workers."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


def percentile(samples: list[float], q: int) -> float:
    """The ``q``-th percentile of ``samples``."""
    return statistics.quantiles(samples, n=100)[q - 1]


def figures(samples: dict[str, list[float]], baseline: str, subject: str) -> dict[str, float]:
    """p50/p99 of both paths and what ``subject`` adds over ``baseline``, in ms.

    ``samples`` holds ``<path>_unary`` and ``<path>_stream`` timings in seconds.
    """
    found: dict[str, float] = {}
    for kind in ("unary", "stream"):
        base, through = samples[f"{baseline}_{kind}"], samples[f"{subject}_{kind}"]
        for q in (50, 99):
            found[f"{kind}_{baseline}_p{q}_ms"] = round(percentile(base, q) * 1e3, 3)
            found[f"{kind}_{subject}_p{q}_ms"] = round(percentile(through, q) * 1e3, 3)
            added = (percentile(through, q) - percentile(base, q)) * 1e3
            found[f"{kind}_added_p{q}_ms"] = round(added, 3)
    return found
