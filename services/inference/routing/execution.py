"""Running one call against a route: order, retries, fallbacks, cooldown and deadline.

For a request naming ``ref`` the executor tries, in order:

1. the deployments of ``ref``'s route that admit the request (token limits), in
   priority order and, within a priority, the route's strategy's order, skipping
   deployments in cooldown. A failure whose error allows a fall back moves on to
   the next deployment at once. A *retryable* failure also puts the deployment
   back at the end of the line while retries remain (the route's ``max_retries``,
   else the router default); before trying a deployment again the executor waits
   a full-jitter exponential backoff, at least the ``retry_after_seconds`` the
   deployment asked for;
2. the route's context-window fallbacks, first of all, as soon as the request
   does not fit (by count, or because a provider said so);
3. the route's fallbacks, then the request's ``fallback_models`` (unless the
   request disables fallbacks), each tried as in 1 with its own retries; the
   fallbacks of a fallback are not followed.

An error that does not allow a fall back (e.g. the provider rejected the request
as invalid) is raised at once. Retryable upstream failures, and refused
credentials or models, count towards the deployment's cooldown; successes reset
it. Nothing waits past the deadline: a wait that would end after it, or an
attempt still running at it, raises ``DeadlineExceeded``. When everything failed,
the last upstream error is raised; when nothing could be tried, INVALID_ARGUMENT
with the token-limit violations, or UNAVAILABLE when every deployment is cooling
down or none is servable.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from provider_adapters.errors import (
    ContextWindowExceeded,
    MalformedResponse,
    ProviderAuthFailed,
    ProviderError,
    ProviderModelNotFound,
)
from services.inference.routing.backoff import backoff_seconds
from services.inference.routing.clock import Clock
from services.inference.routing.health import HealthBoard
from services.inference.routing.limits import WINDOW_REASONS
from services.inference.routing.options import RoutingOptions
from services.inference.routing.stats import DeploymentStats
from services.inference.routing.strategies import Demand, order_by_priority, strategy
from services.inference.routing.table import Candidate, Route, RoutingTable
from services.kernel.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    LlmgwError,
    Unavailable,
)

_log = logging.getLogger("llmgw.inference.routing")

T = TypeVar("T")

Admit = Callable[[Candidate], Sequence[FieldViolation]]
"""The token-limit violations of the request at a candidate (empty: admitted)."""

DemandOf = Callable[[Route], Demand]
"""What the strategy of a route should know about the request."""


@dataclass(frozen=True, slots=True)
class Job:
    """One call to place: the name, its extra fallbacks, limits and deadline.

    ``deadline`` is absolute on the executor's clock (None: none).
    """

    ref: str
    admit: Admit
    demand: DemandOf
    deadline: float | None = None
    extra_fallbacks: tuple[str, ...] = ()
    disable_fallbacks: bool = False
    success_on_return: bool = True
    """False for streams: the caller reports the outcome when the stream ends."""
    on_attempt: Callable[[Attempt], None] | None = None
    """Told about each attempt just before it starts; must not raise."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a job: where it runs and how many attempts it makes so far.

    ``number`` counts this attempt (the first is 1); ``fallback_from`` is the
    requested name when a fallback route runs it, else empty.
    """

    candidate: Candidate
    number: int
    fallback_from: str = ""


@dataclass(frozen=True, slots=True)
class Placed(Generic[T]):
    """A successful attempt: its value, where it ran and the attempts it took."""

    value: T
    candidate: Candidate
    attempts: int
    started: float
    fallback_from: str = ""
    """The requested name when a fallback route served the call, else empty."""

    @property
    def attempt(self) -> Attempt:
        """The attempt that succeeded."""
        return Attempt(self.candidate, self.attempts, self.fallback_from)


@dataclass(slots=True)
class _Tally:
    attempts: int = 0
    last_error: ProviderError | None = None
    violations: list[FieldViolation] = field(default_factory=list)
    cooling: bool = False
    window_fallbacks_queued: bool = False


@dataclass(slots=True)
class _Turn:
    candidate: Candidate
    failed: ProviderError | None = None


class Executor:
    """Places jobs; shared by every request of one router."""

    def __init__(
        self,
        options: RoutingOptions,
        health: HealthBoard,
        stats: DeploymentStats,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._options = options
        self._health = health
        self._stats = stats
        self._clock = clock
        self._rng = rng

    async def run(
        self, table: RoutingTable, job: Job, attempt: Callable[[Candidate], Awaitable[T]]
    ) -> Placed[T]:
        """Run ``attempt`` on candidates until one succeeds; see the module docstring."""
        primary = table.route(job.ref)
        routes: deque[Route] = deque([primary])
        if not job.disable_fallbacks:
            routes.extend(_routes(table, [*primary.fallbacks, *job.extra_fallbacks], primary))
        tally = _Tally()

        def queue_window_fallbacks() -> None:
            if tally.window_fallbacks_queued or job.disable_fallbacks:
                return
            tally.window_fallbacks_queued = True
            extra = _routes(table, primary.context_window_fallbacks, primary)
            routes.extendleft(reversed(extra))

        while routes:
            route = routes.popleft()
            admitted: list[Candidate] = []
            for candidate in route.candidates:
                refused = job.admit(candidate)
                if not refused:
                    admitted.append(candidate)
                elif route is primary:
                    tally.violations.extend(refused)
            if not admitted:
                if any(v.reason in WINDOW_REASONS for v in tally.violations):
                    queue_window_fallbacks()
                continue
            placed = await self._run_route(
                route=route,
                primary=primary,
                admitted=admitted,
                job=job,
                attempt=attempt,
                tally=tally,
                on_window_exceeded=queue_window_fallbacks,
            )
            if placed is not None:
                return placed
        raise _exhausted(job.ref, tally, self._options)

    async def _run_route(
        self,
        *,
        route: Route,
        primary: Route,
        admitted: list[Candidate],
        job: Job,
        attempt: Callable[[Candidate], Awaitable[T]],
        tally: _Tally,
        on_window_exceeded: Callable[[], None],
    ) -> Placed[T] | None:
        ordered = order_by_priority(admitted, strategy(route.strategy), job.demand(route))
        cooling = await self._health.cooling([c.target.key for c in ordered])
        line = deque(_Turn(c) for c in ordered if c.target.key not in cooling)
        if not line:
            tally.cooling = True
            return None
        retries_left = self._options.max_retries if route.max_retries is None else route.max_retries
        retry = 0
        while line:
            turn = line.popleft()
            if turn.failed is not None:
                delay = backoff_seconds(
                    retry, turn.failed.retry_after_seconds, self._options, self._rng
                )
                await self._wait(delay, job)
                retry += 1
            key = turn.candidate.target.key
            tally.attempts += 1
            fallback_from = "" if route is primary else job.ref
            if job.on_attempt is not None:
                job.on_attempt(Attempt(turn.candidate, tally.attempts, fallback_from))
            started = self._clock.monotonic()
            try:
                value = await self._attempt(attempt, turn.candidate, job)
            except ProviderError as error:
                tally.last_error = error
                tripped = await self._health.failure(key) if _counts(error) else False
                if isinstance(error, ContextWindowExceeded):
                    on_window_exceeded()
                    if job.disable_fallbacks:
                        raise
                    return None
                if not error.fallback:
                    raise
                if error.retryable and retries_left > 0 and not tripped:
                    retries_left -= 1
                    line.append(_Turn(turn.candidate, error))
                continue
            if job.success_on_return:
                await self._health.success(key)
            return Placed(value, turn.candidate, tally.attempts, started, fallback_from)
        return None

    async def report_success(self, candidate: Candidate) -> None:
        """A call placed with ``success_on_return=False`` finished well."""
        await self._health.success(candidate.target.key)

    async def report_failure(self, candidate: Candidate, error: Exception) -> None:
        """Count a failure that happened after the call was placed (mid-stream)."""
        if isinstance(error, ProviderError) and _counts(error):
            await self._health.failure(candidate.target.key)

    async def _attempt(
        self, attempt: Callable[[Candidate], Awaitable[T]], candidate: Candidate, job: Job
    ) -> T:
        remaining = self._remaining(job)
        key = candidate.target.key
        with self._stats.track(key):
            try:
                async with asyncio.timeout(remaining) as scope:
                    return await attempt(candidate)
            except TimeoutError:
                if scope.expired():
                    raise DeadlineExceeded(
                        f"deadline passed while calling {candidate.deployment_id}"
                    ) from None
                raise _unexpected(candidate) from None
            except LlmgwError:
                raise
            except Exception as exc:
                _log.exception("adapter of %s failed unexpectedly", key)
                raise _unexpected(candidate) from exc

    def _remaining(self, job: Job) -> float | None:
        if job.deadline is None:
            return None
        remaining = job.deadline - self._clock.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("deadline passed before the next attempt")
        return remaining

    async def _wait(self, seconds: float, job: Job) -> None:
        if job.deadline is not None and self._clock.monotonic() + seconds >= job.deadline:
            raise DeadlineExceeded(
                f"deadline would pass during the {seconds:.3f}s wait before the next retry"
            )
        if seconds > 0:
            await self._clock.sleep(seconds)


def _routes(table: RoutingTable, names: Sequence[str], primary: Route) -> list[Route]:
    found: list[Route] = []
    for name in names:
        route = table.find(name)
        if route is None:
            _log.warning("fallback %r of %r is not in the routing table", name, primary.name)
        elif route is not primary and route not in found:
            found.append(route)
    return found


def _counts(error: ProviderError) -> bool:
    """Whether ``error`` says something about the deployment's health."""
    return error.retryable or isinstance(error, ProviderAuthFailed | ProviderModelNotFound)


def _unexpected(candidate: Candidate) -> ProviderError:
    return MalformedResponse(
        f"the adapter of {candidate.deployment_id} failed unexpectedly",
        provider=candidate.target.version.provider,
    )


def _exhausted(ref: str, tally: _Tally, options: RoutingOptions) -> Exception:
    if tally.last_error is not None:
        return tally.last_error
    if tally.violations:
        first = tally.violations[0]
        return InvalidArgument(
            f"the request does not fit {ref!r}: {first.description}",
            _unique(tally.violations),
            reason=first.reason,
        )
    if tally.cooling:
        return Unavailable(
            f"every deployment of {ref!r} is cooling down after repeated failures",
            retry_after_seconds=options.cooldown_seconds,
            reason="DEPLOYMENTS_COOLING_DOWN",
        )
    return Unavailable(f"no deployment of {ref!r} can be served", reason="NO_SERVABLE_DEPLOYMENT")


def _unique(violations: Sequence[FieldViolation]) -> list[FieldViolation]:
    seen: set[FieldViolation] = set()
    unique: list[FieldViolation] = []
    for violation in violations:
        if violation not in seen:
            seen.add(violation)
            unique.append(violation)
    return unique
