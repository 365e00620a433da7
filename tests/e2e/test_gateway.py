"""The gateway process in front of two real inference processes (simulated provider).

Every process is started with ``llmgw serve`` on loopback ports, as a container
would run it; faults are real signals (SIGKILL, SIGSTOP/SIGCONT, SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.kernel.health_client import UNREACHABLE, check_health, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
INFERENCE = "llmgw.inference.v1.InferenceService"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@dataclass
class Process:
    name: str
    port: int
    metrics_port: int
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of the process's /metrics (0.0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") and all(label in line for label in wanted):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.kill()
            self.popen.wait(10)


def _serve(name: str, folder: Path, *args: str) -> Process:
    port, metrics_port = _free_ports(2)
    log = folder / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env.pop("REDIS_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    ports = ["--port", str(port), "--metrics-port", str(metrics_port)]
    popen = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", *args, *ports],
        cwd=folder,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Process(name, port, metrics_port, popen, log)


@dataclass
class Edge:
    gateway: Process
    replicas: list[Process]
    access_log: Path

    def lines(self) -> list[dict[str, object]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    replicas = [_serve(f"inference-{i}", tmp_path, "inference") for i in range(2)]
    processes = list(replicas)
    try:
        for replica in replicas:
            assert await wait_until_serving(replica.address, timeout=30), replica.log.read_text()
        access_log = tmp_path / "access.log"
        config = tmp_path / "gateway.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "server": {"grace_period_seconds": 10},
                    "gateway": {
                        "filters": [
                            {"name": "access_log", "config": {"output": str(access_log)}},
                            {"name": "metrics"},
                        ],
                        "clusters": {
                            "inference": {
                                "endpoints": [replica.address for replica in replicas],
                                "lb_policy": "round_robin",
                                "health_check": {
                                    "interval_seconds": 0.2,
                                    "timeout_seconds": 0.3,
                                    "unhealthy_threshold": 2,
                                    "healthy_threshold": 1,
                                },
                            }
                        },
                        "routes": [
                            {"match": {"service": INFERENCE}, "cluster": "inference"},
                        ],
                    },
                }
            )
        )
        gateway = _serve("gateway", tmp_path, "gateway", "--config", str(config))
        processes.append(gateway)
        assert await wait_until_serving(gateway.address, timeout=30), gateway.log.read_text()
        yield Edge(gateway, replicas, access_log)
    finally:
        for process in processes:
            process.stop()


def _completion(model: str = "sim-small", request_id: str = "") -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        request_id=request_id,
        model=model,
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_USER, content=[inference_pb2.ContentPart(text="hello there")]
            )
        ],
    )


@pytest.fixture
async def stub(edge: Edge) -> AsyncIterator[inference_pb2_grpc.InferenceServiceAsyncStub]:
    async with aio.insecure_channel(edge.gateway.address) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


async def test_each_call_shape_reaches_both_replicas_through_the_gateway(
    edge: Edge, stub: inference_pb2_grpc.InferenceServiceAsyncStub
) -> None:
    for _ in range(2):
        call = stub.Complete(inference_pb2.CompleteRequest(completion=_completion()), timeout=10)
        reply = await call
        assert reply.result.usage.output_tokens > 0
        assert dict(await call.trailing_metadata())["llmgw-usage-output-tokens"] == str(
            reply.result.usage.output_tokens
        )
    stream = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=_completion()), timeout=10
    )
    events = [event async for event in stream]
    assert events[-1].WhichOneof("event") == "final" and len(events) > 2

    chat = stub.Chat(timeout=10)
    for request_id in ("r1", "r2"):
        await chat.write(inference_pb2.ChatRequest(start=_completion(request_id=request_id)))
    await chat.done_writing()
    finals = {
        response.request_id async for response in chat if response.WhichOneof("event") == "final"
    }
    assert finals == {"r1", "r2"}

    await _eventually(lambda: len(edge.lines()) == 4)
    lines = edge.lines()
    assert {line["upstream"] for line in lines} == {r.address for r in edge.replicas}
    complete = [line for line in lines if line["method"] == f"/{INFERENCE}/Complete"]
    assert all(line["model"] == "sim-small" and line["output_tokens"] for line in complete)


async def test_a_replica_killed_mid_load_fails_only_its_own_calls_loudly(
    edge: Edge, stub: inference_pb2_grpc.InferenceServiceAsyncStub
) -> None:
    results: list[tuple[float, grpc.StatusCode, bool]] = []
    killed_at: list[float] = []

    async def one_call() -> None:
        started = time.monotonic()
        try:
            reply = await stub.Complete(
                inference_pb2.CompleteRequest(completion=_completion()), timeout=10
            )
        except aio.AioRpcError as error:
            results.append((started, error.code(), False))
        else:
            complete = reply.result.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED
            results.append((started, grpc.StatusCode.OK, complete))

    async def worker(count: int) -> None:
        for _ in range(count):
            await one_call()

    async def killer() -> None:
        await _eventually(lambda: len(results) >= 20)
        killed_at.append(time.monotonic())
        edge.replicas[0].popen.kill()

    await asyncio.gather(killer(), *(worker(15) for _ in range(8)))
    assert len(results) == 120
    print("failed calls:", sum(code is not grpc.StatusCode.OK for _, code, _ in results))
    failures = [code for _, code, _ in results if code is not grpc.StatusCode.OK]
    assert all(code is grpc.StatusCode.UNAVAILABLE for code in failures), failures
    assert len(failures) <= 8  # at most the calls in flight at the killed replica
    assert all(complete for _, code, complete in results if code is grpc.StatusCode.OK)
    after = [code for started, code, _ in results if started > killed_at[0] + 0.5]
    assert after and all(code is grpc.StatusCode.OK for code in after)


async def test_a_frozen_replica_is_ejected_and_readmitted(
    edge: Edge, stub: inference_pb2_grpc.InferenceServiceAsyncStub
) -> None:
    frozen = edge.replicas[0]
    frozen.popen.send_signal(signal.SIGSTOP)
    await asyncio.sleep(1.5)  # health checks time out twice
    count_before = len(edge.lines())
    for _ in range(6):
        await stub.Complete(inference_pb2.CompleteRequest(completion=_completion()), timeout=10)
    await _eventually(lambda: len(edge.lines()) == count_before + 6)
    assert {line["upstream"] for line in edge.lines()[count_before:]} == {edge.replicas[1].address}
    frozen.popen.send_signal(signal.SIGCONT)
    await asyncio.sleep(1.0)
    for _ in range(6):
        await stub.Complete(inference_pb2.CompleteRequest(completion=_completion()), timeout=10)
    await _eventually(lambda: len(edge.lines()) == count_before + 12)
    assert frozen.address in {line["upstream"] for line in edge.lines()[count_before + 6 :]}


async def test_deadline_and_cancellation_reach_the_inference_service(
    edge: Edge, stub: inference_pb2_grpc.InferenceServiceAsyncStub
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Complete(
            inference_pb2.CompleteRequest(completion=_completion("sim-large")), timeout=0.3
        )
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    stream = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=_completion("sim-large")), timeout=10
    )
    await stream.read()
    stream.cancel()

    def ended_early(method: str) -> float:
        return sum(
            replica.metric("llmgw_grpc_server_handled_total", grpc_method=method, grpc_code=code)
            for replica in edge.replicas
            for code in ("CANCELLED", "DEADLINE_EXCEEDED")
        )

    await _eventually(lambda: ended_early("Complete") == 1 and ended_early("StreamComplete") == 1)
    for replica in edge.replicas:
        assert replica.metric("llmgw_grpc_server_in_flight", grpc_method="StreamComplete") == 0


async def test_sigterm_drains_the_gateway_while_a_long_stream_finishes(
    edge: Edge, stub: inference_pb2_grpc.InferenceServiceAsyncStub
) -> None:
    stream = stub.StreamComplete(
        inference_pb2.StreamCompleteRequest(completion=_completion("sim-large")), timeout=20
    )
    events = [await stream.read()]
    edge.gateway.popen.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    assert await check_health(edge.gateway.address, timeout=0.5) in (UNREACHABLE, "NOT_SERVING")
    async with aio.insecure_channel(edge.gateway.address) as fresh:
        with pytest.raises(aio.AioRpcError):
            await inference_pb2_grpc.InferenceServiceStub(fresh).Complete(
                inference_pb2.CompleteRequest(completion=_completion()), timeout=1
            )
    while (event := await stream.read()) is not aio.EOF:
        events.append(event)
    assert await stream.code() is grpc.StatusCode.OK
    last = events[-1]
    assert isinstance(last, inference_pb2.StreamCompleteResponse)
    assert last.WhichOneof("event") == "final"
    code = await asyncio.to_thread(edge.gateway.popen.wait, 20)
    output = edge.gateway.log.read_text()
    assert code == 0, output
    assert '"msg":"draining"' in output and '"msg":"stopped"' in output


async def _eventually(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
