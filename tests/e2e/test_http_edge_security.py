"""The HTTP edge behind the gateway's real security filters, judged by the ``openai`` package.

API keys, model allowlists and a rate-limit policy are made through the admin API;
the refusals of ``authn``, ``authz`` and ``rate_limit`` reach the client as the
``openai`` error classes of 401, 403 and 429.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageParam

from gateway.settings import FilterSettings
from llmgw.admin.v1 import admin_pb2 as pb
from provider_adapters.conformance.fake_server import FakeServer
from services.kernel.identity import API_KEY_ACTOR, Principal
from tests.e2e.http_stack import InferenceProcess, start_inference
from tests.integration.gateway.auth.support import (
    SECURE_FILTERS,
    SecureGateway,
    admin_key,
    bearer,
    secure_gateway,
)

pytestmark = pytest.mark.integration

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest_asyncio.fixture
async def inference(tmp_path: Path) -> AsyncIterator[InferenceProcess]:
    async with FakeServer() as fake:
        process = await start_inference(tmp_path, f"{fake.base_url}/v1")
        try:
            yield process
        finally:
            process.stop()


async def _until_limited(gateway: SecureGateway, key_id: str) -> None:
    principal = Principal(API_KEY_ACTOR, key_id, "default")
    deadline = time.monotonic() + 10
    while not gateway.security.cache.rate_limits(principal):
        assert time.monotonic() < deadline, "the policy never reached the gateway"
        await asyncio.sleep(0.02)


async def test_refusals_of_the_security_filters_raise_the_openai_error_classes(
    inference: InferenceProcess, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    namespace = f"{redis_prefix}llmgw"
    filters = (
        *SECURE_FILTERS,
        FilterSettings(name="rate_limit", config={"redis_url": redis_url, "namespace": namespace}),
    )
    key_file = tmp_path / "admin.key"
    database = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    async with secure_gateway(
        database, [inference.address], key_file, filters=filters, spend_namespace=namespace
    ) as gateway:
        auth = bearer(admin_key(key_file))
        created = await gateway.admin.CreateApiKey(
            pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(
                    project_id="default",
                    scopes=[pb.API_KEY_SCOPE_INFERENCE],
                    allowed_models=["sim"],
                )
            ),
            metadata=auth,
        )
        await gateway.admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(
                policy=pb.RateLimitPolicy(
                    subject=pb.PolicySubject(api_key_id=created.api_key.id),
                    requests_per_minute=2,
                )
            ),
            metadata=auth,
        )
        await _until_limited(gateway, created.api_key.id)

        def client(key: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=gateway.http_base_url, api_key=key, max_retries=0)

        with pytest.raises(openai.AuthenticationError) as unknown:
            await client("llmgw_nothere_" + "x" * 43).chat.completions.create(
                model="sim", messages=HELLO
            )
        assert unknown.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            await client("not-a-key").models.list()

        allowed = client(created.secret)
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await allowed.chat.completions.create(model="gpt-fake", messages=HELLO)
        assert denied.value.status_code == 403

        for _ in range(2):
            reply = await allowed.chat.completions.create(model="sim", messages=HELLO)
            assert reply.choices[0].message.content
        with pytest.raises(openai.RateLimitError) as limited:
            await allowed.chat.completions.create(model="sim", messages=HELLO)
        assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_the_fine_tuning_api_needs_the_fine_tuning_scope(
    inference: InferenceProcess, tmp_path: Path
) -> None:
    key_file = tmp_path / "admin.key"
    database = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    services = ("llmgw.inference.v1.InferenceService", "llmgw.finetuning.v1.FineTuningService")
    async with secure_gateway(
        database, [inference.address], key_file, services=services
    ) as gateway:
        auth = bearer(admin_key(key_file))

        async def key(scope: pb.ApiKeyScope.ValueType) -> str:
            created = await gateway.admin.CreateApiKey(
                pb.CreateApiKeyRequest(api_key=pb.ApiKey(project_id="default", scopes=[scope])),
                metadata=auth,
            )
            return created.secret

        def client(secret: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=gateway.http_base_url, api_key=secret, max_retries=0)

        inference_only = client(await key(pb.API_KEY_SCOPE_INFERENCE))
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await inference_only.fine_tuning.jobs.list()
        assert denied.value.status_code == 403
        with pytest.raises(openai.PermissionDeniedError):
            await inference_only.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune")
        with pytest.raises(openai.AuthenticationError) as unknown:
            await client("not-a-key").fine_tuning.jobs.retrieve("ftjob_1")
        assert unknown.value.status_code == 401

        # Past authz the call reaches the upstream, which here serves no fine-tuning.
        fine_tuner = client(await key(pb.API_KEY_SCOPE_FINETUNING))
        with pytest.raises(openai.APIStatusError) as unserved:
            await fine_tuner.fine_tuning.jobs.list()
        assert unserved.value.status_code == 501
