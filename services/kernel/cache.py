"""The Redis client: connection with bounded timeouts, a health probe, Lua scripts.

Rate limits, budgets and shared health live in Redis and must hold across
replicas, so they are written as Lua scripts that run atomically on the
server. :class:`LuaScript` runs one by SHA (``EVALSHA``) and, when the server
does not know it (restart, failover, ``SCRIPT FLUSH``), loads it and retries
once, transparently. Valkey and Redis behave the same here.

Clients return raw ``bytes``; callers decode what they store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, KeyT

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """How to reach Redis: a ``redis://`` or ``rediss://`` URL plus client limits.

    Timeouts are in seconds and bound every command, so a stuck Redis turns
    into an error the caller can handle (fail open or closed) instead of a hang.
    At most ``max_connections`` are open; further callers wait up to
    ``pool_timeout_seconds`` for a free one.
    """

    url: str
    socket_timeout_seconds: float = 2.0
    connect_timeout_seconds: float = 2.0
    health_check_interval_seconds: float = 15.0
    max_connections: int = 64
    pool_timeout_seconds: float = 2.0
    client_name: str | None = "llmgw"


async def connect_redis(config: RedisConfig) -> redis.Redis:
    """Open a pooled client for ``config`` and check it with ``PING``.

    The client owns its pool: ``await client.aclose()`` closes both.

    Raises :class:`redis.exceptions.RedisError` (closing the client first)
    when the server does not answer within the timeouts.
    """
    pool = redis.BlockingConnectionPool.from_url(
        config.url,
        max_connections=config.max_connections,
        timeout=config.pool_timeout_seconds,
        socket_timeout=config.socket_timeout_seconds,
        socket_connect_timeout=config.connect_timeout_seconds,
        health_check_interval=config.health_check_interval_seconds,
        client_name=config.client_name,
        decode_responses=False,
    )
    client = redis.Redis.from_pool(pool)
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def is_healthy(client: redis.Redis) -> bool:
    """``True`` when the server answers ``PING``; never raises a Redis error."""
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False


class LuaScript(Generic[T]):
    """One Lua script bound to a client, run atomically by SHA.

    ``decode`` turns the raw reply (``int``, ``bytes``, ``list`` or ``None``
    as Redis returns it, hence typed ``Any``) into ``T``; it is where a
    script's reply gets its type, e.g. ``LuaScript(client, SOURCE, decode=int)``.

    Scripts must name every key they touch in ``keys`` (Redis Cluster routes
    by them). Calls are safe to make concurrently.
    """

    def __init__(self, client: redis.Redis, source: str, decode: Callable[[Any], T]) -> None:
        """Prepare ``source`` for ``client``; nothing is sent until the first call."""
        self._script = client.register_script(source)
        self._decode = decode

    @property
    def sha(self) -> str:
        """The SHA-1 the server knows the script by."""
        return str(self._script.sha)

    async def __call__(self, keys: Sequence[KeyT] = (), args: Sequence[EncodableT] = ()) -> T:
        """Run the script with ``KEYS = keys`` and ``ARGV = args`` and decode the reply.

        Reloads the script and retries once when the server answers NOSCRIPT.
        Script errors raise :class:`redis.exceptions.ResponseError`.
        """
        reply = await self._script(keys=list(keys), args=list(args))
        return self._decode(reply)
