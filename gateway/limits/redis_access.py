"""The limit filters' Redis: client settings, outage handling and background writes.

A filter opens its client at start. When Redis does not answer (at start or
later), the filter decides as configured by ``on_redis_error``:

- ``fail_open``: calls go on, counted by an in-process limiter (rate limits) or
  unchecked (budgets);
- ``fail_closed``: calls end with UNAVAILABLE.

After an error the filter leaves Redis alone for ``retry_after_seconds`` (calls
then take the configured path at once instead of each waiting for a timeout), and
a client that could not connect at start is retried in the background.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as redis
from pydantic import Field
from redis.exceptions import RedisError

from services.kernel.cache import RedisConfig, connect_redis
from services.kernel.config import Section
from services.kernel.spend import DEFAULT_NAMESPACE

_log = logging.getLogger("llmgw.gateway.limits")

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
"""What a Redis call raises when the server is unreachable or too slow."""


class OnRedisError(enum.Enum):
    """What a limit filter does while Redis is unreachable."""

    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


class RedisLimitsConfig(Section):
    """Where the counters live and what to do when they cannot be read."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field(default=DEFAULT_NAMESPACE, min_length=1)
    timeout_seconds: float = Field(default=0.25, gt=0)
    max_connections: int = Field(default=64, gt=0)
    on_redis_error: OnRedisError = OnRedisError.FAIL_OPEN
    retry_after_seconds: float = Field(default=1.0, ge=0)

    def redis_config(self, client_name: str) -> RedisConfig:
        """The client config: every command and connect bounded by ``timeout_seconds``."""
        return RedisConfig(
            url=self.redis_url,
            socket_timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=self.timeout_seconds,
            max_connections=self.max_connections,
            pool_timeout_seconds=self.timeout_seconds,
            client_name=client_name,
        )


class RedisLink:
    """One filter's Redis client, with the outage bookkeeping of the module docstring."""

    def __init__(self, config: RedisLimitsConfig, client_name: str) -> None:
        self._config = config
        self._redis_config = config.redis_config(client_name)
        self._client: redis.Redis | None = None
        self._down_until = 0.0
        self._connecting: asyncio.Task[None] | None = None

    @property
    def client(self) -> redis.Redis | None:
        """The client when Redis is believed reachable, else None (decide without it)."""
        if self._client is None or time.monotonic() < self._down_until:
            return None
        return self._client

    def failed(self) -> None:
        """Note a Redis error: leave Redis alone for ``retry_after_seconds``."""
        self._down_until = time.monotonic() + self._config.retry_after_seconds

    async def start(self) -> redis.Redis | None:
        """Connect; when Redis is down, keep retrying in the background and return None."""
        try:
            self._client = await connect_redis(self._redis_config)
        except REDIS_ERRORS as error:
            _log.warning("limits: Redis unreachable at start, retrying: %s", error)
            self._connecting = asyncio.create_task(self._connect_later())
        return self._client

    async def _connect_later(self) -> None:
        while self._client is None:
            await asyncio.sleep(max(self._config.retry_after_seconds, 0.05))
            try:
                self._client = await connect_redis(self._redis_config)
            except REDIS_ERRORS:
                continue

    async def stop(self) -> None:
        """Stop reconnecting and close the client."""
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class BackgroundWrites:
    """Writes scheduled from synchronous hooks, tracked so that stop waits for them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, write: Coroutine[Any, Any, None]) -> None:
        """Run ``write`` now in the background; its errors are logged, never raised."""
        task = asyncio.get_running_loop().create_task(_logged(write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every scheduled write to finish."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _logged(write: Coroutine[Any, Any, None]) -> None:
    try:
        await write
    except Exception:
        _log.exception("limits: background write failed")
