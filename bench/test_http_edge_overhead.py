"""What the OpenAI-compatible HTTP edge costs: the same chat workload three ways, one run.

* ``upstream``: OpenAI-style HTTP straight to the fast fake OpenAI server
  (``bench/fake_openai_server.py``), the floor of the workload;
* ``grpc``: ``Complete``/``StreamComplete`` through the gateway's gRPC listener to
  the inference process, whose OpenAI adapter calls that fake;
* ``http``: the same request as OpenAI JSON (SSE for streams) to the gateway's HTTP
  edge, which makes the same call in process.

The same ``grpc`` and ``http`` pair is also measured on the simulated model (zero
delay) to isolate the edge's own cost (parsing, translation, aiohttp) from the
provider path. The gateway and the inference process are each pinned to one core
with ``taskset`` when it exists (the load generator and the fake share them: the
machine has two). Figures: p50/p99 at concurrency 1 in alternating rounds, and
throughput at concurrency :data:`CONCURRENCY`. Results go to
``bench/results/http_edge_overhead.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from grpc import aio

from bench.measure import Call, figures, throughput, timed
from bench.test_inference_overhead import OPENAI_KEY, ROUTING, port_of, request, start_server
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.kernel.health_client import wait_until_serving
from tests.e2e.http_stack import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULT = Path(__file__).parent / "results" / "http_edge_overhead.json"
ROUNDS = 8
CALLS_PER_ROUND = 150
CONCURRENCY = 32
THROUGHPUT_CALLS = 3000
CHUNKS = 20
INFERENCE = "llmgw.inference.v1.InferenceService"
MAX_EDGE_UNARY_P50_MS = 1.0
"""A loose guard on the edge's own unary cost over the gateway's gRPC listener."""
PROMPT = [{"role": "user", "content": "how fast is the gateway today?"}]


@dataclass(frozen=True, slots=True)
class Servers:
    openai_url: str
    grpc_address: str
    http_url: str
    pinned: bool


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMGW_") and k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }


def _pinned(argv: list[str], core: int) -> list[str]:
    taskset = shutil.which("taskset")
    cores = os.cpu_count() or 1
    return [taskset, "-c", str(core % cores), *argv] if taskset else argv


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started: list[subprocess.Popen[str]] = []
    try:
        fake = start_server(["bench.fake_openai_server", str(CHUNKS)], _env())
        started.append(fake)
        openai_url = f"http://127.0.0.1:{port_of(fake)}/v1"
        routing = tmp_path / "routing.yaml"
        routing.write_text(ROUTING.format(chunks=CHUNKS, openai_url=openai_url))
        settings = tmp_path / "inference.json"
        settings.write_text(
            json.dumps(
                {
                    "service": "inference",
                    "server": {"port": 0},
                    "metrics": {"enabled": False},
                    "logging": {"level": "WARNING"},
                    "routing": {"file": str(routing)},
                    "usage": {"spool_dir": str(tmp_path / "spool")},
                }
            )
        )
        inference = subprocess.Popen(
            _pinned([sys.executable, "-m", "bench.inference_server", str(settings)], 1),
            cwd=ROOT,
            env={**_env(), "BENCH_OPENAI_KEY": OPENAI_KEY},
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(inference)
        inference_port = port_of(inference)
        grpc_port, http_port = free_port(), free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "metrics": {"enabled": False},
                    "logging": {"level": "WARNING"},
                    "gateway": {
                        "http": {"port": http_port},
                        "filters": [
                            {"name": "access_log", "config": {"output": str(tmp_path / "a.log")}},
                            {"name": "metrics"},
                        ],
                        "clusters": {"inference": {"endpoints": [f"127.0.0.1:{inference_port}"]}},
                        "routes": [{"match": {"service": INFERENCE}, "cluster": "inference"}],
                    },
                }
            )
        )
        argv = [sys.executable, "-m", "services.cli", "serve", "gateway", "--config", str(config)]
        gateway = subprocess.Popen(
            _pinned([*argv, "--port", str(grpc_port)], 0),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            text=True,
        )
        started.append(gateway)
        assert asyncio.run(wait_until_serving(f"127.0.0.1:{grpc_port}", timeout=30))
        yield Servers(
            openai_url,
            f"127.0.0.1:{grpc_port}",
            f"http://127.0.0.1:{http_port}/v1",
            shutil.which("taskset") is not None,
        )
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=20)


@dataclass
class Target:
    unary: Call
    stream: Call


def _http_target(session: aiohttp.ClientSession, base_url: str, model: str) -> Target:
    url = f"{base_url}/chat/completions"
    unary_body = orjson.dumps({"model": model, "messages": PROMPT})
    stream_body = orjson.dumps(
        {
            "model": model,
            "messages": PROMPT,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

    async def unary() -> None:
        async with session.post(url, data=unary_body, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            await reply.read()

    async def stream() -> None:
        async with session.post(url, data=stream_body, headers=headers) as reply:
            assert reply.status == 200, await reply.text()
            body = await reply.read()
            assert body.endswith(b"data: [DONE]\n\n")

    return Target(unary, stream)


def _grpc_target(stub: inference_pb2_grpc.InferenceServiceAsyncStub, model: str) -> Target:
    unary_request = inference_pb2.CompleteRequest(completion=request(model))
    stream_request = inference_pb2.StreamCompleteRequest(completion=request(model))

    async def unary() -> None:
        await stub.Complete(unary_request)

    async def stream() -> None:
        async for _ in stub.StreamComplete(stream_request):
            pass

    return Target(unary, stream)


async def _rounds(targets: dict[str, Target]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for name, target in targets.items():
        await timed(target.unary, 200)  # warm-up
        await timed(target.stream, 100)
        samples[f"{name}_unary"] = []
        samples[f"{name}_stream"] = []
    for _ in range(ROUNDS):
        for name, target in targets.items():
            samples[f"{name}_unary"] += await timed(target.unary, CALLS_PER_ROUND)
            samples[f"{name}_stream"] += await timed(target.stream, CALLS_PER_ROUND)
    return samples


async def _rates(
    targets: dict[str, Target], kinds: Callable[[Target], dict[str, Call]]
) -> dict[str, float]:
    rates: dict[str, float] = {}
    for name, target in targets.items():
        for kind, call in kinds(target).items():
            rate = await throughput(call, THROUGHPUT_CALLS, CONCURRENCY)
            rates[f"{name}_{kind}_per_second"] = round(rate, 1)
    return rates


def _both(target: Target) -> dict[str, Call]:
    return {"unary": target.unary, "stream": target.stream}


async def _run(servers: Servers) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        aio.insecure_channel(servers.grpc_address) as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        openai_path = {
            "upstream": _http_target(session, servers.openai_url, "gpt-bench"),
            "grpc": _grpc_target(stub, "bench-openai"),
            "http": _http_target(session, servers.http_url, "bench-openai"),
        }
        simulated = {
            "grpc": _grpc_target(stub, "bench"),
            "http": _http_target(session, servers.http_url, "bench"),
        }
        openai_samples = await _rounds(openai_path)
        simulated_samples = await _rounds(simulated)
        rates = await _rates(openai_path, _both)
        rates.update({f"simulated_{k}": v for k, v in (await _rates(simulated, _both)).items()})
    return {
        "calls_each_at_concurrency_1": ROUNDS * CALLS_PER_ROUND,
        "chunks_per_stream": CHUNKS,
        "pinned_one_core_each": servers.pinned,
        "fake_openai_http_vs_upstream": figures(openai_samples, "upstream", "http"),
        "fake_openai_grpc_vs_upstream": figures(openai_samples, "upstream", "grpc"),
        "fake_openai_http_vs_grpc": figures(openai_samples, "grpc", "http"),
        "simulated_http_vs_grpc": figures(simulated_samples, "grpc", "http"),
        "throughput_at_concurrency": CONCURRENCY,
        "throughput": rates,
        "gateway_filters": ["access_log", "metrics"],
        "cpu_count": os.cpu_count(),
    }


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_http_edge_overhead(servers: Servers) -> None:
    result = await _run(servers)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    own = result["simulated_http_vs_grpc"]
    assert isinstance(own, dict)
    assert own["unary_added_p50_ms"] < MAX_EDGE_UNARY_P50_MS, result
