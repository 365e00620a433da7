"""Every call shape through the gateway to two replicas, as raw bytes, both ways intact."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from gateway.settings import RouteMatch, RouteSettings
from services.kernel.errors import STATUS_DETAILS_KEY
from tests.unit.gateway.conftest import (
    StartGateway,
    StartReplicas,
    cluster,
    eventually,
    gateway_settings,
)
from tests.unit.gateway.raw_upstream import INFERENCE


async def test_unary_calls_alternate_between_replicas_with_metadata_both_ways(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(cluster(r.address for r in replicas))
    replies = []
    for index in range(4):
        call = running.unary()(
            f"hello{index}".encode(),
            metadata=(
                ("x-client", "tests"),
                ("x-blob-bin", b"\x00\x01"),
                ("llmgw-api-key-id", "forged"),
            ),
        )
        replies.append(await call)
        assert (await call.initial_metadata())["x-replica"] in ("a", "b")
        trailers = await call.trailing_metadata()
        assert trailers["llmgw-usage-input-tokens"] == str(len(f"hello{index}"))
    assert sorted(reply.split(b":")[0] for reply in replies) == [b"a", b"a", b"b", b"b"]
    assert replies[0].endswith(b"hello0")
    for replica in replicas:
        seen = replica.seen[0].metadata
        assert seen["x-client"] == "tests"
        assert seen["x-blob-bin"] == b"\x00\x01"
        assert "llmgw-api-key-id" not in seen  # only the gateway may set llmgw- keys
        assert seen["x-request-id"]


async def test_server_stream_relays_every_message_and_trailers(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(cluster(r.address for r in replicas))
    call = running.server_stream()(b"5")
    messages = [message async for message in call]
    name = messages[0].split(b":")[0]
    assert messages == [f"{name.decode()}:{i}".encode() for i in range(5)]
    assert (await call.trailing_metadata())["llmgw-usage-output-tokens"] == "5"
    assert await call.code() is grpc.StatusCode.OK


async def test_bidi_stream_relays_in_both_directions_interleaved(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(cluster(r.address for r in replicas))
    call = running.bidi()()
    replies = []
    for word in (b"one", b"two", b"three"):
        await call.write(word)
        replies.append(await call.read())
    await call.done_writing()
    assert await call.read() is aio.EOF
    assert [reply.split(b":", 1)[1] for reply in replies if isinstance(reply, bytes)] == [
        b"one",
        b"two",
        b"three",
    ]
    assert await call.code() is grpc.StatusCode.OK


async def test_client_stream_relays_every_message(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(2)
    running = await start_gateway(cluster(r.address for r in replicas))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    reply = await running.client_stream()(chunks())
    assert reply.split(b":")[1:] == [b"10", b"10000"]
    line = running.log_lines()[-1]
    assert line["request_messages"] == 10 and line["request_bytes"] == 10000


async def test_error_status_details_and_trailers_reach_the_caller(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"x", metadata=(("x-test-fail", "invalid"),))
    error = caught.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "prompt too long"
    raw = dict(error.trailing_metadata())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(raw)
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert bad_request.field_violations[0].field == "completion.messages"


async def test_unknown_method_of_a_known_service_is_unimplemented(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary("NoSuchMethod")(b"x")
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert replicas[0].seen == []


async def test_the_callers_deadline_reaches_the_upstream(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    await running.unary()(b"x", timeout=3.0)
    remaining = replicas[0].seen[-1].time_remaining
    # The caller's 3 s, not the route's 300 s default. grpc-timeout is rounded up on
    # each of the two hops, so the upstream may see a little more than 3 s.
    assert remaining is not None and 2.0 < remaining < 3.5
    started = time.perf_counter()
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"x", timeout=0.3, metadata=(("x-test-sleep", "5"),))
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < 2
    await eventually(lambda: replicas[0].cancelled == 1)


async def test_route_timeout_bounds_calls_without_a_deadline(
    start_gateway: StartGateway, start_replicas: StartReplicas, tmp_path: Path
) -> None:
    replicas = await start_replicas(1)
    route = RouteSettings(
        match=RouteMatch(service=INFERENCE), cluster="upstream", timeout_seconds=0.3
    )
    settings = gateway_settings(
        cluster(r.address for r in replicas), tmp_path / "access.log", routes=(route,)
    )
    running = await start_gateway(settings)
    with pytest.raises(aio.AioRpcError) as caught:
        await running.unary()(b"x", metadata=(("x-test-sleep", "5"),))
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: replicas[0].cancelled == 1)


@pytest.mark.parametrize("shape", ["unary", "server_stream", "bidi"])
async def test_cancelling_the_call_cancels_the_upstream_call(
    start_gateway: StartGateway, start_replicas: StartReplicas, shape: str
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(cluster(r.address for r in replicas))
    metadata = (("x-test-sleep", "5"),)
    if shape == "unary":
        call: aio.Call = running.unary()(b"x", metadata=metadata)
    elif shape == "server_stream":
        call = running.server_stream()(b"3", metadata=metadata)
    else:
        bidi = running.bidi()(metadata=metadata)
        await bidi.write(b"x")
        call = bidi
    await eventually(lambda: replicas[0].in_progress == 1)
    call.cancel()
    await eventually(lambda: replicas[0].cancelled == 1)
    await eventually(lambda: any(line["code"] == "CANCELLED" for line in running.log_lines()))


async def test_upstream_cancellation_reaches_the_caller(
    start_gateway: StartGateway, start_replicas: StartReplicas
) -> None:
    replicas = await start_replicas(1)
    running = await start_gateway(
        cluster([r.address for r in replicas], health_check={"enabled": False})
    )
    call = running.bidi()(metadata=(("x-test-sleep", "5"),))
    await call.write(b"x")
    await eventually(lambda: replicas[0].in_progress == 1)
    assert replicas[0].server is not None
    await replicas[0].server.drain(grace_seconds=0)  # cancels the replica's calls
    with pytest.raises(aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
