"""Three gateways on one SQL database: a change made through one reaches them all."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
from grpc import aio

from llmgw.admin.v1 import admin_pb2 as pb
from services.kernel.identity import Principal
from tests.integration.gateway.auth.support import (
    SecureGateway,
    admin_key,
    bearer,
    completion,
    secure_gateway,
)
from tests.integration.models.rpc_errors import reason
from tests.unit.gateway.raw_upstream import RawReplica

pytestmark = pytest.mark.integration


async def _outcome(gateway: SecureGateway, secret: str) -> str:
    """``OK`` or the refusal reason of one call with ``secret``."""
    try:
        await gateway.complete()(completion(), metadata=bearer(secret), timeout=5)
    except aio.AioRpcError as error:
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        return reason(error)
    return "OK"


async def _until(gateways: list[SecureGateway], secret: str, expected: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        outcomes = [await _outcome(gateway, secret) for gateway in gateways]
        if outcomes == [expected] * len(gateways):
            return
        assert time.monotonic() < deadline, f"replicas still answer {outcomes}"
        await asyncio.sleep(0.05)


async def test_a_revocation_reaches_every_replica(
    database_url: str, upstream: RawReplica, tmp_path: Path
) -> None:
    key_file = tmp_path / "admin.key"
    async with AsyncExitStack() as stack:
        gateways = [
            await stack.enter_async_context(
                secure_gateway(
                    database_url, [upstream.address], key_file, poll_interval_seconds=0.2
                )
            )
            for _ in range(3)
        ]
        auth = bearer(admin_key(key_file))
        created = await gateways[0].admin.CreateApiKey(
            pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(project_id="default", scopes=[pb.API_KEY_SCOPE_INFERENCE])
            ),
            metadata=auth,
        )
        await _until(gateways, created.secret, "OK")

        await gateways[1].admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(
                policy=pb.RateLimitPolicy(
                    subject=pb.PolicySubject(api_key_id=created.api_key.id), requests_per_minute=5
                )
            ),
            metadata=auth,
        )
        await gateways[2].admin.RevokeApiKey(
            pb.RevokeApiKeyRequest(api_key_id=created.api_key.id), metadata=auth
        )
        assert await _outcome(gateways[2], created.secret) == "API_KEY_REVOKED"  # at once here
        await _until(gateways, created.secret, "API_KEY_REVOKED")
        principal = Principal("api_key", created.api_key.id, "default")
        for gateway in gateways:
            assert [
                r.requests_per_minute for r in gateway.security.cache.rate_limits(principal)
            ] == [5]
