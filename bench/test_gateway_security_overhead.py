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

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpc import aio

from bench.measure import alternating, figures
from bench.processes import (
    Processes,
    clean_env,
    free_port,
    gateway_settings,
    inference_settings,
    port_of,
    routing_yaml,
)
from bench.targets import Metadata, grpc_target
from llmgw.inference.v1 import inference_pb2_grpc
from tests.harness.redis_server import redis_server

RESULT = Path(__file__).parent / "results" / "gateway_security_overhead.json"
ROUNDS = 8
CALLS_PER_ROUND = 150
CHUNKS = 20
MAX_ADDED_UNARY_P50_MS = 1.0
"""What authentication, rate limiting and budgets together may add to a unary call's p50."""
NEVER = 1_000_000_000
"""A limit no benchmark run reaches."""
PROJECT = "bench"


@dataclass
class Servers:
    plain_port: int
    secured_port: int
    metadata: Metadata
    secured_filters: list[str]


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
    settings = inference_settings(tmp_path, routing_yaml(CHUNKS))
    env = clean_env()
    key_file = tmp_path / "bench.key"
    with redis_server() as redis, Processes() as processes:
        inference_port = port_of(processes.inference(settings, env))
        filters = _secured_filters(redis.url)
        configs = {
            "plain": gateway_settings(
                tmp_path / "plain.yaml", inference_port, [], security={"enabled": False}
            ),
            "secured": gateway_settings(
                tmp_path / "secured.yaml",
                inference_port,
                filters,
                security={"bootstrap_key_file": str(key_file), "bootstrap_project": PROJECT},
            ),
        }
        ports = {}
        for name, config in configs.items():
            port = ports[name] = free_port()
            processes.gateway(config, port, env)
        secret = key_file.read_text(encoding="utf-8").strip()
        yield Servers(
            ports["plain"],
            ports["secured"],
            (("authorization", f"Bearer {secret}"),),
            [entry["name"] for entry in filters],
        )


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_gateway_security_overhead(servers: Servers) -> None:
    async with (
        aio.insecure_channel(f"127.0.0.1:{servers.plain_port}") as plain_channel,
        aio.insecure_channel(f"127.0.0.1:{servers.secured_port}") as secured_channel,
    ):
        targets = {
            "plain": grpc_target(inference_pb2_grpc.InferenceServiceStub(plain_channel)),
            "secured": grpc_target(
                inference_pb2_grpc.InferenceServiceStub(secured_channel),
                metadata=servers.metadata,
            ),
        }
        samples = await alternating(targets, ROUNDS, CALLS_PER_ROUND)

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
