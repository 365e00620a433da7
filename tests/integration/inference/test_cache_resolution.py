"""The response cache follows the routing table: a moved alias is a new cache key."""

from __future__ import annotations

import redis.asyncio as aioredis

from llmgw.models.v1 import models_pb2
from services.inference.cache import CacheConfig, CachingEngine
from services.inference.engine import CallContext
from services.inference.routing import Router
from tests.unit.inference.routing_support import FAST_RETRIES, adapters, request, snapshot, version


def _table(target: str) -> models_pb2.RegistrySnapshot:
    return snapshot(
        versions=[
            version("bot", "1", provider="simulated"),
            version("bot", "2", provider="simulated"),
        ],
        aliases=[{"model": "bot", "alias": "production", "version": target}],
    )


async def test_moving_an_alias_does_not_serve_the_old_versions_answers(
    redis_url: str, redis_prefix: str
) -> None:
    router = await Router.create(_table("1"), FAST_RETRIES, adapters=adapters())
    client = aioredis.Redis.from_url(redis_url)
    engine = CachingEngine(router, client, CacheConfig(key_prefix=f"{redis_prefix}cache:"))
    try:
        ask = request("bot@production", "the same question")
        first = await engine.complete(ask, CallContext("c-1"))
        again = await engine.complete(ask, CallContext("c-2"))
        assert (first.cached, again.cached) == (False, True)
        assert again.served_by.model_version == "1"

        router.replace_table(_table("2"))
        moved = await engine.complete(ask, CallContext("c-3"))
        assert not moved.cached
        assert moved.served_by.model_version == "2"
        assert (await engine.complete(ask, CallContext("c-4"))).cached
    finally:
        await engine.aclose()
        await client.aclose()
