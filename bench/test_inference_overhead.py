"""What the inference service adds on top of the provider it calls.

Targets, measured in alternating rounds so machine noise hits all alike:

* ``direct``: the simulated adapter (zero delay, 20 output tokens) called in
  this process, the baseline of the simulated case;
* ``floor``: a bare grpc.aio server in a subprocess returning that answer canned
  (``bench/grpc_floor_server.py``): what one gRPC hop costs in Python here;
* ``service``: the real inference process in a subprocess (kernel interceptor,
  router, usage recorder with the in-process bus, metrics; no cache) serving
  the simulated model;
* ``openai_direct``: the OpenAI adapter in this process calling a fast fake
  OpenAI HTTP server (``bench/fake_openai_server.py``, another subprocess);
* ``openai_service``: the inference process serving a model routed to that
  fake through its own OpenAI adapter.

Figures: latency p50/p99 at concurrency 1 for unary calls and 20-chunk
streams and what the service adds over each baseline, throughput at
concurrency 32, and the service's resident memory after the run. Results go
to ``bench/results/inference_overhead.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio

from bench.measure import Target, alternating, figures, rates
from bench.processes import (
    OPENAI_KEY,
    Processes,
    clean_env,
    inference_settings,
    port_of,
    routing_yaml,
    with_openai_key,
)
from bench.targets import drain, grpc_target, request
from llmgw.inference.v1 import inference_pb2_grpc
from provider_adapters.base import Deployment, ProviderAdapter, Secret
from provider_adapters.openai.adapter import OpenAIAdapter
from provider_adapters.simulated.adapter import SimulatedAdapter

RESULT = Path(__file__).parent / "results" / "inference_overhead.json"
ROUNDS = 10
CALLS_PER_ROUND = 200
CONCURRENCY = 32
THROUGHPUT_CALLS = 4000
CHUNKS = 20
OPTIONS = {"output_tokens": str(CHUNKS)}
MAX_ADDED_UNARY_P50_MS = 2.0
"""A loose guard on the service's own unary cost over the bare gRPC hop (loaded machines
included); the figures themselves are the result."""


@dataclass(frozen=True, slots=True)
class Servers:
    """Where the benchmark's subprocesses listen."""

    service_port: int
    service_pid: int
    floor_port: int
    openai_url: str


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """The inference process, the bare gRPC floor and the fake OpenAI upstream."""
    env = clean_env()
    with Processes() as processes:
        openai_url = processes.fake_openai(CHUNKS, env)
        settings = inference_settings(tmp_path, routing_yaml(CHUNKS, openai_url))
        service = processes.inference(settings, with_openai_key(env))
        floor = processes.server(["bench.grpc_floor_server", str(CHUNKS)], env)
        yield Servers(port_of(service), service.pid, port_of(floor), openai_url)


def resident_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def adapter_target(adapter: ProviderAdapter) -> Target:
    completion = request()

    async def unary() -> None:
        await adapter.complete(completion)

    async def stream() -> None:
        await drain(adapter.stream(completion))

    return Target(unary, stream)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_inference_service_overhead(servers: Servers) -> None:
    simulated = SimulatedAdapter(Deployment(provider="simulated", model="bench", options=OPTIONS))
    openai = OpenAIAdapter(
        Deployment(
            provider="openai",
            model="gpt-bench",
            base_url=servers.openai_url,
            api_key=Secret(OPENAI_KEY),
        )
    )
    async with (
        aio.insecure_channel(f"127.0.0.1:{servers.service_port}") as service_channel,
        aio.insecure_channel(f"127.0.0.1:{servers.floor_port}") as floor_channel,
    ):
        service = inference_pb2_grpc.InferenceServiceStub(service_channel)
        targets = {
            "direct": adapter_target(simulated),
            "floor": grpc_target(inference_pb2_grpc.InferenceServiceStub(floor_channel), "bench"),
            "service": grpc_target(service, "bench"),
            "openai_direct": adapter_target(openai),
            "openai_service": grpc_target(service, "bench-openai"),
        }
        samples = await alternating(targets, ROUNDS, CALLS_PER_ROUND)
        throughput_figures = await rates(targets, THROUGHPUT_CALLS, CONCURRENCY)
    await openai.aclose()
    rss = resident_bytes(servers.service_pid)
    simulated_figures = figures(samples, "direct", "service")
    result = {
        "calls_each_at_concurrency_1": ROUNDS * CALLS_PER_ROUND,
        "chunks_per_stream": CHUNKS,
        "simulated_vs_direct": simulated_figures,
        "simulated_vs_bare_grpc_hop": figures(samples, "floor", "service"),
        "openai_fake_vs_direct": figures(samples, "openai_direct", "openai_service"),
        "throughput_at_concurrency": CONCURRENCY,
        "throughput": throughput_figures,
        "service_rss_mib_after_run": round(rss / 2**20, 1),
        "cpu_count": os.cpu_count(),
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    over_floor = result["simulated_vs_bare_grpc_hop"]
    assert isinstance(over_floor, dict)
    assert over_floor["unary_added_p50_ms"] < MAX_ADDED_UNARY_P50_MS, result
