"""``llmgw run``: start every service process on one machine and watch over them.

Each service runs as its own child process (``llmgw serve NAME``), exactly as it
would in a pod. The runner waits until every child answers the standard health
check with SERVING, prints a table of addresses, and on SIGINT/SIGTERM (or when
any child dies) stops all children gracefully, killing any that outlive the grace.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from services.kernel.health_client import check_health, wait_until_serving

GATEWAY = "gateway"
MODELS = "models"
FINETUNING = "finetuning"
INFERENCE = "inference"
LOCAL_MODELS_FILE = Path(__file__).resolve().parents[1] / "config" / "routing.local.yaml"
"""The models of one laptop: the registry is seeded with them and inference follows it."""
FIRST_REQUEST = (
    '{"completion": {"model": "chat", "messages": '
    '[{"role": "ROLE_USER", "content": [{"text": "Hello!"}]}]}}'
)
"""The completion ``make run`` suggests as a first request (JSON of CompleteRequest)."""

BOOTSTRAP_KEY_FILE = Path(".llmgw/admin.key")
"""Where the gateway of ``llmgw run`` writes the API key it creates on an empty database."""
BOOTSTRAP_KEY_VARIABLE = "LLMGW_GATEWAY__SECURITY__BOOTSTRAP_KEY_FILE"

METRICS_PORT_OFFSET = 1000
"""A child's metrics endpoint listens on its gRPC port plus this offset."""

HTTP_PORT_OFFSET = 2000
"""The gateway's OpenAI-compatible HTTP edge listens on its gRPC port plus this offset."""
HTTP_PORT_ENV = "LLMGW_GATEWAY__HTTP__PORT"
FIRST_HTTP_REQUEST = '{"model": "chat", "messages": [{"role": "user", "content": "Hello!"}]}'
"""The Chat Completions body ``make run`` suggests for the HTTP edge."""


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One service process to start."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` of the child's gRPC listener."""
        return f"{self.host}:{self.port}"

    @property
    def metrics_port(self) -> int:
        """Port of the child's Prometheus endpoint."""
        return self.port + METRICS_PORT_OFFSET


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """What ``llmgw run`` starts and where it keeps logs."""

    children: tuple[ChildSpec, ...]
    log_dir: Path
    env: Mapping[str, str]
    config_file: Path | None = None
    bootstrap_key_file: Path = BOOTSTRAP_KEY_FILE
    start_timeout_seconds: float = 60.0
    stop_timeout_seconds: float = 20.0


class _Child:
    def __init__(self, spec: ChildSpec, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.spec = spec
        self.process = process
        self.log = log


class Runner:
    """Starts, watches and stops the children of one ``llmgw run``."""

    def __init__(self, config: RunnerConfig, out: TextIO) -> None:
        self._config = config
        self._out = out
        self._children: list[_Child] = []

    async def run(self) -> int:
        """Run until a signal or a child's death; return the process exit code."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            self._start_children()
            if not await self._wait_serving(stop):
                return 1
            await self._print_table()
            died = await self._watch(stop)
            return 1 if died else 0
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self._stop_children()

    def _start_children(self) -> None:
        self._config.log_dir.mkdir(parents=True, exist_ok=True)
        # the local state folder (default SQLite database, bootstrap key), before any child
        # races to open the database in it
        self._config.bootstrap_key_file.parent.mkdir(parents=True, exist_ok=True)
        for spec in self._config.children:
            log = (self._config.log_dir / f"{spec.name}.log").open("wb")
            argv = [
                sys.executable,
                "-m",
                "services.cli",
                "serve",
                spec.name,
                "--host",
                spec.host,
                "--port",
                str(spec.port),
                "--metrics-port",
                str(spec.metrics_port),
            ]
            if self._config.config_file is not None:
                argv += ["--config", str(self._config.config_file)]
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._child_env(spec),
                start_new_session=True,  # Ctrl-C reaches the runner only; it stops children
            )
            self._children.append(_Child(spec, process, log))

    def _child_env(self, spec: ChildSpec) -> dict[str, str]:
        """The child's environment: the gateway is pointed at its sibling processes and
        creates a first API key on an empty database (unless told otherwise); the
        fine-tuning service and the registry are pointed at each other; the registry is
        seeded with the local models and inference follows the registry, so a version
        registered (or fine-tuned) while running is callable at once."""
        env = dict(self._config.env)
        if spec.name == GATEWAY:
            env.setdefault(BOOTSTRAP_KEY_VARIABLE, str(self._config.bootstrap_key_file))
            env.setdefault(HTTP_PORT_ENV, str(spec.port + HTTP_PORT_OFFSET))
            for sibling in self._config.children:
                if sibling.name != GATEWAY:
                    variable = f"LLMGW_GATEWAY__CLUSTERS__{sibling.name.upper()}__ENDPOINTS"
                    env[variable] = json.dumps([sibling.address])
        siblings = {child.name: child for child in self._config.children}
        if spec.name == FINETUNING and MODELS in siblings:
            env.setdefault("LLMGW_FINETUNING__REGISTRY_ADDRESS", siblings[MODELS].address)
        if spec.name == MODELS and FINETUNING in siblings:
            env.setdefault("LLMGW_REGISTRY__FINETUNING_ADDRESS", siblings[FINETUNING].address)
        if spec.name == MODELS:
            env.setdefault("LLMGW_REGISTRY__SEED_FILE", str(LOCAL_MODELS_FILE))
        if spec.name == INFERENCE and MODELS in siblings:
            env.setdefault("LLMGW_ROUTING__REGISTRY_ADDRESS", siblings[MODELS].address)
        return env

    async def _wait_serving(self, stop: asyncio.Event) -> bool:
        waits = {
            child.spec.name: asyncio.create_task(
                wait_until_serving(child.spec.address, timeout=self._config.start_timeout_seconds)
            )
            for child in self._children
        }
        stopper = asyncio.create_task(stop.wait())
        pending = set(waits.values())
        while pending:
            _, pending = await asyncio.wait(
                pending | {stopper}, timeout=0.2, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stopper)
            if stop.is_set() or self._dead_child() is not None:
                break
        stopper.cancel()
        for task in pending:
            task.cancel()
        failed = [name for name, task in waits.items() if not task.done() or not task.result()]
        if not failed:
            return True
        dead = self._dead_child()
        if dead is not None:
            self._report_death(dead)
        elif not stop.is_set():
            self._out.write(f"llmgw: not SERVING in time: {', '.join(failed)}\n")
        return False

    async def _print_table(self) -> None:
        rows = [("SERVICE", "gRPC ADDRESS", "METRICS", "HEALTH")]
        for child in self._children:
            status = await check_health(child.spec.address)
            metrics = f"http://{child.spec.host}:{child.spec.metrics_port}/metrics"
            rows.append((child.spec.name, child.spec.address, metrics, status))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            self._out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            self._out.write("\n")
        gateway = next((c for c in self._children if c.spec.name == GATEWAY), self._children[0])
        key_file = Path(
            self._config.env.get(BOOTSTRAP_KEY_VARIABLE, self._config.bootstrap_key_file)
        )
        if await asyncio.to_thread(key_file.exists):
            key_note = f"API key: in {key_file} (every scope; shown nowhere else)\n"
        else:
            key_note = (
                f"API key: {key_file} is missing and the database already has keys; use one "
                "of yours, or remove the database to get a new bootstrap key\n"
            )
        http_base = f"http://{gateway.spec.host}:{self._http_port(gateway.spec)}/v1"
        self._out.write(
            f"\nlogs: {self._config.log_dir}/<service>.log\n"
            + key_note
            + "first request: a completion through the gateway (the API is on server "
            "reflection):\n"
            "  .venv/bin/buf curl --protocol grpc --http2-prior-knowledge "
            f'-H "authorization: Bearer $(cat {key_file})" \\\n'
            f"    -d '{FIRST_REQUEST}' \\\n"
            f"    http://{gateway.spec.address}/llmgw.inference.v1.InferenceService/Complete\n"
            "or over the OpenAI-compatible HTTP edge (OpenAI SDKs: base URL "
            f"{http_base}):\n"
            f"  curl {http_base}/chat/completions \\\n"
            f'    -H "authorization: Bearer $(cat {key_file})" \\\n'
            f"    -H 'content-type: application/json' -d '{FIRST_HTTP_REQUEST}'\n"
            f"health: .venv/bin/llmgw health {gateway.spec.address}\n"
            "press Ctrl-C to stop\n"
        )
        self._out.flush()

    def _http_port(self, spec: ChildSpec) -> str:
        return self._child_env(spec).get(HTTP_PORT_ENV, str(spec.port + HTTP_PORT_OFFSET))

    async def _watch(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            dead = self._dead_child()
            if dead is not None:
                self._report_death(dead)
                return True
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                continue
        return False

    def _dead_child(self) -> _Child | None:
        return next((c for c in self._children if c.process.poll() is not None), None)

    def _report_death(self, child: _Child) -> None:
        child.log.flush()
        tail = _tail(self._config.log_dir / f"{child.spec.name}.log", lines=20)
        self._out.write(
            f"llmgw: {child.spec.name} exited with code {child.process.returncode}; "
            f"last lines of its log:\n{tail}\n"
        )

    async def _stop_children(self) -> None:
        for child in self._children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + self._config.stop_timeout_seconds
        for child in self._children:
            while child.process.poll() is None:
                if asyncio.get_running_loop().time() > deadline:
                    child.process.kill()
                    child.process.wait()
                    break
                await asyncio.sleep(0.05)
            child.log.close()
        if self._children:
            codes = ", ".join(f"{c.spec.name}={c.process.returncode}" for c in self._children)
            self._out.write(f"llmgw: stopped ({codes})\n")
            self._out.flush()
        self._children.clear()


def plan_children(
    names: Sequence[str], host: str, ports: Mapping[str, int]
) -> tuple[ChildSpec, ...]:
    """One :class:`ChildSpec` per service name, on its port from ``ports``."""
    return tuple(ChildSpec(name, host, ports[name]) for name in names)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def default_env() -> dict[str, str]:
    """The environment children inherit: the runner's own, unbuffered."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
