"""What the kernel adds to every call: the interceptor (request id, metrics, error mapping).

Both servers run in this process on loopback and serve the same raw-bytes handler;
the baseline is a bare ``grpc.aio`` server, the subject a :class:`KernelServer`.
Calls alternate between the two in rounds so that machine noise hits both alike.
The result is a ratio written to ``bench/results/kernel_overhead.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from bench.measure import percentile
from services.kernel.config import ServerSettings
from services.kernel.server import KernelServer, ServiceApp, ServiceRegistration

ROUNDS = 20
CALLS_PER_ROUND = 200
MAX_P50_RATIO = 1.5
RESULT = Path(__file__).parent / "results" / "kernel_overhead.json"


async def _echo(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "bench.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )


async def _timed_calls(channel: aio.Channel, count: int) -> list[float]:
    call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/bench.v1.Echo/Echo")
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call(b"x" * 256)
        samples.append(time.perf_counter() - started)
    return samples


@pytest.mark.slow
async def test_kernel_interceptor_overhead_ratio() -> None:
    bare = aio.server()
    bare.add_generic_rpc_handlers((_handler(),))
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()
    generic = _handler()
    app = ServiceApp(
        name="bench",
        services=(
            ServiceRegistration("bench.v1.Echo", lambda s: s.add_generic_rpc_handlers((generic,))),
        ),
    )
    kernel = KernelServer(app, ServerSettings(port=0), CollectorRegistry())
    await kernel.start()
    bare_samples: list[float] = []
    kernel_samples: list[float] = []
    async with (
        aio.insecure_channel(f"127.0.0.1:{bare_port}") as bare_channel,
        aio.insecure_channel(f"127.0.0.1:{kernel.port}") as kernel_channel,
    ):
        await _timed_calls(bare_channel, 100)  # warm-up
        await _timed_calls(kernel_channel, 100)
        for _ in range(ROUNDS):
            bare_samples += await _timed_calls(bare_channel, CALLS_PER_ROUND)
            kernel_samples += await _timed_calls(kernel_channel, CALLS_PER_ROUND)
    await kernel.drain(grace_seconds=0)
    await bare.stop(0)

    bare_p50, kernel_p50 = percentile(bare_samples, 50), percentile(kernel_samples, 50)
    result = {
        "calls_each": len(bare_samples),
        "p50_ratio": kernel_p50 / bare_p50,
        "p99_ratio": percentile(kernel_samples, 99) / percentile(bare_samples, 99),
        "added_p50_microseconds": (kernel_p50 - bare_p50) * 1e6,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert result["p50_ratio"] < MAX_P50_RATIO, result
