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

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from grpc import aio

from bench.measure import Target, alternating, figures, rates
from bench.processes import (
    Processes,
    clean_env,
    free_port,
    gateway_settings,
    inference_settings,
    logged_filters,
    port_of,
    routing_yaml,
    with_openai_key,
)
from bench.targets import grpc_target
from llmgw.inference.v1 import inference_pb2_grpc

RESULT = Path(__file__).parent / "results" / "http_edge_overhead.json"
ROUNDS = 8
CALLS_PER_ROUND = 150
WARM_UP = (200, 100)
"""Untimed unary calls and streams on each path before its timings."""
CONCURRENCY = 32
THROUGHPUT_CALLS = 3000
CHUNKS = 20
MAX_EDGE_UNARY_P50_MS = 1.0
"""A loose guard on the edge's own unary cost over the gateway's gRPC listener."""
PROMPT = [{"role": "user", "content": "how fast is the gateway today?"}]


@dataclass(frozen=True, slots=True)
class Servers:
    openai_url: str
    grpc_address: str
    http_url: str
    pinned: bool


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    env = clean_env()
    with Processes() as processes:
        openai_url = processes.fake_openai(CHUNKS, env)
        settings = inference_settings(tmp_path, routing_yaml(CHUNKS, openai_url))
        inference = processes.inference(settings, with_openai_key(env), 1)
        inference_port = port_of(inference)
        grpc_port, http_port = free_port(), free_port()
        config = gateway_settings(
            tmp_path / "gateway.yaml",
            inference_port,
            logged_filters(tmp_path / "a.log"),
            http_port=http_port,
        )
        processes.gateway(config, grpc_port, env, 0)
        yield Servers(
            openai_url,
            f"127.0.0.1:{grpc_port}",
            f"http://127.0.0.1:{http_port}/v1",
            shutil.which("taskset") is not None,
        )


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


async def _run(servers: Servers) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        aio.insecure_channel(servers.grpc_address) as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        openai_path = {
            "upstream": _http_target(session, servers.openai_url, "gpt-bench"),
            "grpc": grpc_target(stub, "bench-openai"),
            "http": _http_target(session, servers.http_url, "bench-openai"),
        }
        simulated = {
            "grpc": grpc_target(stub, "bench"),
            "http": _http_target(session, servers.http_url, "bench"),
        }
        openai_samples = await alternating(openai_path, ROUNDS, CALLS_PER_ROUND, WARM_UP)
        simulated_samples = await alternating(simulated, ROUNDS, CALLS_PER_ROUND, WARM_UP)
        throughput = await rates(openai_path, THROUGHPUT_CALLS, CONCURRENCY)
        simulated_rates = await rates(simulated, THROUGHPUT_CALLS, CONCURRENCY)
        throughput.update({f"simulated_{k}": v for k, v in simulated_rates.items()})
    return {
        "calls_each_at_concurrency_1": ROUNDS * CALLS_PER_ROUND,
        "chunks_per_stream": CHUNKS,
        "pinned_one_core_each": servers.pinned,
        "fake_openai_http_vs_upstream": figures(openai_samples, "upstream", "http"),
        "fake_openai_grpc_vs_upstream": figures(openai_samples, "upstream", "grpc"),
        "fake_openai_http_vs_grpc": figures(openai_samples, "grpc", "http"),
        "simulated_http_vs_grpc": figures(simulated_samples, "grpc", "http"),
        "throughput_at_concurrency": CONCURRENCY,
        "throughput": throughput,
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
