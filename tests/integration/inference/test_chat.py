"""Chat: several requests on one bidirectional stream, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.inference.routing import Router
from tests.integration.inference.conftest import (
    BREAK_AFTER_CHUNKS,
    BROKEN_OUTPUT_TOKENS,
    OutcomeLog,
    Running,
    upstream,
)
from tests.integration.inference.helpers import completion, eventually

if TYPE_CHECKING:
    Stub = inference_pb2_grpc.InferenceServiceAsyncStub
ChatRequest = inference_pb2.ChatRequest
ChatCall = aio.StreamStreamCall[inference_pb2.ChatRequest, inference_pb2.ChatResponse]

CANCELLED = grpc.StatusCode.CANCELLED.value[0]
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def start(request_id: str, model: str = "sim", text: str = "hi") -> ChatRequest:
    return ChatRequest(start=completion(model, text, request_id=request_id))


def cancel(request_id: str) -> ChatRequest:
    return ChatRequest(cancel=inference_pb2.ChatCancel(request_id=request_id))


class Transcript:
    """Reads a Chat call and sorts what arrives by request id."""

    def __init__(self, call: ChatCall) -> None:
        self.call = call
        self.deltas: dict[str, list[inference_pb2.CompletionChunk]] = defaultdict(list)
        self.finals: dict[str, list[inference_pb2.CompletionResult]] = defaultdict(list)
        self.order: list[tuple[str, str]] = []

    async def read_one(self) -> inference_pb2.ChatResponse:
        response = await self._read()
        assert response is not None
        return response

    async def read_until_final(self, request_id: str) -> inference_pb2.CompletionResult:
        while not self.finals.get(request_id):
            await self.read_one()
        return self.finals[request_id][0]

    async def read_to_end(self) -> None:
        while await self._read() is not None:
            pass

    async def _read(self) -> inference_pb2.ChatResponse | None:
        """The next response, sorted in; None at the end of the call."""
        response = await self.call.read()
        if response is aio.EOF:
            return None
        assert isinstance(response, inference_pb2.ChatResponse)
        kind = response.WhichOneof("event") or ""
        self.order.append((response.request_id, kind))
        if kind == "delta":
            self.deltas[response.request_id].append(response.delta)
        else:
            self.finals[response.request_id].append(response.final)
        return response


async def test_two_concurrent_requests_one_cancelled_mid_stream(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    call = stub.Chat()
    chat = Transcript(call)
    await call.write(start("slow", "sim-slow"))
    await call.write(start("fast", "sim-slow", "a different prompt"))
    while len(chat.deltas["slow"]) < 2:
        await chat.read_one()
    await call.write(cancel("slow"))
    cancelled = await chat.read_until_final("slow")
    assert cancelled.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    assert cancelled.error.code == CANCELLED
    assert cancelled.usage.output_tokens > 0 and cancelled.cost.total_nanos > 0
    await eventually(lambda: "slow" in upstream(router, "sim-slow").cancelled)

    completed = await chat.read_until_final("fast")
    assert completed.finish_reason == common_pb2.FINISH_REASON_STOP
    assert len(chat.deltas["fast"]) == 40
    await call.done_writing()
    await chat.read_to_end()
    assert await call.code() == grpc.StatusCode.OK
    assert {rid: len(f) for rid, f in chat.finals.items()} == {"slow": 1, "fast": 1}
    # Nothing of a request follows its final.
    for rid in ("slow", "fast"):
        events = [kind for r, kind in chat.order if r == rid]
        assert events[-1] == "final" and events.count("final") == 1

    by_request = outcomes.by_request()
    assert by_request["slow"][0].status == grpc.StatusCode.CANCELLED
    assert by_request["fast"][0].status == grpc.StatusCode.OK
    assert by_request["fast"][0].request.operation == events_pb2.INFERENCE_OPERATION_CHAT


async def test_an_error_travels_in_the_stream_and_the_stream_lives_on(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    call = stub.Chat()
    chat = Transcript(call)
    await call.write(start("down", "sim-down"))
    failed = await chat.read_until_final("down")
    assert failed.finish_reason == common_pb2.FINISH_REASON_ERROR
    assert failed.error.code == grpc.StatusCode.UNAVAILABLE.value[0]

    await call.write(start("broken", "sim-breaks"))
    broken = await chat.read_until_final("broken")
    assert len(chat.deltas["broken"]) == BREAK_AFTER_CHUNKS
    assert broken.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert broken.usage.output_tokens == BROKEN_OUTPUT_TOKENS

    await call.write(start("after"))
    after = await chat.read_until_final("after")
    assert after.finish_reason == common_pb2.FINISH_REASON_STOP
    await call.done_writing()
    await chat.read_to_end()
    assert await call.code() == grpc.StatusCode.OK
    assert len(outcomes.outcomes) == 3


async def test_protocol_mistakes_get_an_invalid_argument_final(
    stub: Stub, outcomes: OutcomeLog
) -> None:
    call = stub.Chat()
    chat = Transcript(call)
    await call.write(start("", "sim"))
    missing = await chat.read_until_final("")
    assert missing.error.code == INVALID
    chat.finals.clear()

    await call.write(ChatRequest())
    empty = await chat.read_until_final("")
    assert empty.error.code == INVALID

    await call.write(start("twice", "sim-slow"))
    await call.write(start("twice", "sim"))
    duplicate = await chat.read_until_final("twice")
    assert duplicate.error.code == INVALID
    assert duplicate.finish_reason == common_pb2.FINISH_REASON_ERROR
    await call.write(cancel("unknown-id"))  # ignored
    await call.write(cancel("twice"))
    await eventually(lambda: len(outcomes.outcomes) == 1)
    await call.done_writing()
    await chat.read_to_end()
    assert [f.finish_reason for f in chat.finals["twice"]] == [
        common_pb2.FINISH_REASON_ERROR,
        common_pb2.FINISH_REASON_CANCELLED,
    ]
    assert await call.code() == grpc.StatusCode.OK
    # One event per request id: the duplicate's rejection adds none to the one of "twice".
    by_request = outcomes.by_request()
    assert {rid: [o.status for o in found] for rid, found in by_request.items()} == {
        "twice": [grpc.StatusCode.CANCELLED]
    }


async def test_half_close_lets_in_flight_requests_finish(stub: Stub) -> None:
    call = stub.Chat()
    chat = Transcript(call)
    for n in range(3):
        await call.write(start(f"r{n}", "sim-slow" if n == 0 else "sim", f"prompt {n}"))
    await call.done_writing()
    await chat.read_to_end()
    assert await call.code() == grpc.StatusCode.OK
    assert sorted(chat.finals) == ["r0", "r1", "r2"]
    assert all(len(finals) == 1 for finals in chat.finals.values())
    assert len(chat.deltas["r0"]) == 40
    assert all(f[0].finish_reason == common_pb2.FINISH_REASON_STOP for f in chat.finals.values())


async def test_cancelling_the_call_cancels_every_upstream_request(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    call = stub.Chat()
    chat = Transcript(call)
    await call.write(start("a", "sim-slow"))
    await call.write(start("b", "sim-slow", "other"))
    while not (chat.deltas["a"] and chat.deltas["b"]):
        await chat.read_one()
    call.cancel()
    await eventually(lambda: {"a", "b"} <= upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 2)
    assert {o.status for o in outcomes.outcomes} == {grpc.StatusCode.CANCELLED}


async def test_the_deadline_of_the_call_cancels_every_request(
    stub: Stub, router: Router, outcomes: OutcomeLog
) -> None:
    call = stub.Chat(timeout=0.5)
    await call.write(start("a", "sim-slow"))
    await call.write(start("b", "sim-slow", "other"))
    with pytest.raises(aio.AioRpcError) as caught:
        await Transcript(call).read_to_end()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: {"a", "b"} <= upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 2)
    assert {o.status for o in outcomes.outcomes} == {grpc.StatusCode.DEADLINE_EXCEEDED}


async def test_a_request_timeout_ends_only_that_request(stub: Stub) -> None:
    call = stub.Chat()
    chat = Transcript(call)
    slow = completion("sim-slow", request_id="slow", timeout_seconds=0.2)
    await call.write(ChatRequest(start=slow))
    await call.write(start("quick"))
    final = await chat.read_until_final("slow")
    assert final.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert final.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    await call.done_writing()
    await chat.read_to_end()
    assert chat.finals["quick"][0].finish_reason == common_pb2.FINISH_REASON_STOP


async def test_many_requests_on_one_stream(stub: Stub) -> None:
    call = stub.Chat()
    chat = Transcript(call)

    async def write_all() -> None:
        for n in range(50):
            await call.write(start(f"m{n}", "sim", f"prompt number {n}"))
        await call.done_writing()

    await asyncio.gather(write_all(), chat.read_to_end())
    assert len(chat.finals) == 50
    assert all(len(f) == 1 and len(chat.deltas[r]) == 16 for r, f in chat.finals.items())


async def test_a_client_that_goes_away_cancels_its_upstream_requests(
    running: Running, router: Router, outcomes: OutcomeLog
) -> None:
    channel = aio.insecure_channel(f"127.0.0.1:{running.server.port}")
    call = inference_pb2_grpc.InferenceServiceStub(channel).Chat()
    await call.write(start("gone", "sim-slow"))
    response = await call.read()
    assert isinstance(response, inference_pb2.ChatResponse) and response.HasField("delta")
    await channel.close(None)
    await eventually(lambda: "gone" in upstream(router, "sim-slow").cancelled)
    await eventually(lambda: len(outcomes.outcomes) == 1)
    assert outcomes.outcomes[0].status == grpc.StatusCode.CANCELLED
    assert outcomes.outcomes[0].served_by.model == "sim-slow"
