"""Retries, backoff, fallbacks, context-window fallback, deadlines, cooldown and streams."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, cast

import pytest

from llmgw.common.v1 import common_pb2
from provider_adapters.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderRateLimited,
    ProviderServerError,
)
from services.inference.engine import CallContext, CompletionChunk, CompletionResult, StreamEvent
from services.inference.routing import Router, RoutingOptions
from services.kernel.errors import DeadlineExceeded, Unavailable
from tests.unit.inference.routing_support import (
    FAST_RETRIES,
    RecordingClock,
    ScriptedAdapter,
    adapters,
    request,
    snapshot,
    trip_cooldown,
    version,
)


async def _router(
    options: RoutingOptions = FAST_RETRIES, clock: RecordingClock | None = None, **sections: Any
) -> Router:
    return await Router.create(
        snapshot(**sections),
        options,
        adapters=adapters(),
        clock=clock or RecordingClock(),
        rng=random.Random(11),
    )


def _adapter(router: Router, key: str) -> ScriptedAdapter:
    return cast(ScriptedAdapter, router.table.targets[key].adapter)


async def _events(router: Router, model: str, **kwargs: Any) -> list[StreamEvent]:
    stream = router.stream(request(model, **kwargs), CallContext("s"))
    return [event async for event in stream]


async def test_retries_wait_at_least_retry_after() -> None:
    clock = RecordingClock()
    router = await _router(
        clock=clock,
        versions=[
            version("bot", options={"fail_first": "2", "status": "429", "retry_after": "1.5"})
        ],
    )
    try:
        result = await router.complete(request("bot"), CallContext("r"))
        assert clock.sleeps == [1.5, 1.5]
        assert result.served_by.attempt_count == 3
        assert len(_adapter(router, "bot/versions/1").calls) == 3
    finally:
        await router.aclose()


async def test_backoff_is_full_jitter_exponential_and_retries_are_bounded() -> None:
    clock = RecordingClock()
    options = RoutingOptions(
        max_retries=3, backoff_base_seconds=1.0, backoff_max_seconds=3.0, cooldown_failures=100
    )
    router = await _router(options, clock, versions=[version("bot", options={"fail_first": "-1"})])
    try:
        with pytest.raises(ProviderServerError):
            await router.complete(request("bot"), CallContext("r"))
        assert len(_adapter(router, "bot/versions/1").calls) == 4
        assert len(clock.sleeps) == 3
        for retry, slept in enumerate(clock.sleeps):
            assert 0.0 <= slept <= min(3.0, 1.0 * 2**retry)
    finally:
        await router.aclose()


async def test_errors_that_forbid_fallback_are_raised_at_once() -> None:
    router = await _router(
        versions=[version("bot", options={"fail_first": "-1", "status": "400"}), version("other")],
        models=[{"name": "bot", "context_window_fallbacks": ["other"]}],
        groups=[
            {"name": "g", "deployments": [{"id": "a", "model_ref": "bot"}], "fallbacks": ["other"]}
        ],
    )
    try:
        with pytest.raises(ProviderBadRequest):
            await router.complete(request("g"), CallContext("r"))
        assert len(_adapter(router, "bot/versions/1").calls) == 1
        assert _adapter(router, "other/versions/1").calls == []
    finally:
        await router.aclose()


async def test_fallback_order_deployments_then_group_fallbacks_then_request_fallbacks() -> None:
    router = await _router(
        RoutingOptions(max_retries=0, cooldown_failures=100),
        versions=[
            version("a", options={"fail_first": "-1", "status": "503"}),
            version("b", options={"fail_first": "-1", "status": "401"}),
            version("c", options={"fail_first": "-1", "status": "500"}),
            version("d", options={"fail_first": "-1", "status": "529"}),
            version("e"),
        ],
        groups=[
            {
                "name": "g",
                "deployments": [
                    {"id": "first", "model_ref": "a", "priority": 0},
                    {"id": "second", "model_ref": "b", "priority": 1},
                ],
                "fallbacks": ["c", "d"],
            }
        ],
    )
    try:
        req = request("g")
        req.options.fallback_models.append("e")
        result = await router.complete(req, CallContext("r"))
        assert (result.served_by.model, result.served_by.attempt_count) == ("e", 5)
        assert result.served_by.fallback_from == "g"
        calls = sorted((_adapter(router, f"{name}/versions/1").calls[0], name) for name in "abcde")
        assert [name for _, name in calls] == ["a", "b", "c", "d", "e"]

        # Without fallbacks only the group's own deployments are tried; the last
        # error is raised.
        req.options.disable_fallbacks = True
        with pytest.raises(ProviderAuthFailed):
            await router.complete(req, CallContext("r2"))
        assert len(_adapter(router, "c/versions/1").calls) == 1
    finally:
        await router.aclose()


async def test_retries_rotate_over_deployments_before_waiting() -> None:
    clock = RecordingClock()
    router = await _router(
        RoutingOptions(max_retries=1, backoff_base_seconds=0.5, cooldown_failures=100),
        clock,
        versions=[
            version("a", options={"fail_first": "1"}),
            version("b", options={"fail_first": "1"}),
        ],
        groups=[
            {
                "name": "g",
                "deployments": [
                    {"id": "x", "model_ref": "a", "priority": 0},
                    {"id": "y", "model_ref": "b", "priority": 1},
                ],
            }
        ],
    )
    try:
        result = await router.complete(request("g"), CallContext("r"))
        # a fails, b fails at once (no wait), then a is retried after one backoff.
        assert (result.served_by.deployment_id, result.served_by.attempt_count) == ("x", 3)
        assert len(clock.sleeps) == 1
    finally:
        await router.aclose()


async def test_context_window_fallback_by_count_and_by_provider_error() -> None:
    router = await _router(
        versions=[
            version("small", context_window=40),
            version("big", context_window=100_000),
            version(
                "liar",
                context_window=100_000,
                options={"fail_first": "-1", "status": "400", "context_window_error": "1"},
            ),
        ],
        models=[
            {"name": "small", "context_window_fallbacks": ["big"]},
            {"name": "liar", "context_window_fallbacks": ["small", "big"]},
        ],
    )
    try:
        long_text = "x" * 400
        result = await router.complete(request("small", long_text), CallContext("r1"))
        assert (result.served_by.model, result.served_by.fallback_from) == ("big", "small")
        assert _adapter(router, "small/versions/1").calls == []
        short = await router.complete(request("small", "hi"), CallContext("r2"))
        assert (short.served_by.model, short.served_by.fallback_from) == ("small", "")
        # The provider says the prompt is too long: try the larger windows.
        told = await router.complete(request("liar", long_text), CallContext("r3"))
        assert (told.served_by.model, told.served_by.attempt_count) == ("big", 2)
    finally:
        await router.aclose()


async def test_deadline_is_never_slept_past() -> None:
    clock = RecordingClock()
    router = await _router(
        RoutingOptions(max_retries=5, cooldown_failures=100),
        clock,
        versions=[
            version("bot", options={"fail_first": "-1", "status": "429", "retry_after": "1"})
        ],
    )
    try:
        with pytest.raises(DeadlineExceeded):
            await router.complete(request("bot"), CallContext("r", deadline=clock.now + 2.5))
        assert clock.sleeps == [1.0, 1.0]
        assert clock.now < 1000 + 2.5
        clock.sleeps.clear()
        with pytest.raises(DeadlineExceeded):
            await router.complete(request("bot"), CallContext("r2", deadline=clock.now + 0.5))
        assert clock.sleeps == []
    finally:
        await router.aclose()


async def test_deadline_cuts_a_slow_attempt() -> None:
    router = await Router.create(
        snapshot(versions=[version("slow", provider="simulated", options={"ttft_ms": "5000"})]),
        RoutingOptions(),
        adapters=adapters(),
    )
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await router.complete(request("slow"), CallContext("r", deadline=started + 0.05))
        assert time.monotonic() - started < 1.0
        req = request("slow")
        req.options.timeout.FromMilliseconds(50)
        with pytest.raises(DeadlineExceeded):
            await router.complete(req, CallContext("r2"))
    finally:
        await router.aclose()


async def test_cooldown_after_consecutive_failures_in_process() -> None:
    clock = RecordingClock()
    options = RoutingOptions(max_retries=0, cooldown_failures=2, cooldown_seconds=30)
    router = await _router(options, clock, versions=[version("bot", options={"fail_first": "2"})])
    try:
        refused = await trip_cooldown(router, "bot", failures=2)
        assert refused.retry_after_seconds == 30
        assert len(_adapter(router, "bot/versions/1").calls) == 2
        clock.now += 31
        result = await router.complete(request("bot"), CallContext("r"))
        assert result.served_by.attempt_count == 1
    finally:
        await router.aclose()


async def test_stream_failing_before_first_chunk_falls_back() -> None:
    router = await _router(
        versions=[version("a", options={"fail_first": "-1", "status": "503"}), version("b")],
        groups=[{"name": "g", "deployments": [{"id": "a", "model_ref": "a"}], "fallbacks": ["b"]}],
    )
    try:
        events = await _events(router, "g")
        chunks = [e for e in events if isinstance(e, CompletionChunk)]
        assert len(chunks) == 5
        final = events[-1]
        assert isinstance(final, CompletionResult)
        assert not final.HasField("error")
        assert (final.served_by.model, final.served_by.attempt_count) == ("b", 4)  # 1 + 2 retries
        assert final.cost.total_nanos > 0
    finally:
        await router.aclose()


async def test_stream_failing_after_first_chunk_ends_with_an_error_result() -> None:
    router = await _router(
        versions=[version("a", options={"fail_after_chunks": "3", "status": "502"}), version("b")],
        groups=[{"name": "g", "deployments": [{"id": "a", "model_ref": "a"}], "fallbacks": ["b"]}],
    )
    try:
        events = await _events(router, "g")
        assert [type(e).__name__ for e in events] == ["CompletionChunk"] * 3 + ["CompletionResult"]
        final = events[-1]
        assert isinstance(final, CompletionResult)
        assert final.error.code == 14  # UNAVAILABLE
        assert final.finish_reason == common_pb2.FINISH_REASON_ERROR
        # "abcdefgh" + "word " * 2 = 18 characters, estimated at 5 tokens.
        assert final.usage.output_tokens == 5
        assert final.usage.input_tokens > 0
        assert final.served_by.deployment_id == "a"
        assert final.cost.output_nanos == 3000  # 5 tokens at 0.60 USD per million
        assert _adapter(router, "b/versions/1").calls == []
    finally:
        await router.aclose()


async def test_stream_past_the_deadline_ends_with_a_cancelled_result() -> None:
    router = await Router.create(
        snapshot(
            versions=[version("slow", provider="simulated", options={"tokens_per_second": "20"})]
        ),
        RoutingOptions(),
        adapters=adapters(),
    )
    try:
        stream = router.stream(request("slow"), CallContext("s", deadline=time.monotonic() + 0.12))
        events = [event async for event in stream]
        final = events[-1]
        assert isinstance(final, CompletionResult)
        assert final.error.code == 4  # DEADLINE_EXCEEDED
        assert final.finish_reason == common_pb2.FINISH_REASON_CANCELLED
        assert 1 <= len(events) - 1 < 16
        assert final.usage.output_tokens > 0
    finally:
        await router.aclose()


async def test_table_swap_keeps_running_streams_and_closes_old_adapters() -> None:
    first = snapshot(versions=[version("bot", options={"chunks": "3"})])
    router = await Router.create(first, FAST_RETRIES, adapters=adapters())
    try:
        old = _adapter(router, "bot/versions/1")
        stream = router.stream(request("bot"), CallContext("s"))
        first_event = await anext(stream)
        assert isinstance(first_event, CompletionChunk)

        router.replace_table(snapshot(versions=[version("bot", "2", options={"chunks": "4"})]))
        rest = [event async for event in stream]
        final = rest[-1]
        assert isinstance(final, CompletionResult) and not final.HasField("error")
        assert final.served_by.model_version == "1"
        await asyncio.sleep(0)
        assert old.closed

        fresh = await router.complete(request("bot"), CallContext("r"))
        assert fresh.served_by.model_version == "2"
    finally:
        await router.aclose()


async def test_unchanged_versions_keep_their_adapter_across_swaps() -> None:
    table = snapshot(versions=[version("bot")])
    router = await Router.create(table, FAST_RETRIES, adapters=adapters())
    try:
        before = _adapter(router, "bot/versions/1")
        router.replace_table(snapshot(versions=[version("bot"), version("new")]))
        await asyncio.sleep(0)
        assert _adapter(router, "bot/versions/1") is before
        assert not before.closed
    finally:
        await router.aclose()
    assert before.closed


async def test_rate_limited_errors_keep_their_retry_after() -> None:
    clock = RecordingClock()
    router = await _router(
        RoutingOptions(max_retries=0, cooldown_failures=100),
        clock,
        versions=[
            version("bot", options={"fail_first": "-1", "status": "429", "retry_after": "7"})
        ],
    )
    try:
        with pytest.raises(ProviderRateLimited) as raised:
            await router.complete(request("bot"), CallContext("r"))
        assert raised.value.retry_after_seconds == 7
    finally:
        await router.aclose()


async def test_closing_a_stream_early_closes_upstream_and_frees_the_slot() -> None:
    router = await _router(versions=[version("bot", options={"chunks": "10"})])
    try:
        stream = router.stream(request("bot"), CallContext("s"))
        assert isinstance(await anext(stream), CompletionChunk)
        stats = router.load
        assert stats.in_flight("bot/versions/1") == 1
        await stream.aclose()  # type: ignore[attr-defined]
        assert stats.in_flight("bot/versions/1") == 0
    finally:
        await router.aclose()


async def test_mid_stream_failures_count_towards_cooldown() -> None:
    options = RoutingOptions(cooldown_failures=2, cooldown_seconds=30)
    router = await _router(options, versions=[version("bot", options={"fail_after_chunks": "1"})])
    try:
        for _ in range(2):
            final = (await _events(router, "bot"))[-1]
            assert isinstance(final, CompletionResult) and final.HasField("error")
        with pytest.raises(Unavailable):
            await _events(router, "bot")
    finally:
        await router.aclose()


async def test_names_without_a_servable_deployment_are_unavailable() -> None:
    router = await _router(versions=[version("bot", provider="missing-provider")])
    try:
        with pytest.raises(Unavailable) as raised:
            await router.complete(request("bot"), CallContext("r"))
        assert raised.value.reason == "NO_SERVABLE_DEPLOYMENT"
        assert router.list_models() == []
    finally:
        await router.aclose()
