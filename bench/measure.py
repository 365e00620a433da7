"""Measurement helpers shared by the benchmarks: sequential timings, throughput, percentiles."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Call = Callable[[], Awaitable[None]]
"""One request of a benchmark, awaited to its end."""


@dataclass
class Target:
    """The two calls measured on one path: a unary call and a whole stream."""

    unary: Call
    stream: Call


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


async def alternating(
    targets: dict[str, Target],
    rounds: int,
    calls_per_round: int,
    warm_up: tuple[int, int] = (300, 300),
) -> dict[str, list[float]]:
    """Timings of every target's calls at concurrency 1, in alternating rounds.

    Each target is first warmed up with ``warm_up`` (unary, stream) untimed calls;
    then each round makes ``calls_per_round`` unary calls and as many streams on
    every target in turn, so that machine noise hits all alike. The result holds
    ``<name>_unary`` and ``<name>_stream`` timings in seconds (see :func:`figures`).
    """
    samples: dict[str, list[float]] = {}
    for name, target in targets.items():
        await timed(target.unary, warm_up[0])
        await timed(target.stream, warm_up[1])
        samples[f"{name}_unary"] = []
        samples[f"{name}_stream"] = []
    for _ in range(rounds):
        for name, target in targets.items():
            samples[f"{name}_unary"] += await timed(target.unary, calls_per_round)
            samples[f"{name}_stream"] += await timed(target.stream, calls_per_round)
    return samples


async def rates(targets: dict[str, Target], total: int, concurrency: int) -> dict[str, float]:
    """``<name>_<unary|stream>_per_second`` of every target (see :func:`throughput`)."""
    found: dict[str, float] = {}
    for name, target in targets.items():
        for kind, call in (("unary", target.unary), ("stream", target.stream)):
            rate = await throughput(call, total, concurrency)
            found[f"{name}_{kind}_per_second"] = round(rate, 1)
    return found
