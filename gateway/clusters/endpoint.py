"""One upstream address of a cluster, its channel, and the state the balancers read."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import grpc
from grpc import aio

_MAX_MULTICALLABLES = 1024
"""Callables kept per endpoint (method names of services unknown to the gateway are
the callers', so the cache is bounded; past it a callable is made per call)."""
_READY = grpc.ChannelConnectivity.READY
_FAILED = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
_Callable = TypeVar("_Callable")


class Endpoint:
    """An upstream ``host:port`` with its channel.

    ``in_flight`` counts the calls in progress (least-request balancing reads it);
    ``healthy`` is the verdict of active health checking; ``ejected_until`` is set by
    outlier detection (a ``loop.time()``; 0.0 when not ejected); ``removed`` is set
    when the cluster dropped it.
    """

    __slots__ = (
        "_multicallables",
        "address",
        "channel",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "health_streak",
        "healthy",
        "in_flight",
        "removed",
    )

    def __init__(self, address: str, channel: aio.Channel) -> None:
        self.address = address
        self.channel = channel
        self.in_flight = 0
        self.healthy = True
        self.health_streak = 0
        self.consecutive_failures = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.removed = False
        self._multicallables: dict[tuple[str, str], Any] = {}

    def available(self, now: float) -> bool:
        """True when the endpoint may take new calls at ``now`` (a ``loop.time()``)."""
        return self.healthy and self.ejected_until <= now

    def replace_channel(self, channel: aio.Channel) -> aio.Channel:
        """Use ``channel`` from now on; returns the previous one for the caller to close."""
        previous, self.channel = self.channel, channel
        self._multicallables.clear()
        return previous

    def unary_unary(self, method: str) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """A raw-bytes unary callable of ``method`` on the current channel."""
        key = ("uu", method)
        found = self._multicallables.get(key)
        if found is None:
            found = self._remember(key, self.channel.unary_unary(method))
        return found

    def unary_stream(self, method: str) -> aio.UnaryStreamMultiCallable[bytes, bytes]:
        """A raw-bytes server-streaming callable of ``method`` on the current channel."""
        key = ("us", method)
        found = self._multicallables.get(key)
        if found is None:
            found = self._remember(key, self.channel.unary_stream(method))
        return found

    def stream_unary(self, method: str) -> aio.StreamUnaryMultiCallable[bytes, bytes]:
        """A raw-bytes client-streaming callable of ``method`` on the current channel."""
        key = ("su", method)
        found = self._multicallables.get(key)
        if found is None:
            found = self._remember(key, self.channel.stream_unary(method))
        return found

    def stream_stream(self, method: str) -> aio.StreamStreamMultiCallable[bytes, bytes]:
        """A raw-bytes bidirectional callable of ``method`` on the current channel."""
        key = ("ss", method)
        found = self._multicallables.get(key)
        if found is None:
            found = self._remember(key, self.channel.stream_stream(method))
        return found

    def _remember(self, key: tuple[str, str], callable_: _Callable) -> _Callable:
        if len(self._multicallables) < _MAX_MULTICALLABLES:
            self._multicallables[key] = callable_
        return callable_

    async def connect(self, timeout: float) -> bool:
        """Whether the channel is (or within ``timeout`` seconds becomes) connected.

        False at once when the channel is in transient failure: a call sent now would
        not reach the upstream, so the caller should try another endpoint.
        """
        channel = self.channel
        state = channel.get_state(try_to_connect=True)
        if state is _READY:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while state not in _FAILED:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                return False
            state = channel.get_state(try_to_connect=True)
            if state is _READY:
                return True
        return False

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r}, healthy={self.healthy}, in_flight={self.in_flight})"
