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
import subprocess
import sys
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc import aio

from bench.measure import Call, figures, throughput, timed
from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from provider_adapters.base import Deployment, ProviderAdapter, Secret
from provider_adapters.openai.adapter import OpenAIAdapter
from provider_adapters.simulated.adapter import SimulatedAdapter

ROOT = Path(__file__).resolve().parents[1]
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

ROUTING = """
versions:
  - model: bench
    version: "1"
    provider: simulated
    provider_model_id: bench-1
    context_window: 8192
    max_output_tokens: 1024
    capabilities: [CAPABILITY_CHAT, CAPABILITY_STREAMING]
    pricing: {{currency_code: USD, input_per_million_nanos: "1000000000"}}
    provider_options: {{output_tokens: "{chunks}"}}
  - model: bench-openai
    version: "1"
    provider: openai
    provider_model_id: gpt-bench
    endpoint: "{openai_url}"
    credential: {{env_var: BENCH_OPENAI_KEY}}
    context_window: 8192
    max_output_tokens: 1024
    capabilities: [CAPABILITY_CHAT, CAPABILITY_STREAMING]
    pricing: {{currency_code: USD, input_per_million_nanos: "1000000000"}}
"""
OPENAI_KEY = "sk-bench-not-a-secret"


@dataclass(frozen=True, slots=True)
class Servers:
    """Where the benchmark's subprocesses listen."""

    service_port: int
    service_pid: int
    floor_port: int
    openai_url: str


def request(model: str = "bench") -> inference_pb2.CompletionRequest:
    return inference_pb2.CompletionRequest(
        model=model,
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_USER,
                content=[inference_pb2.ContentPart(text="how fast is the gateway today?")],
            )
        ],
    )


def start_server(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a server subprocess that prints ``PORT <n>`` once serving."""
    return subprocess.Popen(
        [sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def port_of(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PORT "), f"server did not start: {line!r}"
    return int(line.split()[1])


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """The inference process, the bare gRPC floor and the fake OpenAI upstream."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS") and not k.startswith("LLMGW_")
    }
    started: list[subprocess.Popen[str]] = []
    try:
        openai = start_server(["bench.fake_openai_server", str(CHUNKS)], env)
        started.append(openai)
        openai_url = f"http://127.0.0.1:{port_of(openai)}/v1"
        routing = tmp_path / "routing.yaml"
        routing.write_text(ROUTING.format(chunks=CHUNKS, openai_url=openai_url), encoding="utf-8")
        settings = tmp_path / "settings.yaml"
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
            ),
            encoding="utf-8",
        )
        service_env = {**env, "BENCH_OPENAI_KEY": OPENAI_KEY}
        service = start_server(["bench.inference_server", str(settings)], service_env)
        started.append(service)
        floor = start_server(["bench.grpc_floor_server", str(CHUNKS)], env)
        started.append(floor)
        yield Servers(port_of(service), service.pid, port_of(floor), openai_url)
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=20)


def resident_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def drain(stream: AsyncIterable[object]) -> None:
    async for _ in stream:
        pass


class Target:
    """The four calls measured against one server (or the adapter itself)."""

    def __init__(self, unary: Call, stream: Call) -> None:
        self.unary = unary
        self.stream = stream


def grpc_target(stub: inference_pb2_grpc.InferenceServiceAsyncStub, model: str) -> Target:
    completion = request(model)
    unary_request = inference_pb2.CompleteRequest(completion=completion)
    stream_request = inference_pb2.StreamCompleteRequest(completion=completion)

    async def unary() -> None:
        await stub.Complete(unary_request)

    async def stream() -> None:
        await drain(stub.StreamComplete(stream_request))

    return Target(unary, stream)


def adapter_target(adapter: ProviderAdapter) -> Target:
    completion = request()

    async def unary() -> None:
        await adapter.complete(completion)

    async def stream() -> None:
        await drain(adapter.stream(completion))

    return Target(unary, stream)


async def measure(targets: dict[str, Target]) -> dict[str, list[float]]:
    """Latency samples of every target at concurrency 1, in alternating rounds."""
    samples: dict[str, list[float]] = {}
    for name, target in targets.items():
        await timed(target.unary, 300)  # warm-up
        await timed(target.stream, 300)
        samples[f"{name}_unary"] = []
        samples[f"{name}_stream"] = []
    for _ in range(ROUNDS):
        for name, target in targets.items():
            samples[f"{name}_unary"] += await timed(target.unary, CALLS_PER_ROUND)
            samples[f"{name}_stream"] += await timed(target.stream, CALLS_PER_ROUND)
    return samples


async def rates(targets: dict[str, Target]) -> dict[str, float]:
    """Calls per second of every target at :data:`CONCURRENCY`."""
    found: dict[str, float] = {}
    for name, target in targets.items():
        for kind, call in (("unary", target.unary), ("stream", target.stream)):
            rate = await throughput(call, THROUGHPUT_CALLS, CONCURRENCY)
            found[f"{name}_{kind}_per_second"] = round(rate, 1)
    return found


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
        samples = await measure(targets)
        throughput_figures = await rates(targets)
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
