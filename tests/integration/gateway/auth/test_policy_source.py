"""The admin API's rate-limit policies drive the rate-limit filter of the same gateway."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gateway.settings import FilterSettings
from llmgw.admin.v1 import admin_pb2 as pb
from tests.integration.gateway.auth.support import (
    SECURE_FILTERS,
    admin_key,
    bearer,
    completion,
    secure_gateway,
)
from tests.integration.models.rpc_errors import failure
from tests.unit.gateway.raw_upstream import RawReplica

pytestmark = pytest.mark.integration


async def test_a_policy_created_through_the_admin_api_limits_calls(
    sqlite_url: str, upstream: RawReplica, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    rate_limit = FilterSettings(
        name="rate_limit", config={"redis_url": redis_url, "namespace": f"{redis_prefix}llmgw"}
    )
    key_file = tmp_path / "admin.key"
    async with secure_gateway(
        sqlite_url, [upstream.address], key_file, filters=(*SECURE_FILTERS, rate_limit)
    ) as gateway:
        auth = bearer(admin_key(key_file))
        created = await gateway.admin.CreateApiKey(
            pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(project_id="default", scopes=[pb.API_KEY_SCOPE_INFERENCE])
            ),
            metadata=auth,
        )
        call = gateway.complete()
        for _ in range(3):  # unlimited so far
            await call(completion(), metadata=bearer(created.secret), timeout=5)
        await gateway.admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(
                policy=pb.RateLimitPolicy(
                    subject=pb.PolicySubject(api_key_id=created.api_key.id),
                    requests_per_minute=2,
                )
            ),
            metadata=auth,
        )
        await call(completion(), metadata=bearer(created.secret), timeout=5)
        await call(completion(), metadata=bearer(created.secret), timeout=5)
        error = await failure(call(completion(), metadata=bearer(created.secret), timeout=5))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        await call(completion(), metadata=auth, timeout=5)  # another key is not limited
