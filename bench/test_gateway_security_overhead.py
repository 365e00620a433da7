"""What authentication, rate limits and budgets add to a call through the gateway.

One inference process (simulated provider, zero delay, 20 output tokens; no cache)
sits behind two gateway processes started from the same settings but for their
filter chains:

- ``plain``: no filters at all (raw forwarding);
- ``secured``: ``authn`` (an API key, the bootstrap key the gateway creates through
  its admin store in SQLite at start), ``authz`` (scopes and model allowlists),
  ``rate_limit`` (requests and tokens per minute of the key's project, in Redis) and
  ``budget`` (a monthly budget of the project, read from the spend ledger in Redis).
  The limits are high enough never to refuse: every call pays the full check.

Calls alternate between the two paths in rounds so that machine noise hits both
alike. Figures: p50/p99 latency of unary ``Complete`` and 20-chunk
``StreamComplete`` calls at concurrency 1 on each path and what ``secured`` adds.
Results go to ``bench/results/gateway_security_overhead.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from grpc import aio

from bench.measure import figures, timed
from bench.test_gateway_overhead import ROUTING, Target, _env, _request
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.kernel.health_client import wait_until_serving
from tests.harness.redis_server import redis_server

ROOT = Path(__file__).resolve().parents[1]
RESULT = Path(__file__).parent / "results" / "gateway_security_overhead.json"
ROUNDS = 8
CALLS_PER_ROUND = 150
INFERENCE = "llmgw.inference.v1.InferenceService"
MAX_ADDED_UNARY_P50_MS = 1.0
"""What authentication, rate limiting and budgets together may add to a unary call's p50."""
NEVER = 1_000_000_000
"""A limit no benchmark run reaches."""
PROJECT = "bench"


@dataclass
class Servers:
    plain_port: int
    secured_port: int
    metadata: tuple[tuple[str, str], ...]
    secured_filters: list[str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _gateway_settings(
    path: Path, inference_port: int, filters: list[dict[str, Any]], security: dict[str, Any]
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "metrics": {"enabled": False},
                "logging": {"level": "WARNING"},
                "database_url": f"sqlite+aiosqlite:///{path.with_suffix('.db')}",
                "gateway": {
                    "filters": filters,
                    "clusters": {"inference": {"endpoints": [f"127.0.0.1:{inference_port}"]}},
                    "routes": [{"match": {"service": INFERENCE}, "cluster": "inference"}],
                    "security": security,
                },
            }
        ),
        encoding="utf-8",
    )
    return path


def _secured_filters(redis_url: str) -> list[dict[str, Any]]:
    redis = {"redis_url": redis_url, "namespace": "bench"}
    rules = [
        {
            "id": "bench",
            "project": PROJECT,
            "requests_per_minute": NEVER,
            "tokens_per_minute": NEVER,
        }
    ]
    budgets = [{"id": "bench-month", "project": PROJECT, "amount_nanos": NEVER * NEVER}]
    return [
        {"name": "authn"},
        {"name": "authz"},
        {"name": "rate_limit", "config": {**redis, "rules": rules}},
        {"name": "budget", "config": {**redis, "budgets": budgets}},
    ]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING, encoding="utf-8")
    inference_settings = tmp_path / "inference.yaml"
    inference_settings.write_text(
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
    env = _env()
    key_file = tmp_path / "bench.key"
    started: list[subprocess.Popen[str]] = []
    with redis_server() as redis:
        try:
            inference = subprocess.Popen(
                [sys.executable, "-m", "bench.inference_server", str(inference_settings)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            started.append(inference)
            assert inference.stdout is not None
            line = inference.stdout.readline()
            assert line.startswith("PORT "), f"inference did not start: {line!r}"
            inference_port = int(line.split()[1])
            filters = _secured_filters(redis.url)
            configs = {
                "plain": _gateway_settings(
                    tmp_path / "plain.yaml", inference_port, [], {"enabled": False}
                ),
                "secured": _gateway_settings(
                    tmp_path / "secured.yaml",
                    inference_port,
                    filters,
                    {"bootstrap_key_file": str(key_file), "bootstrap_project": PROJECT},
                ),
            }
            ports = {}
            for name, config in configs.items():
                port = ports[name] = _free_port()
                command = ["serve", "gateway", "--config", str(config), "--port", str(port)]
                process = subprocess.Popen(
                    [sys.executable, "-m", "services.cli", *command],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    text=True,
                )
                started.append(process)
                assert asyncio.run(wait_until_serving(f"127.0.0.1:{port}", timeout=30))
            secret = key_file.read_text(encoding="utf-8").strip()
            yield Servers(
                ports["plain"],
                ports["secured"],
                (("authorization", f"Bearer {secret}"),),
                [entry["name"] for entry in filters],
            )
        finally:
            for process in started:
                process.terminate()
                process.wait(timeout=20)


def _target(channel: aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> Target:
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    unary_request = inference_pb2.CompleteRequest(completion=_request())
    stream_request = inference_pb2.StreamCompleteRequest(completion=_request())

    async def unary() -> None:
        await stub.Complete(unary_request, metadata=metadata)

    async def stream() -> None:
        async for _ in stub.StreamComplete(stream_request, metadata=metadata):
            pass

    return Target(unary, stream)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_gateway_security_overhead(servers: Servers) -> None:
    async with (
        aio.insecure_channel(f"127.0.0.1:{servers.plain_port}") as plain_channel,
        aio.insecure_channel(f"127.0.0.1:{servers.secured_port}") as secured_channel,
    ):
        targets = {
            "plain": _target(plain_channel),
            "secured": _target(secured_channel, servers.metadata),
        }
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

    result = {
        "calls_each_at_concurrency_1": ROUNDS * CALLS_PER_ROUND,
        "secured_filters": servers.secured_filters,
        "latency_at_concurrency_1": figures(samples, "plain", "secured"),
        "cpu_count": os.cpu_count(),
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    latency = result["latency_at_concurrency_1"]
    assert isinstance(latency, dict)
    assert latency["unary_added_p50_ms"] < MAX_ADDED_UNARY_P50_MS, result
