"""Run one server binary for the test session: free port, log file, readiness, clean stop.

A :class:`ServerProcess` starts a command in its own process group with its
output captured to a log file, polls a readiness probe until it answers or a
timeout passes, and on :meth:`ServerProcess.stop` sends the server's stop
signal, waits, then kills the group. On Linux the server also receives its
stop signal if the test process dies without cleaning up, so no server
outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_LOG_TAIL_CHARS = 4000


class ServerStartError(RuntimeError):
    """A server did not become ready; the message includes the end of its log."""


@dataclass(frozen=True, slots=True)
class RunAs:
    """The unprivileged account a server runs as when the tests run as root."""

    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What to run, where it will answer (``url``) and how to tell it is ready.

    ``probe`` returns ``True`` once the server answers real requests; it may
    raise, which counts as "not yet". ``stop_signal`` asks for a fast, clean
    shutdown (PostgreSQL wants ``SIGINT``).
    """

    name: str
    url: str
    argv: Sequence[str]
    probe: Callable[[], bool]
    log_path: Path
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    run_as: RunAs | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    start_timeout_seconds: float = 20.0
    stop_timeout_seconds: float = 10.0
    poll_interval_seconds: float = 0.02


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, limit: int = _LOG_TAIL_CHARS) -> str:
    """The last ``limit`` characters of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return text[-limit:]


class ServerProcess:
    """One started server; use :meth:`start`, then :meth:`stop` in a ``finally``."""

    def __init__(self, spec: ServerSpec) -> None:
        """Remember ``spec``; nothing runs before :meth:`start`."""
        self._spec = spec
        self._process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def spec(self) -> ServerSpec:
        """What this process runs."""
        return self._spec

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    def start(self) -> float:
        """Start the server and wait until its probe succeeds; return the seconds it took.

        Raises :class:`ServerStartError` (after stopping the process) when the
        server exits early or the probe keeps failing past the timeout.
        """
        spec = self._spec
        began = time.monotonic()
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                _with_parent_death_signal(spec.argv, spec.stop_signal),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=spec.cwd,
                env=None if spec.env is None else dict(spec.env),
                start_new_session=True,
                user=None if spec.run_as is None else spec.run_as.uid,
                group=None if spec.run_as is None else spec.run_as.gid,
                extra_groups=None if spec.run_as is None else [],
            )
        deadline = began + spec.start_timeout_seconds
        last_error: BaseException | None = None
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise ServerStartError(
                    f"{spec.name} exited with code {code} during start-up; "
                    f"log {spec.log_path}:\n{log_tail(spec.log_path)}"
                )
            try:
                if spec.probe():
                    break
            except Exception as exc:
                last_error = exc
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{spec.name} not ready after {spec.start_timeout_seconds:.0f}s "
                    f"(last probe error: {last_error!r}); log {spec.log_path}:\n"
                    f"{log_tail(spec.log_path)}"
                )
            time.sleep(spec.poll_interval_seconds)
        self.startup_seconds = time.monotonic() - began
        return self.startup_seconds

    def stop(self) -> None:
        """Ask the server to stop, wait for it, kill its process group if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        spec = self._spec
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(spec.stop_signal)
        try:
            process.wait(timeout=spec.stop_timeout_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=spec.stop_timeout_seconds)
        # Children (e.g. PostgreSQL backends) left behind by an unclean exit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def start_with_retries(make_spec: Callable[[], ServerSpec], attempts: int = 3) -> ServerProcess:
    """Start a server built by ``make_spec``, retrying with a fresh spec on failure.

    A fresh spec means a fresh free port, which covers the race where another
    process takes the port between :func:`free_port` and the server's bind.
    """
    error: ServerStartError | None = None
    for _ in range(attempts):
        server = ServerProcess(make_spec())
        try:
            server.start()
        except ServerStartError as exc:
            error = exc
            continue
        return server
    assert error is not None
    raise error


def _with_parent_death_signal(argv: Sequence[str], sig: signal.Signals) -> list[str]:
    """Prefix ``argv`` so Linux sends ``sig`` to the server when the test process dies.

    Uses util-linux ``setpriv`` (which then execs the server) when present;
    without it the server is only stopped by :meth:`ServerProcess.stop`.
    """
    setpriv = shutil.which("setpriv")
    if not sys.platform.startswith("linux") or setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", sig.name.removeprefix("SIG"), "--", *argv]


def unprivileged_account(name: str = "nobody") -> RunAs | None:
    """``name``'s ids when running as root (for servers that refuse root), else ``None``."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(name)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)
