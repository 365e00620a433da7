"""The router: the :class:`~services.inference.engine.CompletionEngine` over a live
routing table.

It resolves the requested name, checks token limits, places the call with the
:class:`~services.inference.routing.execution.Executor` (strategies, retries,
fallbacks, cooldown, deadline) and completes every result with usage, cost and
``served_by``. Streams that fail after their first chunk end with a result whose
``error`` is set and whose usage counts what was streamed. Every attempt is
noted in ``call.placement`` before it starts, so a request that ends early
(cancelled, failed) still says where it ran.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import aclosing
from typing import Any, cast

import redis.asyncio as redis

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from llmgw.models.v1 import models_pb2
from provider_adapters.base import AdapterPlugin, adapter_registry
from services.inference.engine import (
    CallContext,
    CompletionRequest,
    CompletionResult,
    Placement,
    StreamEvent,
    failed_finish_reason,
)
from services.inference.routing import limits
from services.inference.routing.adapters import AdapterPool
from services.inference.routing.clock import Clock, SystemClock
from services.inference.routing.execution import Attempt, Executor, Job, Placed
from services.inference.routing.health import HealthBoard, LocalHealth, RedisHealth
from services.inference.routing.live import LiveTable
from services.inference.routing.options import RoutingOptions
from services.inference.routing.pricing import cost_of
from services.inference.routing.stats import DeploymentStats, LoadView
from services.inference.routing.strategies import Demand
from services.inference.routing.streams import StreamOutcome, relay
from services.inference.routing.table import Candidate, Route, RoutingTable, build_table
from services.inference.routing.tokens import TokenCount, TokenCounter
from services.kernel.errors import FieldViolation
from services.kernel.plugins import PluginRegistry

_log = logging.getLogger("llmgw.inference.routing")


class Router:
    """Routes completions, embeddings and token counts over a swappable table.

    Build it with :meth:`create`; feed registry updates to :meth:`replace_table`;
    close it with :meth:`aclose`. ``clock`` and ``rng`` are injectable so tests
    can record waits and fix random choices.
    """

    def __init__(
        self,
        *,
        live: LiveTable,
        options: RoutingOptions,
        health: HealthBoard,
        pool: AdapterPool,
        counter: TokenCounter,
        stats: DeploymentStats,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        """Use :meth:`create`."""
        self._live = live
        self._options = options
        self._pool = pool
        self._counter = counter
        self._stats = stats
        self._clock = clock
        self._rng = rng
        self._executor = Executor(options, health, stats, clock, rng)

    @classmethod
    async def create(
        cls,
        snapshot: models_pb2.RegistrySnapshot,
        options: RoutingOptions,
        redis_client: redis.Redis | None = None,
        *,
        adapters: PluginRegistry[AdapterPlugin] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> Router:
        """A router serving ``snapshot``.

        ``redis_client`` shares deployment cooldowns across replicas (in-process
        without it). ``adapters`` defaults to the installed adapter plugins and
        ``env`` (where credential variables are read) to ``os.environ``.
        """
        clock = clock or SystemClock()
        pool = AdapterPool(adapters or adapter_registry(), os.environ if env is None else env)
        counter = TokenCounter()
        table = _build(snapshot, pool, counter)
        health: HealthBoard = (
            RedisHealth(redis_client, options, clock)
            if redis_client is not None
            else LocalHealth(options, clock)
        )
        return cls(
            live=LiveTable(table, pool),
            options=options,
            health=health,
            pool=pool,
            counter=counter,
            stats=DeploymentStats(options.latency_ewma_alpha),
            clock=clock,
            rng=rng or random.Random(),
        )

    @property
    def load(self) -> LoadView:
        """In-flight counts and latency averages of this replica, by target key."""
        return self._stats

    @property
    def table(self) -> RoutingTable:
        """The current routing table."""
        return self._live.table

    def replace_table(self, snapshot: models_pb2.RegistrySnapshot) -> RoutingTable:
        """Serve ``snapshot`` from now on; running requests finish on the old table.

        Call it from the event loop. Returns the new table (its ``problems`` say
        which versions could not be served).
        """
        table = _build(snapshot, self._pool, self._counter)
        self._live.swap(table)
        self._stats.retain(table.targets)
        return table

    async def aclose(self) -> None:
        """Close every adapter; the router is unusable afterwards."""
        await self._live.aclose()

    async def complete(self, request: CompletionRequest, call: CallContext) -> CompletionResult:
        """One whole completion; see :class:`~services.inference.engine.CompletionEngine`."""
        began = self._clock.monotonic()
        scope = self._scope(request)
        with self._live.use() as table:

            async def attempt(candidate: Candidate) -> CompletionResult:
                adapter_request = limits.capped(request, candidate.target.version)
                return await candidate.target.adapter.complete(adapter_request)

            job = self._job(call, request.model, request.options, scope)
            placed = await self._executor.run(table, job, attempt)
        result = placed.value
        ended = self._clock.monotonic()
        self._stats.observe(placed.candidate.target.key, ended - placed.started)
        if not result.HasField("usage") or _empty(result.usage):
            text = "".join(p.text for p in result.message.content if p.HasField("text"))
            result.usage.CopyFrom(scope.usage(placed.candidate, text))
        self._finish(
            result=result, request=request, call=call, placed=placed, began=began, ended=ended
        )
        return result

    async def stream(
        self, request: CompletionRequest, call: CallContext
    ) -> AsyncIterator[StreamEvent]:
        """Chunks, then exactly one result (see ``CompletionEngine.stream``)."""
        began = self._clock.monotonic()
        scope = self._scope(request, streaming=True)
        with self._live.use() as table:
            job = dataclasses.replace(
                self._job(call, request.model, request.options, scope), success_on_return=False
            )

            async def attempt(candidate: Candidate) -> StreamOutcome:
                adapter_request = limits.capped(request, candidate.target.version)
                return await StreamOutcome.open(candidate.target.adapter.stream(adapter_request))

            placed = await self._executor.run(table, job, attempt)
            key = placed.candidate.target.key
            first_at = self._clock.monotonic()
            self._stats.begin(key)
            try:
                relayed = relay(placed.value, job.deadline, self._clock)
                async with aclosing(relayed) as events:
                    async for event in events:
                        if isinstance(event, CompletionResult):
                            await self._end_stream(
                                result=event,
                                scope=scope,
                                call=call,
                                placed=placed,
                                began=began,
                                first_at=first_at,
                            )
                        yield event
            finally:
                self._stats.end(key)

    async def _end_stream(
        self,
        *,
        result: CompletionResult,
        scope: _Scope,
        call: CallContext,
        placed: Placed[StreamOutcome],
        began: float,
        first_at: float,
    ) -> None:
        """Complete a stream's final result: usage (counted when failed), timings, cost."""
        ended = self._clock.monotonic()
        outcome = placed.value
        if result.HasField("error"):
            result.finish_reason = failed_finish_reason(result.error)
            result.usage.CopyFrom(scope.usage(placed.candidate, outcome.text()))
            if outcome.failure is not None:
                await self._executor.report_failure(placed.candidate, outcome.failure)
        else:
            await self._executor.report_success(placed.candidate)
            key = placed.candidate.target.key
            self._stats.observe(key, ended - placed.started, first_at - placed.started)
            if not result.HasField("usage") or _empty(result.usage):
                result.usage.CopyFrom(scope.usage(placed.candidate, outcome.text()))
        if outcome.chunks:
            result.time_to_first_token.FromNanoseconds(round((first_at - began) * 1e9))
        assert scope.request is not None
        self._finish(
            result=result, request=scope.request, call=call, placed=placed, began=began, ended=ended
        )

    async def embed(
        self, request: inference_pb2.EmbedRequest, call: CallContext
    ) -> inference_pb2.EmbedResponse:
        """Embeddings with usage, cost and ``served_by``."""
        scope = self._scope(None)
        with self._live.use() as table:

            async def attempt(candidate: Candidate) -> inference_pb2.EmbedResponse:
                return await candidate.target.adapter.embed(request)

            job = self._job(call, request.model, request.options, scope)
            placed = await self._executor.run(table, job, attempt)
        response = placed.value
        version = placed.candidate.target.version
        if not response.HasField("usage") or _empty(response.usage):
            tokens = sum(self._counter.count_text(version, text).tokens for text in request.inputs)
            response.usage.CopyFrom(
                common_pb2.Usage(
                    input_tokens=tokens,
                    total_tokens=tokens,
                    source=common_pb2.USAGE_SOURCE_ESTIMATED,
                )
            )
        response.request_id = request.request_id or call.request_id
        response.cost.CopyFrom(cost_of(response.usage, version.pricing))
        response.served_by.CopyFrom(_served_by(placed.attempt))
        return response

    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest
    ) -> inference_pb2.CountTokensResponse:
        """Input tokens with the tokenizer of the name's first deployment."""
        route = self._live.table.route(request.model)
        if route.candidates:
            count = self._counter.count_input(
                route.candidates[0].target.version, request.messages, request.tools
            )
        else:
            count = self._counter.count_input(
                models_pb2.ModelVersion(), request.messages, request.tools
            )
        return inference_pb2.CountTokensResponse(
            input_tokens=count.tokens, estimated=count.estimated
        )

    def resolution_of(self, model: str) -> str:
        """The version keys ``model`` resolves to in the live table ("" if unknown)."""
        route = self._live.table.find(model)
        if route is None:
            return ""
        return ",".join(sorted({candidate.target.key for candidate in route.candidates}))

    def list_models(self) -> list[inference_pb2.ModelInfo]:
        """Every name with at least one servable deployment, sorted by name.

        Limits are the strictest and capabilities those common to all deployments;
        prices are those of the first deployment.
        """
        infos: list[inference_pb2.ModelInfo] = []
        for route in self._live.table.listed_routes():
            if route.candidates:
                infos.append(_model_info(route))
        return infos

    def _scope(self, request: CompletionRequest | None, *, streaming: bool = False) -> _Scope:
        return _Scope(
            request, self._counter, self._options, self._stats, self._rng, streaming=streaming
        )

    def _job(
        self, call: CallContext, model: str, options: inference_pb2.RequestOptions, scope: _Scope
    ) -> Job:
        """The job of a call for ``model``; each attempt is noted in ``call.placement``."""

        def note(attempt: Attempt) -> None:
            pricing = attempt.candidate.target.version.pricing
            call.placement.place(Placement(_served_by(attempt), pricing))

        return Job(
            ref=model,
            admit=scope.admit,
            demand=scope.demand,
            deadline=_deadline(call, options, self._clock.monotonic()),
            extra_fallbacks=tuple(options.fallback_models),
            disable_fallbacks=options.disable_fallbacks,
            on_attempt=note,
        )

    def _finish(
        self,
        *,
        result: CompletionResult,
        request: CompletionRequest,
        call: CallContext,
        placed: Placed[Any],
        began: float,
        ended: float,
    ) -> None:
        result.request_id = request.request_id or call.request_id
        result.cost.CopyFrom(cost_of(result.usage, placed.candidate.target.version.pricing))
        result.served_by.CopyFrom(_served_by(placed.attempt))
        result.latency.FromNanoseconds(round((ended - began) * 1e9))


class _Scope:
    """Per-request token counting: each tokenizer counts the input at most once."""

    def __init__(
        self,
        request: CompletionRequest | None,
        counter: TokenCounter,
        options: RoutingOptions,
        load: LoadView,
        rng: random.Random,
        *,
        streaming: bool = False,
    ) -> None:
        self.request = request
        self._counter = counter
        self._options = options
        self._load = load
        self._rng = rng
        self._streaming = streaming
        self._counts: dict[int, TokenCount] = {}

    def input(self, version: models_pb2.ModelVersion) -> TokenCount:
        """Input tokens of the request as ``version`` counts them."""
        if self.request is None:
            return TokenCount(0, True)
        tokenizer = self._counter.tokenizer_for(version)
        found = self._counts.get(id(tokenizer))
        if found is None:
            found = self._counter.count_input(version, self.request.messages, self.request.tools)
            self._counts[id(tokenizer)] = found
        return found

    def admit(self, candidate: Candidate) -> tuple[FieldViolation, ...]:
        """The token limits of ``candidate`` the request breaks (none for embeddings)."""
        if self.request is None:
            return ()
        version = candidate.target.version
        if not (version.context_window or version.max_output_tokens or candidate.max_input_tokens):
            return ()
        return limits.violations(
            version,
            candidate.max_input_tokens,
            self.input(version).tokens,
            limits.requested_output(self.request),
            f"deployment {candidate.deployment_id!r}",
        )

    def demand(self, route: Route) -> Demand:
        """What the route's strategy needs to know."""
        version = route.candidates[0].target.version
        requested = limits.requested_output(self.request) if self.request is not None else None
        if requested is None:
            requested = self._options.cost_output_tokens_estimate
        return Demand(
            load=self._load,
            rng=self._rng,
            input_tokens=self.input(version).tokens,
            output_tokens=requested,
            streaming=self._streaming,
        )

    def usage(self, candidate: Candidate, output_text: str) -> common_pb2.Usage:
        """Counted usage for a result the provider gave no usage for."""
        version = candidate.target.version
        input_tokens = self.input(version).tokens
        output_tokens = self._counter.count_text(version, output_text).tokens if output_text else 0
        return common_pb2.Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            source=common_pb2.USAGE_SOURCE_ESTIMATED,
        )


def _build(
    snapshot: models_pb2.RegistrySnapshot, pool: AdapterPool, counter: TokenCounter
) -> RoutingTable:
    table = build_table(snapshot, pool)
    for problem in table.problems:
        _log.warning("routing table: %s", problem)
    for target in table.targets.values():
        counter.prepare(target.version)
    return table


def _deadline(call: CallContext, options: inference_pb2.RequestOptions, now: float) -> float | None:
    deadline = call.deadline
    if options.HasField("timeout"):
        budget = now + options.timeout.ToNanoseconds() / 1e9
        deadline = budget if deadline is None else min(deadline, budget)
    return deadline


def _empty(usage: common_pb2.Usage) -> bool:
    return usage.input_tokens == 0 and usage.output_tokens == 0


def _served_by(attempt: Attempt) -> common_pb2.ServingInfo:
    version = attempt.candidate.target.version
    return common_pb2.ServingInfo(
        provider=version.provider,
        deployment_id=attempt.candidate.deployment_id,
        model=version.model,
        model_version=version.version,
        provider_model_id=version.provider_model_id,
        attempt_count=attempt.number,
        fallback_from=attempt.fallback_from,
    )


def _model_info(route: Route) -> inference_pb2.ModelInfo:
    versions = [c.target.version for c in route.candidates]
    capabilities: set[int] = set(versions[0].capabilities)
    for version in versions[1:]:
        capabilities &= set(version.capabilities)
    return inference_pb2.ModelInfo(
        name=route.name,
        display_name=route.display_name,
        capabilities=cast(Iterable[Any], sorted(capabilities)),
        context_window=_smallest(v.context_window for v in versions),
        max_output_tokens=_smallest(v.max_output_tokens for v in versions),
        pricing=versions[0].pricing,
    )


def _smallest(values: Iterable[int]) -> int:
    known = [v for v in values if v > 0]
    return min(known) if known else 0
