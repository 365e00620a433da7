"""A real stack for the HTTP edge tests: fake OpenAI upstream -> inference process -> gateway.

The inference service runs as its own process (``llmgw serve inference``) and serves
two models: ``sim`` on the simulated provider and ``gpt-fake`` on its OpenAI adapter,
pointed at a scripted :class:`~provider_adapters.conformance.fake_server.FakeServer`
(OpenAI's HTTP wire format). The gateway runs in the test's process, with its HTTP
edge on a free port, so tests may pass their own filters.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.edge import Gateway
from gateway.settings import (
    ClusterSettings,
    FilterSettings,
    GatewaySection,
    GatewaySettings,
    HttpSettings,
    RouteMatch,
    RouteSettings,
)
from provider_adapters.conformance.fake_server import ScriptedResponse
from services.kernel.config import MetricsSettings, ServerSettings
from services.kernel.health_client import wait_until_serving
from services.kernel.server import KernelServer

ROOT = Path(__file__).resolve().parents[2]
INFERENCE = "llmgw.inference.v1.InferenceService"
FAKE_KEY_ENV = "HTTP_EDGE_TEST_OPENAI_KEY"
MAX_BODY_BYTES = 256 * 1024

ROUTING = """
versions:
  - model: sim
    version: "1"
    provider: simulated
    provider_model_id: sim-1
    context_window: 8192
    max_output_tokens: 1024
    capabilities: [CAPABILITY_CHAT, CAPABILITY_STREAMING, CAPABILITY_EMBEDDINGS]
    pricing: {{currency_code: USD, input_per_million_nanos: "1000000000"}}
    provider_options: {{output_tokens: "6", embedding_dimensions: "8"}}
  - model: gpt-fake
    version: "1"
    provider: openai
    provider_model_id: gpt-upstream
    endpoint: "{openai_url}"
    credential: {{env_var: {key_env}}}
    context_window: 8192
    max_output_tokens: 1024
    capabilities: [CAPABILITY_CHAT, CAPABILITY_STREAMING, CAPABILITY_TOOLS,
                   CAPABILITY_JSON_SCHEMA]
    pricing: {{currency_code: USD, input_per_million_nanos: "1000000000"}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class InferenceProcess:
    popen: subprocess.Popen[bytes]
    address: str
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


async def start_inference(folder: Path, openai_url: str) -> InferenceProcess:
    """The inference process serving ``sim`` and ``gpt-fake`` (no retries, no cooldown)."""
    routing = folder / "routing.yaml"
    routing.write_text(ROUTING.format(openai_url=openai_url, key_env=FAKE_KEY_ENV))
    config = folder / "inference.yaml"
    config.write_text(
        json.dumps(
            {
                "routing": {"file": str(routing), "max_retries": 0, "cooldown_failures": 1000},
                "usage": {"spool_dir": str(folder / "spool")},
                "logging": {"level": "WARNING"},
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMGW_") and k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env.update({FAKE_KEY_ENV: "sk-upstream-test", "PYTHONPATH": str(ROOT)})
    port, metrics_port = free_port(), free_port()
    log = folder / "inference.log"
    argv = [sys.executable, "-m", "services.cli", "serve", "inference", "--config", str(config)]
    popen = subprocess.Popen(
        [*argv, "--port", str(port), "--metrics-port", str(metrics_port)],
        cwd=folder,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    process = InferenceProcess(popen, f"127.0.0.1:{port}", log)
    if not await wait_until_serving(process.address, timeout=30):
        process.stop()
        raise AssertionError(log.read_text())
    return process


@dataclass
class Edge:
    """A running gateway; ``base_url`` is its OpenAI-compatible ``/v1``."""

    gateway: Gateway
    server: KernelServer
    access_log: Path

    @property
    def base_url(self) -> str:
        assert self.gateway.http is not None
        return f"http://127.0.0.1:{self.gateway.http.port}/v1"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]

    async def stop(self) -> None:
        await self.server.drain(grace_seconds=0)


async def start_edge(
    inference_address: str,
    access_log: Path,
    *,
    filters: Sequence[FilterSettings] = (),
    available_filters: Sequence[EntryPoint] = (),
    forwarded_headers: Sequence[str] = ("authorization", "x-request-id"),
    upstreams: Mapping[str, str] = MappingProxyType({}),
) -> Edge:
    """A gateway in this process in front of ``inference_address``, HTTP edge included.

    ``upstreams`` adds a cluster and route per gRPC service (full name -> address); a
    cluster is named after its service's package (``inference``, ``finetuning``).
    """
    addresses = {INFERENCE: inference_address, **upstreams}
    clusters = {service: service.split(".")[1] for service in addresses}
    settings = GatewaySettings(
        server=ServerSettings(port=0, grace_period_seconds=1),
        metrics=MetricsSettings(enabled=False),
        gateway=GatewaySection(
            http=HttpSettings(
                port=0,
                max_body_bytes=MAX_BODY_BYTES,
                shutdown_grace_seconds=1,
                forwarded_headers=tuple(forwarded_headers),
            ),
            filters=(
                FilterSettings(name="access_log", config={"output": str(access_log)}),
                FilterSettings(name="metrics"),
                *filters,
            ),
            clusters={
                clusters[service]: ClusterSettings(endpoints=(address,))
                for service, address in addresses.items()
            },
            routes=tuple(
                RouteSettings(match=RouteMatch(service=service), cluster=clusters[service])
                for service in addresses
            ),
        ),
    )
    registry = CollectorRegistry()
    gateway = Gateway(settings, registry, available_filters=available_filters)
    server = KernelServer(gateway.app(), settings.server, registry)
    await server.start()
    return Edge(gateway, server, access_log)


# OpenAI wire answers of the fake upstream -------------------------------------------

USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def openai_json(message: dict[str, Any], finish_reason: str = "stop") -> ScriptedResponse:
    body = {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-upstream",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": USAGE,
    }
    return ScriptedResponse(
        body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-upstream",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def sse_events(events: Sequence[dict[str, Any]], *, done: bool = True) -> bytes:
    body = b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def usage_chunk() -> dict[str, Any]:
    return {**chunk({}), "choices": [], "usage": USAGE}


def openai_error(status: int, code: str, headers: dict[str, str] | None = None) -> ScriptedResponse:
    body = {"error": {"message": f"upstream says {code}", "type": "error", "code": code}}
    return ScriptedResponse(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
