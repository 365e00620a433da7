"""Follows the registry's ``WatchRegistry`` stream and keeps the router's table current.

:class:`RegistryWatch` runs two tasks while entered:

* the *follower* reads the stream into a :class:`~.mirror.RegistryMirror`. A
  snapshot replaces the mirror. A change is applied only when its revision is
  exactly one above the mirror's: a revision at or below it was applied already
  and is skipped, so no change is applied twice; a larger one is a gap, and so
  is a change before any snapshot or one the mirror cannot apply: the mirror is
  marked stale and the stream is reopened from revision 0, which starts with a
  fresh snapshot. When the stream breaks or ends it is reopened after a
  full-jitter backoff with ``after_revision`` set to the mirror's revision, so
  the registry sends exactly the changes after it (or a snapshot when it no
  longer holds them). The backoff starts over once a stream delivered a message.
* the *publisher* hands the mirror to the sink (``Router.replace_table``) when
  it changed, then waits ``batch_seconds`` so a burst of changes costs one table
  build per batch. Requests already running keep the table they started on.

A message of a kind this client does not know is ignored. Until a stream
delivers again, the last published table keeps serving. The channel is
plaintext (the registry is reached inside the cluster network).
:meth:`RegistryWatch.wait_ready` returns once the first snapshot is published.
What happens is reported to :class:`WatchListener` objects (metrics, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from grpc import aio

from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.inference.routing.mirror import ChangeError, RegistryMirror
from services.kernel.config import ServerSettings

_log = logging.getLogger("llmgw.inference.routing")

TableSink = Callable[[models_pb2.RegistrySnapshot], object]
"""Takes a whole snapshot to serve from now on (``Router.replace_table``)."""

ChannelOption = tuple[str, int | str]


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """Where the registry is and how to follow it (see the module docstring).

    ``channel_options`` are grpc core options of the channel to ``address``.
    """

    address: str
    reconnect_base_seconds: float = 0.1
    reconnect_max_seconds: float = 5.0
    batch_seconds: float = 0.05
    channel_options: tuple[ChannelOption, ...] = ()

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("the registry address is required")
        if self.reconnect_base_seconds <= 0 or self.reconnect_max_seconds <= 0:
            raise ValueError("reconnect backoff times must be > 0")
        if self.batch_seconds < 0:
            raise ValueError("batch_seconds must be >= 0")


def channel_options(server: ServerSettings) -> tuple[ChannelOption, ...]:
    """Channel options matching this process's own limits and keepalive."""
    return (
        ("grpc.max_receive_message_length", server.max_receive_message_bytes),
        ("grpc.keepalive_time_ms", int(server.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(server.keepalive_timeout_seconds * 1000)),
    )


class WatchListener(Protocol):
    """Told what the watch does; every method is called on the event loop and must not block."""

    def snapshot_applied(self, revision: int) -> None:
        """A snapshot at ``revision`` replaced the mirror."""

    def change_applied(self, revision: int) -> None:
        """The change of ``revision`` was applied to the mirror (once per revision)."""

    def change_skipped(self, revision: int) -> None:
        """The change of ``revision`` was received again and ignored."""

    def table_published(self, revision: int) -> None:
        """The router now serves the registry as of ``revision``."""

    def stream_lost(self, reason: str) -> None:
        """The stream ended; ``reason`` is a gRPC code name, ``ENDED``, ``RESYNC`` or ``ERROR``."""


class _Resync(Exception):
    """The stream cannot be continued; a fresh snapshot is needed."""


class RegistryWatch:
    """Keeps a sink fed with the registry's current state; an async context manager."""

    def __init__(
        self,
        config: WatchConfig,
        sink: TableSink,
        listeners: Sequence[WatchListener] = (),
        *,
        rng: random.Random | None = None,
    ) -> None:
        """Follow ``config.address`` into ``sink`` once entered; nothing is opened before."""
        self._config = config
        self._sink = sink
        self._listeners = tuple(listeners)
        self._rng = rng or random.Random()
        self._mirror = RegistryMirror()
        self._dirty = asyncio.Event()
        self._ready = asyncio.Event()
        self._published = 0
        self._delivered = False
        self._channel: aio.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def published_revision(self) -> int:
        """The registry revision the sink serves (0 before the first snapshot)."""
        return self._published

    async def wait_ready(self, timeout: float) -> None:
        """Return once the first snapshot is published; TimeoutError after ``timeout`` s."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def __aenter__(self) -> RegistryWatch:
        """Open the channel and start following."""
        config = self._config
        # The channel's own reconnect backoff must not outgrow the watch's.
        base_ms = max(1, int(config.reconnect_base_seconds * 1000))
        options = [
            *config.channel_options,
            ("grpc.initial_reconnect_backoff_ms", base_ms),
            ("grpc.min_reconnect_backoff_ms", base_ms),
            (
                "grpc.max_reconnect_backoff_ms",
                max(base_ms, int(config.reconnect_max_seconds * 1000)),
            ),
        ]
        self._channel = aio.insecure_channel(config.address, options=options)
        stub = models_pb2_grpc.ModelRegistryServiceStub(self._channel)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow_forever(stub), name="registry-watch-follow"),
            loop.create_task(self._publish_forever(), name="registry-watch-publish"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop following and close the channel; the last published table stays."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def _follow_forever(self, stub: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> None:
        failures = 0
        while True:
            self._delivered = False
            try:
                await self._follow(stub)
                reason = "ENDED"
            except aio.AioRpcError as exc:
                reason = exc.code().name
                _log.warning("registry watch lost: %s %s", reason, exc.details())
            except _Resync as exc:
                reason = "RESYNC"
                self._mirror.invalidate()
                _log.warning("registry watch resyncing: %s", exc)
            except Exception:
                reason = "ERROR"
                _log.exception("registry watch failed")
            for listener in self._listeners:
                listener.stream_lost(reason)
            failures = 0 if self._delivered else failures + 1
            await asyncio.sleep(self._backoff(failures))

    async def _follow(self, stub: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> None:
        """Read one stream until it ends, noting in ``_delivered`` that a message came."""
        after = self._mirror.revision if self._mirror.synced else 0
        call = stub.WatchRegistry(models_pb2.WatchRegistryRequest(after_revision=after))
        try:
            async for message in call:
                self._delivered = True
                self._receive(message)
        finally:
            call.cancel()

    def _receive(self, message: models_pb2.WatchRegistryResponse) -> None:
        mirror = self._mirror
        event = message.WhichOneof("event")
        if event == "snapshot":
            if mirror.synced and message.revision < mirror.revision:
                _log.warning(
                    "registry snapshot at revision %d is older than the applied %d",
                    message.revision,
                    mirror.revision,
                )
            mirror.reset(message.revision, message.snapshot)
            for listener in self._listeners:
                listener.snapshot_applied(message.revision)
        elif event == "change":
            if not mirror.synced:
                raise _Resync(f"change {message.revision} before a snapshot")
            if message.revision <= mirror.revision:
                for listener in self._listeners:
                    listener.change_skipped(message.revision)
                return
            if message.revision != mirror.revision + 1:
                raise _Resync(f"gap: change {message.revision} after {mirror.revision}")
            try:
                mirror.apply(message.revision, message.change)
            except ChangeError as exc:
                raise _Resync(str(exc)) from exc
            for listener in self._listeners:
                listener.change_applied(message.revision)
        else:
            _log.warning("registry watch message of unknown kind at %d ignored", message.revision)
            return
        self._dirty.set()

    async def _publish_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            revision = self._mirror.revision
            try:
                self._sink(self._mirror.snapshot())
            except Exception:
                _log.exception("routing table of registry revision %d not applied", revision)
            else:
                self._published = revision
                self._ready.set()
                for listener in self._listeners:
                    listener.table_published(revision)
            if self._config.batch_seconds:
                await asyncio.sleep(self._config.batch_seconds)

    def _backoff(self, failures: int) -> float:
        """Full jitter: ``uniform(0, min(max, base * 2**failures))``."""
        config = self._config
        ceiling = min(
            config.reconnect_max_seconds,
            config.reconnect_base_seconds * (2.0 ** min(failures, 32)),
        )
        return self._rng.uniform(0.0, ceiling)
