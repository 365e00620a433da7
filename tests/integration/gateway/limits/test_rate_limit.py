"""The rate-limit filter against a real Redis, through real gateways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from grpc import aio

from llmgw.inference.v1 import inference_pb2
from tests.harness.redis_server import redis_server
from tests.integration.gateway.limits.helpers import (
    DEAD_REDIS,
    assert_refused,
    complete,
    metric,
    reason_of,
    request,
    retry_delay_seconds,
    start_limited,
)
from tests.unit.gateway.conftest import StartGateway, StartReplicas, eventually
from tests.unit.gateway.limits.callers import caller

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _config(redis_url: str, prefix: str, *rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"redis_url": redis_url, "namespace": f"{prefix}llmgw", "rules": list(rules), **extra}


async def test_three_gateways_allow_exactly_the_limit_under_concurrency(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    limit = 12
    config = _config(
        redis_url, redis_prefix, {"id": "p1-rpm", "project": "p1", "requests_per_minute": limit}
    )
    gateways = [
        await start_limited(start_gateway, replica, tmp_path, rate_limit=config) for _ in range(3)
    ]

    calls = [complete(gateways[i % 3], f"k{i % 4}", "p1") for i in range(45)]
    errors = await asyncio.gather(*calls)

    assert sum(error is None for error in errors) == limit
    refused = [error for error in errors if error is not None]
    for error in refused:
        assert_refused(error, RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")
        assert 0 < retry_delay_seconds(error) <= 60 / limit
    assert len(replica.seen) == limit
    assert (
        sum(
            metric(g, "llmgw_gateway_rate_limit_decisions_total", decision="allowed", reason="")
            for g in gateways
        )
        == limit
    )
    # another project is not limited by p1's rule
    assert await complete(gateways[0], "k9", "p2") is None


async def test_token_reservations_are_corrected_by_the_reported_usage(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    config = _config(
        redis_url, redis_prefix, {"id": "k-tpm", "key": "k1", "tokens_per_minute": 1000}
    )
    gateway = await start_limited(start_gateway, replica, tmp_path, rate_limit=config)
    body = request(max_output_tokens=450)  # reserves ~460; the upstream reports ~len(body) + 7

    held = [asyncio.create_task(complete(gateway, "k1", body=body, sleep=0.5)) for _ in range(2)]
    await eventually(lambda: replica.in_progress == 2)
    third = await complete(gateway, "k1", body=body)
    assert_refused(third, RESOURCE_EXHAUSTED, "RATE_LIMITED_TOKENS")
    assert reason_of(third) == "RATE_LIMITED_TOKENS"  # type: ignore[arg-type]
    assert [await task for task in held] == [None, None]

    # once the two report their real usage (~100 tokens), the minute has room again
    async def passes() -> bool:
        return await complete(gateway, "k1", body=body) is None

    for _ in range(100):
        if await passes():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the reservation was never corrected")


async def test_rules_restricted_to_models_count_only_those_models(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "big", "key": "k1", "models": ["big"], "requests_per_minute": 1}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, rate_limit=_config(redis_url, redis_prefix, rule)
    )

    assert await complete(gateway, "k1", body=request(model="big")) is None
    refused = await complete(gateway, "k1", body=request(model="big"))
    assert_refused(refused, RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")
    assert await complete(gateway, "k1", body=request(model="small")) is None


async def test_concurrent_calls_are_bounded_and_leases_are_freed(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "conc", "key": "k1", "max_concurrent_requests": 2}
    config = _config(redis_url, redis_prefix, rule)
    gateways = [
        await start_limited(start_gateway, replica, tmp_path, rate_limit=config) for _ in range(2)
    ]

    held = [asyncio.create_task(complete(gateways[i], "k1", sleep=0.5)) for i in range(2)]
    await eventually(lambda: replica.in_progress == 2)
    refused = await complete(gateways[0], "k1")
    assert_refused(refused, RESOURCE_EXHAUSTED, "RATE_LIMITED_CONCURRENCY")
    assert [await task for task in held] == [None, None]

    client = aioredis.Redis.from_url(redis_url)
    try:
        key = f"{redis_prefix}llmgw:ratelimit:{{k1}}:conc:concurrency"

        async def leases() -> int:
            return int(await client.zcard(key))

        for _ in range(100):
            if await leases() == 0:
                break
            await asyncio.sleep(0.02)
        assert await leases() == 0
    finally:
        await client.aclose()
    assert await complete(gateways[1], "k1") is None


async def test_fail_open_limits_locally_when_redis_is_unreachable(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 2}
    config = _config(DEAD_REDIS, "x:", rule, on_redis_error="fail_open")
    gateway = await start_limited(start_gateway, replica, tmp_path, rate_limit=config)

    assert await complete(gateway, "k1") is None
    assert await complete(gateway, "k1") is None
    assert_refused(await complete(gateway, "k1"), RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")
    assert metric(gateway, "llmgw_gateway_rate_limit_fail_open_total") == 3


async def test_fail_closed_refuses_with_unavailable_when_redis_is_unreachable(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 100}
    config = _config(DEAD_REDIS, "x:", rule, on_redis_error="fail_closed")
    gateway = await start_limited(start_gateway, replica, tmp_path, rate_limit=config)

    error = await complete(gateway, "k1")
    assert_refused(error, grpc.StatusCode.UNAVAILABLE, "RATE_LIMIT_UNAVAILABLE")
    assert error is not None and retry_delay_seconds(error) > 0
    assert replica.seen == []
    # a caller without rules needs no Redis at all
    assert await complete(gateway, "other") is None


async def test_a_redis_that_stops_mid_way_switches_to_the_configured_choice(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 100}
    with contextlib.ExitStack() as stack:
        own = stack.enter_context(redis_server(env={}))
        opened = _config(own.url, "t:", rule, on_redis_error="fail_open")
        closed = _config(own.url, "t:", rule, on_redis_error="fail_closed")
        fail_open = await start_limited(start_gateway, replica, tmp_path, rate_limit=opened)
        fail_closed = await start_limited(start_gateway, replica, tmp_path, rate_limit=closed)
        assert await complete(fail_open, "k1") is None
        assert await complete(fail_closed, "k1") is None
        assert metric(fail_open, "llmgw_gateway_rate_limit_redis_errors_total") == 0

    # the Redis is stopped now
    assert await complete(fail_open, "k1") is None
    error = await complete(fail_closed, "k1")
    assert_refused(error, grpc.StatusCode.UNAVAILABLE, "RATE_LIMIT_UNAVAILABLE")
    assert metric(fail_open, "llmgw_gateway_rate_limit_redis_errors_total") == 1
    assert metric(fail_open, "llmgw_gateway_rate_limit_fail_open_total") == 1


async def test_the_token_correction_has_landed_once_the_gateway_has_stopped(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "tpm", "key": "k1", "tokens_per_minute": 6000}  # 10 ms per token
    # corrections wait for the hourly write: only stopping the gateway can write this one
    config = _config(redis_url, redis_prefix, rule, correction_interval_seconds=3600)
    gateway = await start_limited(start_gateway, replica, tmp_path, rate_limit=config)
    body = request(max_output_tokens=450)
    used = len(body) + 7  # what the raw upstream reports

    assert await complete(gateway, "k1", body=body) is None
    await gateway.server.drain(grace_seconds=0)

    client = aioredis.Redis.from_url(redis_url)
    try:
        stored = await client.get(f"{redis_prefix}llmgw:ratelimit:{{k1}}:tpm:tokens")
        seconds, micros = await client.time()
    finally:
        await client.aclose()
    assert stored is not None
    ahead_ms = float(stored) - (seconds * 1000 + micros / 1000)
    assert ahead_ms <= used * 10  # the ~460-token reservation became the ~40 used


async def test_methods_without_a_model_are_limited_on_arrival(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 1}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, rate_limit=_config(redis_url, redis_prefix, rule)
    )

    async def upload() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"row"

        await gateway.client_stream()(chunks(), metadata=caller("k1"))

    await upload()
    with pytest.raises(aio.AioRpcError) as refused:
        await upload()
    assert_refused(refused.value, RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")


async def test_malformed_requests_are_limited_never_internal(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "tpm", "key": "k1", "requests_per_minute": 3, "tokens_per_minute": 100_000}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, rate_limit=_config(redis_url, redis_prefix, rule)
    )
    bodies = [b"", b"\xff", b"\x0a\xff\xff\xff\xff", b"\x0a\x02\x12\x00" * 50, b"\x08" * 10]

    errors = [await complete(gateway, "k1", body=body) for body in bodies]

    assert errors[:3] == [None, None, None]
    for error in errors[3:]:
        assert_refused(error, RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")


async def test_fail_open_grants_each_replica_its_share(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 6}
    config = _config(DEAD_REDIS, "x:", rule, local_share=0.5)
    gateway = await start_limited(start_gateway, replica, tmp_path, rate_limit=config)

    errors = [await complete(gateway, "k1") for _ in range(4)]

    assert errors[:3] == [None, None, None]
    assert_refused(errors[3], RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")


async def test_streaming_calls_are_limited_on_their_first_message(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 2}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, rate_limit=_config(redis_url, redis_prefix, rule)
    )
    stream_body = b"2"  # the raw upstream reads it as a message count; no model in it
    chat_body = inference_pb2.ChatRequest(
        start=inference_pb2.CompletionRequest(model="m", request_id="r1")
    ).SerializeToString()

    async def stream() -> list[bytes]:
        return [m async for m in gateway.server_stream()(stream_body, metadata=caller("k1"))]

    async def chat() -> list[bytes]:
        async def requests() -> AsyncIterator[bytes]:
            yield chat_body

        return [m async for m in gateway.bidi()(requests(), metadata=caller("k1"))]

    assert len(await stream()) == 2
    assert len(await chat()) == 1
    for refused_call in (stream, chat):
        with pytest.raises(aio.AioRpcError) as refused:
            await refused_call()
        assert_refused(refused.value, RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")


async def test_every_request_of_a_chat_stream_is_charged(
    start_gateway: StartGateway,
    start_replicas: StartReplicas,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    (replica,) = await start_replicas(1)
    rule = {"id": "rpm", "key": "k1", "requests_per_minute": 2}
    gateway = await start_limited(
        start_gateway, replica, tmp_path, rate_limit=_config(redis_url, redis_prefix, rule)
    )

    def start(request_id: str) -> bytes:
        return inference_pb2.ChatRequest(
            start=inference_pb2.CompletionRequest(model="m", request_id=request_id)
        ).SerializeToString()

    cancel = inference_pb2.ChatRequest(
        cancel=inference_pb2.ChatCancel(request_id="r1")
    ).SerializeToString()

    async def requests() -> AsyncIterator[bytes]:
        for message in (start("r1"), cancel, start("r2"), start("r3")):
            yield message
            await asyncio.sleep(0.05)

    received: list[bytes] = []
    with pytest.raises(aio.AioRpcError) as refused:
        async for message in gateway.bidi()(requests(), metadata=caller("k1")):
            received.append(message)
    assert_refused(refused.value, RESOURCE_EXHAUSTED, "RATE_LIMITED_REQUESTS")
    # two starts and the cancel (which names no model and is free) went through
    assert len(received) == 3
