"""The benchmarks' subprocesses: their environment, settings files, start and stop.

Every server the benchmarks start runs from the repository root with the caller's
environment minus what would attach it to shared infrastructure (``REDIS_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``LLMGW_*``). Servers from ``bench/`` print
``PORT <n>`` once serving; gateways are started on a chosen port and awaited
through the gRPC health service.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from services.kernel.health_client import wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
INFERENCE = "llmgw.inference.v1.InferenceService"
OPENAI_KEY = "sk-bench-not-a-secret"
"""The API key the inference process sends to the fake OpenAI server (``BENCH_OPENAI_KEY``)."""

_SIMULATED_VERSION = """
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
"""
_OPENAI_VERSION = """  - model: bench-openai
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


def clean_env() -> dict[str, str]:
    """This process's environment without Redis, Kafka and ``LLMGW_*`` settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMGW_") and k not in ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }


def free_port() -> int:
    """A loopback TCP port free at the time of the call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def pinned(argv: list[str], core: int | None) -> list[str]:
    """``argv`` run on one ``core`` with ``taskset`` when both are given and it exists."""
    taskset = shutil.which("taskset")
    if core is None or taskset is None:
        return argv
    return [taskset, "-c", str(core % (os.cpu_count() or 1)), *argv]


def routing_yaml(chunks: int, openai_url: str | None = None) -> str:
    """The inference routing file: the simulated model ``bench`` answering ``chunks`` tokens.

    With ``openai_url``, also ``bench-openai``: ``gpt-bench`` at that OpenAI-compatible
    endpoint, with the key from ``BENCH_OPENAI_KEY``.
    """
    text = _SIMULATED_VERSION.format(chunks=chunks)
    if openai_url is not None:
        text += _OPENAI_VERSION.format(openai_url=openai_url)
    return text


def inference_settings(directory: Path, routing: str) -> Path:
    """Write ``routing`` and inference settings using it into ``directory``; the settings' path.

    The inference process listens on a port of its choosing, without metrics, logs
    warnings and worse, and spools usage under ``directory``.
    """
    routing_file = directory / "routing.yaml"
    routing_file.write_text(routing, encoding="utf-8")
    settings = directory / "inference.yaml"
    settings.write_text(
        json.dumps(
            {
                "service": "inference",
                "server": {"port": 0},
                "metrics": {"enabled": False},
                "logging": {"level": "WARNING"},
                "routing": {"file": str(routing_file)},
                "usage": {"spool_dir": str(directory / "spool")},
            }
        ),
        encoding="utf-8",
    )
    return settings


def logged_filters(log: Path) -> list[dict[str, Any]]:
    """The gateway's default chain: an access log written to ``log``, then metrics."""
    return [
        {"name": "access_log", "config": {"output": str(log)}},
        {"name": "metrics"},
    ]


def gateway_settings(
    path: Path,
    inference_port: int,
    filters: list[dict[str, Any]],
    *,
    http_port: int | None = None,
    security: dict[str, Any] | None = None,
) -> Path:
    """Write gateway settings to ``path`` and return it.

    The gateway routes the inference service to the one inference process on
    ``inference_port`` through ``filters``, without metrics, logging warnings and
    worse. ``http_port`` turns on the HTTP edge there; ``security`` sets the
    security section, with the admin store in SQLite next to ``path``.
    """
    gateway: dict[str, Any] = {
        "filters": filters,
        "clusters": {"inference": {"endpoints": [f"127.0.0.1:{inference_port}"]}},
        "routes": [{"match": {"service": INFERENCE}, "cluster": "inference"}],
    }
    settings: dict[str, Any] = {"metrics": {"enabled": False}, "logging": {"level": "WARNING"}}
    if http_port is not None:
        gateway["http"] = {"port": http_port}
    if security is not None:
        gateway["security"] = security
        settings["database_url"] = f"sqlite+aiosqlite:///{path.with_suffix('.db')}"
    settings["gateway"] = gateway
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def with_openai_key(env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``BENCH_OPENAI_KEY``, for an inference process routing to the fake OpenAI."""
    return {**env, "BENCH_OPENAI_KEY": OPENAI_KEY}


def port_of(process: subprocess.Popen[str]) -> int:
    """The port a server started by :meth:`Processes.server` announces on its first line."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PORT "), f"server did not start: {line!r}"
    return int(line.split()[1])


class Processes:
    """The subprocesses of one benchmark, terminated in start order when the block ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for process in self.started:
            process.terminate()
            process.wait(timeout=20)

    def server(
        self, argv: list[str], env: dict[str, str], core: int | None = None
    ) -> subprocess.Popen[str]:
        """Start ``python -m <argv>``, a server that prints ``PORT <n>`` (see :func:`port_of`)."""
        process = subprocess.Popen(
            pinned([sys.executable, "-m", *argv], core),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        return process

    def inference(
        self, settings: Path, env: dict[str, str], core: int | None = None
    ) -> subprocess.Popen[str]:
        """Start the inference process (``bench/inference_server.py``) from ``settings``."""
        return self.server(["bench.inference_server", str(settings)], env, core)

    def fake_openai(self, chunks: int, env: dict[str, str]) -> str:
        """Start the fake OpenAI server streaming ``chunks`` chunks; its base URL."""
        process = self.server(["bench.fake_openai_server", str(chunks)], env)
        return f"http://127.0.0.1:{port_of(process)}/v1"

    def gateway(
        self, settings: Path, port: int, env: dict[str, str], core: int | None = None
    ) -> None:
        """Start a gateway from ``settings`` on ``port`` and wait until it is serving."""
        command = ["serve", "gateway", "--config", str(settings), "--port", str(port)]
        process = subprocess.Popen(
            pinned([sys.executable, "-m", "services.cli", *command], core),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.started.append(process)
        assert asyncio.run(wait_until_serving(f"127.0.0.1:{port}", timeout=30))
