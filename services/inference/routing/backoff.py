"""How long to wait before a retry: full-jitter exponential backoff honouring retry-after."""

from __future__ import annotations

import random

from services.inference.routing.options import RoutingOptions


def backoff_seconds(
    retry: int, retry_after: float | None, options: RoutingOptions, rng: random.Random
) -> float:
    """The wait before retry number ``retry`` (0 for the first retry).

    A uniformly random time between 0 and ``min(max, base * 2**retry)`` ("full
    jitter", so replicas retrying together spread out), raised to
    ``retry_after`` when the failed upstream asked for it.
    """
    ceiling = min(options.backoff_max_seconds, options.backoff_base_seconds * (2.0**retry))
    jittered = rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0
    if retry_after is not None and retry_after > jittered:
        return retry_after
    return jittered
