"""Per-deployment load and latency as this replica sees it.

In-flight counts feed the least-busy strategy; exponentially weighted moving
averages (EWMA) of latency and time to first token feed the latency-based one.
State is keyed by target key and owned by one router (no module state).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


class LoadView(Protocol):
    """What strategies may read about deployments."""

    def in_flight(self, key: str) -> int:
        """Requests to ``key`` running now on this replica."""
        ...

    def latency(self, key: str) -> float | None:
        """Moving average of whole-request latency in seconds; None before any sample."""
        ...

    def time_to_first_token(self, key: str) -> float | None:
        """Moving average of time to first token in seconds; None before any sample."""
        ...


@dataclass(slots=True)
class _Deployment:
    in_flight: int = 0
    latency: float | None = None
    ttft: float | None = None


class DeploymentStats:
    """In-flight counts and latency EWMAs; ``alpha`` weighs the newest sample."""

    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self._by_key: dict[str, _Deployment] = {}

    def in_flight(self, key: str) -> int:
        entry = self._by_key.get(key)
        return entry.in_flight if entry is not None else 0

    def latency(self, key: str) -> float | None:
        entry = self._by_key.get(key)
        return entry.latency if entry is not None else None

    def time_to_first_token(self, key: str) -> float | None:
        entry = self._by_key.get(key)
        return entry.ttft if entry is not None else None

    @contextmanager
    def track(self, key: str) -> Iterator[None]:
        """Count one request to ``key`` as in flight for the duration of the block."""
        self.begin(key)
        try:
            yield
        finally:
            self.end(key)

    def begin(self, key: str) -> None:
        """Count one more request to ``key`` in flight; pair with :meth:`end`."""
        self._by_key.setdefault(key, _Deployment()).in_flight += 1

    def end(self, key: str) -> None:
        """One request to ``key`` finished."""
        entry = self._by_key.get(key)
        if entry is not None and entry.in_flight > 0:
            entry.in_flight -= 1

    def observe(self, key: str, latency: float, time_to_first_token: float | None = None) -> None:
        """Fold one successful request's timings (seconds) into the averages."""
        entry = self._by_key.setdefault(key, _Deployment())
        entry.latency = self._mix(entry.latency, latency)
        if time_to_first_token is not None:
            entry.ttft = self._mix(entry.ttft, time_to_first_token)

    def retain(self, keys: Iterable[str]) -> None:
        """Forget idle deployments not in ``keys`` (after a table swap)."""
        keep = set(keys)
        for key in [k for k, v in self._by_key.items() if k not in keep and not v.in_flight]:
            del self._by_key[key]

    def _mix(self, average: float | None, sample: float) -> float:
        if average is None:
            return sample
        return self._alpha * sample + (1.0 - self._alpha) * average
