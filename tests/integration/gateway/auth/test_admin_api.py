"""The admin API on SQLite and PostgreSQL: CRUD, validation, paging, and the policy source."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import field_mask_pb2, timestamp_pb2

from gateway.auth.api_keys import generate_api_key
from gateway.policies import BudgetEnforcement
from llmgw.admin.v1 import admin_pb2 as pb
from llmgw.common.v1 import common_pb2
from services.kernel.identity import Principal
from services.kernel.spend import BudgetPeriod, SpendLedger, SpendSubject, SubjectKind
from tests.integration.gateway.auth.support import (
    SecureGateway,
    admin_key,
    bearer,
    completion,
    secure_gateway,
)
from tests.integration.models.rpc_errors import failure, reason, violations
from tests.unit.gateway.raw_upstream import RawReplica

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(
    database_url: str, upstream: RawReplica, tmp_path: Path
) -> AsyncIterator[SecureGateway]:
    async with secure_gateway(database_url, [upstream.address], tmp_path / "admin.key") as running:
        yield running


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_projects_crud_with_validation_and_paging(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    auth = bearer(admin_key(tmp_path / "admin.key"))
    admin = gateway.admin
    for name in ("support", "billing", "search"):
        reply = await admin.CreateProject(
            pb.CreateProjectRequest(project=pb.Project(id=name, display_name=name.title())),
            metadata=auth,
        )
        assert reply.project.create_time.seconds > 0
    error = await failure(
        admin.CreateProject(
            pb.CreateProjectRequest(project=pb.Project(id="support")), metadata=auth
        )
    )
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    error = await failure(
        admin.CreateProject(pb.CreateProjectRequest(project=pb.Project(id="Bad_Id")), metadata=auth)
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "project.id" in violations(error)

    first = await admin.ListProjects(pb.ListProjectsRequest(page_size=2), metadata=auth)
    assert [p.id for p in first.projects] == ["billing", "default"]
    second = await admin.ListProjects(
        pb.ListProjectsRequest(page_size=2, page_token=first.next_page_token), metadata=auth
    )
    assert [p.id for p in second.projects] == ["search", "support"]
    error = await failure(
        admin.ListProjects(pb.ListProjectsRequest(page_token="garbage!"), metadata=auth)
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT

    updated = await admin.UpdateProject(
        pb.UpdateProjectRequest(
            project=pb.Project(id="search", description="x", allowed_models=["chat"]),
            update_mask=_mask("allowed_models"),
        ),
        metadata=auth,
    )
    assert list(updated.project.allowed_models) == ["chat"]
    assert updated.project.description == ""
    error = await failure(
        admin.UpdateProject(
            pb.UpdateProjectRequest(project=pb.Project(id="search"), update_mask=_mask("id")),
            metadata=auth,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert gateway.security.cache.project("search") is not None
    assert gateway.security.cache.project("search").allowed_models == ("chat",)  # type: ignore[union-attr]

    await admin.DeleteProject(pb.DeleteProjectRequest(project_id="search"), metadata=auth)
    error = await failure(
        admin.GetProject(pb.GetProjectRequest(project_id="search"), metadata=auth)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await failure(
        admin.DeleteProject(pb.DeleteProjectRequest(project_id="default"), metadata=auth)
    )
    assert (error.code(), reason(error)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PROJECT_HAS_KEYS",
    )


async def test_api_keys_crud_secret_shown_once_and_revocation(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    auth = bearer(admin_key(tmp_path / "admin.key"))
    admin = gateway.admin
    future = timestamp_pb2.Timestamp(seconds=4_000_000_000)
    created = await admin.CreateApiKey(
        pb.CreateApiKeyRequest(
            api_key=pb.ApiKey(
                display_name="ci",
                project_id="default",
                scopes=[pb.API_KEY_SCOPE_INFERENCE],
                allowed_models=["chat"],
                expire_time=future,
                labels={"team": "infra"},
            )
        ),
        metadata=auth,
    )
    key = created.api_key
    assert created.secret.startswith(key.prefix + "_")
    assert key.id.startswith("key_") and not key.revoked
    fetched = (await admin.GetApiKey(pb.GetApiKeyRequest(api_key_id=key.id), metadata=auth)).api_key
    assert fetched == key
    assert created.secret not in str(fetched)

    for bad, field in (
        (pb.ApiKey(project_id="default"), "api_key.scopes"),
        (pb.ApiKey(scopes=[pb.API_KEY_SCOPE_INFERENCE]), "api_key.project_id"),
        (
            pb.ApiKey(project_id="default", scopes=[pb.ApiKeyScope.ValueType(99)]),
            "api_key.scopes[0]",
        ),
        (
            pb.ApiKey(
                project_id="default",
                scopes=[pb.API_KEY_SCOPE_INFERENCE],
                expire_time=timestamp_pb2.Timestamp(seconds=1),
            ),
            "api_key.expire_time",
        ),
    ):
        error = await failure(
            admin.CreateApiKey(pb.CreateApiKeyRequest(api_key=bad), metadata=auth)
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(error)
    error = await failure(
        admin.CreateApiKey(
            pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(project_id="nope", scopes=[pb.API_KEY_SCOPE_INFERENCE])
            ),
            metadata=auth,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND

    updated = await admin.UpdateApiKey(
        pb.UpdateApiKeyRequest(
            api_key=pb.ApiKey(id=key.id, scopes=[pb.API_KEY_SCOPE_MODELS_READ], display_name="x"),
            update_mask=_mask("scopes"),
        ),
        metadata=auth,
    )
    assert list(updated.api_key.scopes) == [pb.API_KEY_SCOPE_MODELS_READ]
    assert updated.api_key.display_name == "ci"

    listed = await admin.ListApiKeys(pb.ListApiKeysRequest(project_id="default"), metadata=auth)
    assert listed.api_keys[0].id == key.id  # newest first
    revoked = await admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(api_key_id=key.id, reason="rotated"), metadata=auth
    )
    assert revoked.api_key.revoked and revoked.api_key.revoke_time.seconds > 0
    live = await admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=auth)
    assert key.id not in [k.id for k in live.api_keys]
    every = await admin.ListApiKeys(pb.ListApiKeysRequest(include_revoked=True), metadata=auth)
    assert key.id in [k.id for k in every.api_keys]
    error = await failure(
        admin.UpdateApiKey(
            pb.UpdateApiKeyRequest(api_key=pb.ApiKey(id=key.id), update_mask=_mask("display_name")),
            metadata=auth,
        )
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    error = await failure(
        admin.RevokeApiKey(pb.RevokeApiKeyRequest(api_key_id="key_x"), metadata=auth)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_budgets_and_rate_limit_policies_reach_the_policy_source(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    auth = bearer(admin_key(tmp_path / "admin.key"))
    admin = gateway.admin
    project = pb.PolicySubject(project_id="default")
    budget = (
        await admin.CreateBudget(
            pb.CreateBudgetRequest(
                budget=pb.Budget(
                    subject=project,
                    amount=common_pb2.Money(currency_code="USD", amount_nanos=5_000_000_000),
                    period=pb.BUDGET_PERIOD_MONTH,
                    alert_threshold_percents=[50, 100],
                )
            ),
            metadata=auth,
        )
    ).budget
    assert budget.enforcement == pb.BUDGET_ENFORCEMENT_BLOCK
    policy = (
        await admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(
                policy=pb.RateLimitPolicy(subject=project, requests_per_minute=60, models=["chat"])
            ),
            metadata=auth,
        )
    ).policy
    principal = Principal("api_key", "key_other", "default")
    source = gateway.security.cache
    [rule] = source.rate_limits(principal)
    assert (rule.id, rule.requests_per_minute, rule.models) == (policy.id, 60, ("chat",))
    assert rule.subject == SpendSubject(SubjectKind.PROJECT, "default")
    [budget_rule] = source.budgets(principal)
    assert (budget_rule.amount_nanos, budget_rule.currency) == (5_000_000_000, "USD")
    assert (budget_rule.period, budget_rule.enforcement) == (
        BudgetPeriod.MONTH,
        BudgetEnforcement.BLOCK,
    )
    assert source.budgets(Principal("api_key", "key_x", "elsewhere")) == ()

    for bad, field in (
        (pb.Budget(subject=project, period=pb.BUDGET_PERIOD_DAY), "budget.amount.amount_nanos"),
        (
            pb.Budget(
                subject=project,
                amount=common_pb2.Money(currency_code="usd", amount_nanos=1),
                period=pb.BUDGET_PERIOD_DAY,
            ),
            "budget.amount.currency_code",
        ),
        (
            pb.Budget(
                subject=project, amount=common_pb2.Money(currency_code="USD", amount_nanos=1)
            ),
            "budget.period",
        ),
        (
            pb.Budget(
                amount=common_pb2.Money(currency_code="USD", amount_nanos=1),
                period=pb.BUDGET_PERIOD_DAY,
            ),
            "budget.subject",
        ),
    ):
        error = await failure(admin.CreateBudget(pb.CreateBudgetRequest(budget=bad), metadata=auth))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in violations(error)
    error = await failure(
        admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(policy=pb.RateLimitPolicy(subject=project)),
            metadata=auth,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    error = await failure(
        admin.CreateRateLimitPolicy(
            pb.CreateRateLimitPolicyRequest(
                policy=pb.RateLimitPolicy(
                    subject=pb.PolicySubject(api_key_id="key_nope"), requests_per_minute=1
                )
            ),
            metadata=auth,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND

    changed = await admin.UpdateRateLimitPolicy(
        pb.UpdateRateLimitPolicyRequest(
            policy=pb.RateLimitPolicy(id=policy.id, tokens_per_minute=1000),
            update_mask=_mask("tokens_per_minute"),
        ),
        metadata=auth,
    )
    assert (changed.policy.requests_per_minute, changed.policy.tokens_per_minute) == (60, 1000)
    assert source.rate_limits(principal)[0].tokens_per_minute == 1000
    await admin.UpdateBudget(
        pb.UpdateBudgetRequest(
            budget=pb.Budget(id=budget.id, enforcement=pb.BUDGET_ENFORCEMENT_ALERT_ONLY),
            update_mask=_mask("enforcement"),
        ),
        metadata=auth,
    )
    assert source.budgets(principal)[0].enforcement is BudgetEnforcement.ALERT_ONLY
    listed = await admin.ListBudgets(pb.ListBudgetsRequest(subject=project), metadata=auth)
    assert [b.id for b in listed.budgets] == [budget.id]
    none = await admin.ListRateLimitPolicies(
        pb.ListRateLimitPoliciesRequest(subject=pb.PolicySubject(project_id="other")), metadata=auth
    )
    assert list(none.policies) == []

    await admin.DeleteBudget(pb.DeleteBudgetRequest(budget_id=budget.id), metadata=auth)
    await admin.DeleteRateLimitPolicy(
        pb.DeleteRateLimitPolicyRequest(policy_id=policy.id), metadata=auth
    )
    assert source.budgets(principal) == () and source.rate_limits(principal) == ()
    for call in (
        admin.GetBudget(pb.GetBudgetRequest(budget_id=budget.id), metadata=auth),
        admin.GetRateLimitPolicy(pb.GetRateLimitPolicyRequest(policy_id=policy.id), metadata=auth),
        admin.DeleteBudget(pb.DeleteBudgetRequest(budget_id=budget.id), metadata=auth),
    ):
        assert (await failure(call)).code() is grpc.StatusCode.NOT_FOUND


async def test_a_budget_is_read_with_its_current_spend_from_the_ledger(
    sqlite_url: str, upstream: RawReplica, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    namespace = f"{redis_prefix}llmgw"
    key_file = tmp_path / "admin.key"
    async with secure_gateway(
        sqlite_url, [upstream.address], key_file, redis_url=redis_url, spend_namespace=namespace
    ) as gateway:
        auth = bearer(admin_key(key_file))
        budget = (
            await gateway.admin.CreateBudget(
                pb.CreateBudgetRequest(
                    budget=pb.Budget(
                        subject=pb.PolicySubject(project_id="default"),
                        amount=common_pb2.Money(currency_code="USD", amount_nanos=1000),
                        period=pb.BUDGET_PERIOD_DAY,
                    )
                ),
                metadata=auth,
            )
        ).budget
        fresh = await gateway.admin.GetBudget(
            pb.GetBudgetRequest(budget_id=budget.id), metadata=auth
        )
        assert fresh.budget.current_spend.spent.amount_nanos == 0
        assert not fresh.budget.current_spend.exhausted
        client = aioredis.Redis.from_url(redis_url)
        try:
            ledger = SpendLedger(client, namespace=namespace)
            subject = SpendSubject(SubjectKind.PROJECT, "default")
            await ledger.record("usage-1", "USD", [subject], 1200, datetime.now(UTC))
        finally:
            await client.aclose()
        spent = (
            await gateway.admin.GetBudget(pb.GetBudgetRequest(budget_id=budget.id), metadata=auth)
        ).budget.current_spend
        assert (spent.spent.currency_code, spent.spent.amount_nanos) == ("USD", 1200)
        assert spent.exhausted
        window = spent.period_end_time.ToSeconds() - spent.period_start_time.ToSeconds()
        assert window == 86400


async def test_a_keys_last_use_is_recorded(gateway: SecureGateway, tmp_path: Path) -> None:
    auth = bearer(admin_key(tmp_path / "admin.key"))
    created = await gateway.admin.CreateApiKey(
        pb.CreateApiKeyRequest(
            api_key=pb.ApiKey(project_id="default", scopes=[pb.API_KEY_SCOPE_INFERENCE])
        ),
        metadata=auth,
    )
    request = pb.GetApiKeyRequest(api_key_id=created.api_key.id)
    await gateway.security.flush_usage()
    assert not (await gateway.admin.GetApiKey(request, metadata=auth)).api_key.HasField(
        "last_used_time"
    )
    await gateway.complete()(completion(), metadata=bearer(created.secret), timeout=5)
    await gateway.security.flush_usage()
    used = (await gateway.admin.GetApiKey(request, metadata=auth)).api_key.last_used_time
    assert used.seconds >= created.api_key.create_time.seconds
    listed = await gateway.admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=auth)
    assert {k.id: k.last_used_time for k in listed.api_keys}[created.api_key.id] == used


async def test_a_provisioned_bootstrap_key_is_installed_as_given(
    sqlite_url: str, upstream: RawReplica, tmp_path: Path
) -> None:
    key_file = tmp_path / "secret" / "admin.key"
    provisioned = generate_api_key().secret
    key_file.parent.mkdir()
    key_file.write_text(provisioned + "\n", encoding="utf-8")
    async with secure_gateway(sqlite_url, [upstream.address], key_file) as gateway:
        listed = await gateway.admin.ListApiKeys(
            pb.ListApiKeysRequest(), metadata=bearer(provisioned)
        )
        [key] = listed.api_keys
        assert provisioned.startswith(key.prefix + "_")
    assert key_file.read_text(encoding="utf-8") == provisioned + "\n"


async def test_the_bootstrap_key_file_is_readable_only_by_its_owner(
    sqlite_url: str, upstream: RawReplica, tmp_path: Path
) -> None:
    key_file = tmp_path / "admin.key"
    async with secure_gateway(sqlite_url, [upstream.address], key_file):
        assert key_file.stat().st_mode & 0o777 == 0o600
    async with secure_gateway(sqlite_url, [upstream.address], tmp_path / "second.key"):
        assert not (tmp_path / "second.key").exists()  # keys exist: no second bootstrap key
