"""Server processes that fail to start are reported with their log and cleaned up."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.harness.process import ServerProcess, ServerSpec, ServerStartError, free_port


def spec(tmp_path: Path, code: str, timeout: float = 5.0) -> ServerSpec:
    """A fake server that is ready once it printed ``ready``."""
    log_path = tmp_path / "fake.log"
    return ServerSpec(
        name="fake",
        url=f"fake://127.0.0.1:{free_port()}",
        argv=(sys.executable, "-c", code),
        probe=lambda: "ready" in log_path.read_text(),
        log_path=log_path,
        start_timeout_seconds=timeout,
        stop_timeout_seconds=0.5,
    )


def test_early_exit_is_reported_with_the_log(tmp_path: Path) -> None:
    server = ServerProcess(spec(tmp_path, "print('cannot bind', flush=True); exit(3)"))

    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*cannot bind"):
        server.start()


def test_probe_timeout_stops_the_process(tmp_path: Path) -> None:
    code = "import time; print('starting', flush=True); time.sleep(60)"
    server = ServerProcess(spec(tmp_path, code, timeout=0.3))

    with pytest.raises(ServerStartError, match=r"(?s)not ready.*starting"):
        server.start()
    assert server.pid is None


def test_ready_server_is_stopped_even_when_it_ignores_the_signal(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    server = ServerProcess(spec(tmp_path, code))
    server.start()
    assert server.startup_seconds is not None
    assert server.pid is not None

    server.stop()
    assert server.pid is None
