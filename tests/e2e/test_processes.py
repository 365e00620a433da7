"""The real processes: ``llmgw serve`` drains on SIGTERM, ``llmgw run`` starts them all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.kernel.health_client import UNREACHABLE, check_health, wait_until_serving
from services.kernel.process import service_registry
from services.runner import FIRST_HTTP_REQUEST, FIRST_REQUEST

ROOT = Path(__file__).resolve().parents[2]


def _free_port_block(size: int) -> int:
    """A first port such that ``size`` consecutive ports (and +1000) look free."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + size + 1000 >= 65535:
            continue
        candidates = [base + i for i in range(size)] + [base + 1000 + i for i in range(size)]
        if all(_is_free(port) for port in candidates):
            return base
    raise RuntimeError("no free block of ports")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def _llmgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


async def test_serve_reports_serving_and_drains_on_sigterm(tmp_path: Path) -> None:
    port = _free_port_block(1)
    metrics_port = port + 1000
    config = tmp_path / "inference.yaml"
    config.write_text("routing:\n  max_retries: 1\ncache:\n  ttl_seconds: 60\n")
    process = subprocess.Popen(
        _llmgw(
            "serve",
            "inference",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--config",
            str(config),
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LLMGW_CONFIG": ""},
    )
    try:
        address = f"127.0.0.1:{port}"
        assert await wait_until_serving(address, timeout=30)
        assert await check_health(address, "llmgw.inference.v1.InferenceService") == "SERVING"
        async with aio.insecure_channel(address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            request = inference_pb2.CompletionRequest(
                model="chat",
                messages=[
                    inference_pb2.Message(
                        role=common_pb2.ROLE_USER,
                        content=[inference_pb2.ContentPart(text="hello")],
                    )
                ],
            )
            response = await stub.Complete(
                inference_pb2.CompleteRequest(completion=request), timeout=5
            )
            assert response.result.served_by.provider == "simulated"
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.Complete(inference_pb2.CompleteRequest(), timeout=5)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            unknown = inference_pb2.CompleteRequest(completion=request)
            unknown.completion.model = "no-such-model"
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.Complete(unknown, timeout=5)
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        metrics = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{metrics_port}/metrics")
        assert "llmgw_inference_requests_total{" in metrics
        assert 'llmgw_grpc_server_handled_total{grpc_code="OK"' in metrics
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 20)
        output = process.stdout.read().decode() if process.stdout else ""
        assert code == 0, output
        assert '"msg":"draining"' in output and '"msg":"stopped"' in output
        assert await check_health(address, timeout=0.5) == UNREACHABLE
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


Credential = tuple[tuple[str, str], ...]


async def _first_grpc_request(
    gateway: str, credential: Credential
) -> inference_pb2.CompleteResponse:
    """The hint's first request through the gateway, which refuses it without ``credential``."""
    async with aio.insecure_channel(gateway) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = json_format.Parse(FIRST_REQUEST, inference_pb2.CompleteRequest())
        # Every process starts at once: the gateway may be SERVING before its channel
        # to inference has connected (it then backs off for up to a second or two).
        for _ in range(50):
            try:
                response = await stub.Complete(request, metadata=credential, timeout=10)
                break
            except aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the gateway never reached inference")
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.Complete(request, timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    return response


async def _first_http_request(lines: list[str], credential: Credential) -> Any:
    """The hint's first request over the HTTP edge, at the URL the hint shows."""
    http_hint = next(line for line in lines if "/chat/completions" in line)
    http_url = http_hint.split()[1]
    assert any(FIRST_HTTP_REQUEST in line for line in lines)
    async with (
        aiohttp.ClientSession() as session,
        session.post(http_url, data=FIRST_HTTP_REQUEST, headers=dict(credential)) as reply,
    ):
        assert reply.status == 200, await reply.text()
        answer = await reply.json()
    return answer


async def test_run_starts_every_service_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    names = service_registry().names()
    base = _free_port_block(len(names))
    process = subprocess.Popen(
        _llmgw("run", "--base-port", str(base), "--log-dir", str(tmp_path / "logs")),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any("press Ctrl-C" in line for line in lines):
            line = await asyncio.to_thread(process.stdout.readline)
            assert line, "llmgw run exited early:\n" + "".join(lines)
            lines.append(line)
        table = {line.split()[0]: line.split() for line in lines if line.split()[:1] != []}
        for index, name in enumerate(sorted(names)):
            address = f"127.0.0.1:{base + index}"
            assert table[name][1] == address
            assert table[name][3] == "SERVING"
            assert await check_health(address) == "SERVING"
        gateway = table["gateway"][1]
        key_line = next(line for line in lines if line.startswith("API key: in "))
        key_file = ROOT / key_line.removeprefix("API key: in ").split(" (")[0]
        credential = (("authorization", f"Bearer {key_file.read_text().strip()}"),)
        response = await _first_grpc_request(gateway, credential)
        assert response.result.served_by.provider == "simulated"
        assert any(FIRST_REQUEST in line for line in lines), "the hint shows the request"
        answer = await _first_http_request(lines, credential)
        assert answer["choices"][0]["message"]["content"]
        process.send_signal(signal.SIGINT)
        rest = await asyncio.to_thread(process.communicate, None, 30)
        assert process.returncode == 0, "".join(lines) + rest[0]
        stopped = next(line for line in rest[0].splitlines() if "stopped" in line)
        for name in names:
            assert f"{name}=0" in stopped
        for index in range(len(names)):
            assert await check_health(f"127.0.0.1:{base + index}", timeout=0.5) == UNREACHABLE
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
