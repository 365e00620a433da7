"""The rules of the admin API: validation, existence checks, key generation.

Every method takes and returns proto messages and raises the kernel's errors
(INVALID_ARGUMENT with field violations, NOT_FOUND, ALREADY_EXISTS,
FAILED_PRECONDITION). Output-only fields of requests are ignored. Every write
goes through :meth:`AdminStore.write`, which moves the revision the replicas poll.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from google.protobuf import field_mask_pb2, timestamp_pb2
from redis.exceptions import RedisError

from gateway.admin.records import budget_rule
from gateway.admin.store import AdminStore
from gateway.auth import api_keys
from gateway.auth.scopes import Scope
from llmgw.admin.v1 import admin_pb2
from services.kernel.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.kernel.paging import Page, apply_mask
from services.kernel.spend import SpendLedger, period_window

_log = logging.getLogger(__name__)

_PROJECT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_NAME_LENGTH = 200
MAX_MODELS = 1000
_LOOKUP_ATTEMPTS = 5

PROJECT_FIELDS = frozenset({"display_name", "description", "labels", "allowed_models"})
KEY_FIELDS = frozenset({"display_name", "scopes", "allowed_models", "expire_time", "labels"})
BUDGET_FIELDS = frozenset({"amount", "period", "enforcement", "alert_threshold_percents"})
RATE_LIMIT_FIELDS = frozenset(
    {"models", "requests_per_minute", "tokens_per_minute", "max_concurrent_requests"}
)

PolicyT = TypeVar("PolicyT", admin_pb2.Budget, admin_pb2.RateLimitPolicy)


@dataclass(frozen=True, slots=True)
class _PolicyKind(Generic[PolicyT]):
    """Budgets and rate-limit policies are stored and edited alike; what differs."""

    table: str
    message: type[PolicyT]
    resource: str
    fields: frozenset[str]
    mask_prefix: str


_BUDGETS = _PolicyKind("budgets", admin_pb2.Budget, "budget", BUDGET_FIELDS, "budget.")
_RATE_LIMITS = _PolicyKind(
    "rate_limits", admin_pb2.RateLimitPolicy, "rate_limit_policy", RATE_LIMIT_FIELDS, "policy."
)


def _check(violations: list[FieldViolation], what: str) -> None:
    if violations:
        raise InvalidArgument(f"the {what} is not valid", violations)


def _names(values: Iterable[str], field: str, violations: list[FieldViolation]) -> None:
    listed = list(values)
    if len(listed) > MAX_MODELS:
        violations.append(FieldViolation(field, f"at most {MAX_MODELS} entries"))
    for index, value in enumerate(listed):
        if not value.strip() or len(value) > MAX_NAME_LENGTH:
            violations.append(
                FieldViolation(f"{field}[{index}]", f"must be 1 to {MAX_NAME_LENGTH} characters")
            )


def _display_name(value: str, field: str, violations: list[FieldViolation]) -> None:
    if len(value) > MAX_NAME_LENGTH:
        violations.append(FieldViolation(field, f"at most {MAX_NAME_LENGTH} characters"))


def _new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(10)}"


class AdminApi:
    """Projects, API keys, budgets and rate-limit policies in one :class:`AdminStore`."""

    def __init__(
        self,
        store: AdminStore,
        clock: Callable[[], float] = time.time,
        spend: SpendLedger | None = None,
    ) -> None:
        """Keep resources in ``store``; ``clock`` gives Unix seconds (tests); ``spend``
        (the spend ledger in Redis, when there is one) answers budgets' current spend."""
        self._store = store
        self._clock = clock
        self._spend = spend

    def _now(self) -> timestamp_pb2.Timestamp:
        now = timestamp_pb2.Timestamp()
        now.FromNanoseconds(int(self._clock() * 1e9))
        return now

    # Projects ------------------------------------------------------------------------

    def _validate_project(self, project: admin_pb2.Project, *, creating: bool) -> None:
        violations: list[FieldViolation] = []
        if creating and not _PROJECT_ID.match(project.id):
            violations.append(
                FieldViolation(
                    "project.id",
                    "1 to 63 lower case letters, digits and '-', starting and ending with "
                    "a letter or digit",
                )
            )
        _display_name(project.display_name, "project.display_name", violations)
        _names(project.allowed_models, "project.allowed_models", violations)
        _check(violations, "project")

    async def create_project(self, project: admin_pb2.Project) -> admin_pb2.Project:
        """Create ``project``; ALREADY_EXISTS when its id is taken."""
        self._validate_project(project, creating=True)
        created = admin_pb2.Project()
        created.CopyFrom(project)
        created.create_time.CopyFrom(self._now())
        created.update_time.CopyFrom(created.create_time)
        async with self._store.write() as writer:
            if await writer.project(project.id) is not None:
                raise AlreadyExists("project", project.id)
            await writer.insert_project(created)
        return created

    async def get_project(self, project_id: str) -> admin_pb2.Project:
        """The project ``project_id``; NOT_FOUND when absent."""
        async with self._store.read() as reader:
            project = await reader.project(project_id)
        if project is None:
            raise NotFound("project", project_id)
        return project

    async def list_projects(self, page: Page) -> list[admin_pb2.Project]:
        """Projects ordered by id."""
        async with self._store.read() as reader:
            return await reader.projects(page)

    async def update_project(
        self, project: admin_pb2.Project, mask: field_mask_pb2.FieldMask
    ) -> admin_pb2.Project:
        """Apply the masked fields of ``project`` to the stored one."""
        async with self._store.write() as writer:
            stored = await writer.project(project.id)
            if stored is None:
                raise NotFound("project", project.id)
            apply_mask(stored, project, mask, PROJECT_FIELDS, prefix="project.")
            self._validate_project(stored, creating=False)
            stored.update_time.CopyFrom(self._now())
            await writer.update_project(stored)
        return stored

    async def delete_project(self, project_id: str) -> None:
        """Delete a project without unrevoked keys, with its budgets and policies."""
        async with self._store.write() as writer:
            if await writer.project(project_id) is None:
                raise NotFound("project", project_id)
            if await writer.count_live_keys(project_id):
                raise FailedPrecondition(
                    "the project has unrevoked API keys; revoke them first",
                    reason="PROJECT_HAS_KEYS",
                )
            await writer.delete_policies_of("project_id", project_id)
            await writer.delete_project(project_id)

    # API keys ------------------------------------------------------------------------

    def _validate_key(self, key: admin_pb2.ApiKey, *, check_expiry: bool) -> None:
        violations: list[FieldViolation] = []
        _display_name(key.display_name, "api_key.display_name", violations)
        if not key.scopes:
            violations.append(FieldViolation("api_key.scopes", "at least one scope"))
        for index, scope in enumerate(key.scopes):
            if Scope.of_proto(scope) is None:
                violations.append(FieldViolation(f"api_key.scopes[{index}]", "not a scope"))
        _names(key.allowed_models, "api_key.allowed_models", violations)
        if (
            check_expiry
            and key.HasField("expire_time")
            and key.expire_time.ToNanoseconds() <= int(self._clock() * 1e9)
        ):
            violations.append(FieldViolation("api_key.expire_time", "must be in the future"))
        _check(violations, "API key")

    async def create_api_key(
        self, key: admin_pb2.ApiKey, given: api_keys.NewApiKey | None = None
    ) -> tuple[admin_pb2.ApiKey, str]:
        """Create a key of an existing project; returns it and its secret (shown once).

        The secret is random unless ``given`` (a key provisioned elsewhere, at bootstrap).
        """
        if not key.project_id:
            raise InvalidArgument(
                "the API key is not valid", [FieldViolation("api_key.project_id", "required")]
            )
        self._validate_key(key, check_expiry=True)
        created = admin_pb2.ApiKey(
            id=_new_id("key"),
            display_name=key.display_name,
            project_id=key.project_id,
            scopes=sorted(set(key.scopes)),
            allowed_models=key.allowed_models,
            labels=key.labels,
        )
        if key.HasField("expire_time"):
            created.expire_time.CopyFrom(key.expire_time)
        created.create_time.CopyFrom(self._now())
        created.update_time.CopyFrom(created.create_time)
        async with self._store.write() as writer:
            if await writer.project(key.project_id) is None:
                raise NotFound("project", key.project_id)
            for _ in range(_LOOKUP_ATTEMPTS):
                new = given or api_keys.generate_api_key()
                if not await writer.lookup_taken(new.lookup):
                    break
            else:  # pragma: no cover - 36**8 lookups make this practically impossible
                raise FailedPrecondition("could not pick a free key prefix; try again")
            created.prefix = new.prefix
            await writer.insert_key(created, new.lookup, new.secret_hash)
        return created, new.secret

    async def get_api_key(self, key_id: str) -> admin_pb2.ApiKey:
        """The key ``key_id`` without its secret; NOT_FOUND when absent."""
        async with self._store.read() as reader:
            stored = await reader.key(key_id)
        if stored is None:
            raise NotFound("api_key", key_id)
        return stored.key

    async def list_api_keys(
        self, project_id: str, include_revoked: bool, page: Page
    ) -> list[admin_pb2.ApiKey]:
        """Keys, newest first."""
        async with self._store.read() as reader:
            return await reader.keys(project_id, include_revoked, page)

    async def update_api_key(
        self, key: admin_pb2.ApiKey, mask: field_mask_pb2.FieldMask
    ) -> admin_pb2.ApiKey:
        """Apply the masked fields of ``key``; a revoked key cannot be changed."""
        async with self._store.write() as writer:
            stored = await writer.key(key.id)
            if stored is None:
                raise NotFound("api_key", key.id)
            current = stored.key
            if current.revoked:
                raise FailedPrecondition("the API key is revoked", reason="API_KEY_REVOKED")
            paths = apply_mask(current, key, mask, KEY_FIELDS, prefix="api_key.")
            self._validate_key(current, check_expiry="expire_time" in paths)
            current.update_time.CopyFrom(self._now())
            await writer.update_key(current)
        return current

    async def revoke_api_key(self, key_id: str) -> admin_pb2.ApiKey:
        """Revoke a key (a no-op for a revoked one)."""
        async with self._store.write() as writer:
            stored = await writer.key(key_id)
            if stored is None:
                raise NotFound("api_key", key_id)
            key = stored.key
            if not key.revoked:
                key.revoked = True
                key.revoke_time.CopyFrom(self._now())
                key.update_time.CopyFrom(key.revoke_time)
                await writer.update_key(key)
        return key

    async def count_api_keys(self) -> int:
        """How many keys exist, revoked ones included."""
        async with self._store.read() as reader:
            return await reader.count_keys()

    # Budgets and rate-limit policies ----------------------------------------------------

    async def _check_subject(self, subject: admin_pb2.PolicySubject, field: str) -> None:
        kind = subject.WhichOneof("subject")
        if kind is None or not getattr(subject, kind):
            raise InvalidArgument(
                "the subject is not valid",
                [FieldViolation(field, "set api_key_id or project_id")],
            )
        async with self._store.read() as reader:
            if kind == "project_id" and await reader.project(subject.project_id) is None:
                raise NotFound("project", subject.project_id)
            if kind == "api_key_id" and await reader.key(subject.api_key_id) is None:
                raise NotFound("api_key", subject.api_key_id)

    @staticmethod
    def _validate_budget(budget: admin_pb2.Budget) -> None:
        violations: list[FieldViolation] = []
        if budget.amount.amount_nanos <= 0:
            violations.append(FieldViolation("budget.amount.amount_nanos", "must be positive"))
        if not _CURRENCY.match(budget.amount.currency_code):
            violations.append(
                FieldViolation("budget.amount.currency_code", "an ISO 4217 code, e.g. USD")
            )
        if budget.period not in admin_pb2.BudgetPeriod.values() or not budget.period:
            violations.append(FieldViolation("budget.period", "DAY, WEEK or MONTH"))
        if budget.enforcement not in admin_pb2.BudgetEnforcement.values():
            violations.append(FieldViolation("budget.enforcement", "not an enforcement"))
        for index, percent in enumerate(budget.alert_threshold_percents):
            if not 1 <= percent <= 1000:
                violations.append(
                    FieldViolation(f"budget.alert_threshold_percents[{index}]", "1 to 1000")
                )
        _check(violations, "budget")

    async def create_budget(self, budget: admin_pb2.Budget) -> admin_pb2.Budget:
        """Create a budget of an existing key or project."""
        self._validate_budget(budget)
        await self._check_subject(budget.subject, "budget.subject")
        created = admin_pb2.Budget(
            id=_new_id("budget"),
            subject=budget.subject,
            amount=budget.amount,
            period=budget.period,
            enforcement=budget.enforcement or admin_pb2.BUDGET_ENFORCEMENT_BLOCK,
            alert_threshold_percents=budget.alert_threshold_percents,
        )
        created.create_time.CopyFrom(self._now())
        created.update_time.CopyFrom(created.create_time)
        async with self._store.write() as writer:
            await writer.save_policy(_BUDGETS.table, created.id, created)
        return created

    async def get_budget(self, budget_id: str) -> admin_pb2.Budget:
        """The budget ``budget_id``; NOT_FOUND when absent."""
        budget = await self._get_policy(_BUDGETS, budget_id)
        await self._add_spend(budget)
        return budget

    async def _add_spend(self, budget: admin_pb2.Budget) -> None:
        """Fill ``current_spend`` from the spend ledger; left unset when Redis fails."""
        rule = budget_rule(budget)
        if self._spend is None or rule is None:
            return
        at = datetime.fromtimestamp(self._clock(), UTC)
        try:
            [spent] = await self._spend.spent(rule.currency, [(rule.subject, rule.period)], at)
        except RedisError as exc:
            _log.warning("cannot read the spend of budget %s: %r", budget.id, exc)
            return
        start, end = period_window(rule.period, at)
        current = budget.current_spend
        current.period_start_time.FromDatetime(start)
        current.period_end_time.FromDatetime(end)
        current.spent.currency_code = rule.currency
        current.spent.amount_nanos = spent
        current.exhausted = spent >= rule.amount_nanos

    async def list_budgets(
        self, subject: admin_pb2.PolicySubject | None, page: Page
    ) -> list[admin_pb2.Budget]:
        """Budgets ordered by id, optionally of one subject."""
        return await self._list_policies(_BUDGETS, subject, page)

    async def update_budget(
        self, budget: admin_pb2.Budget, mask: field_mask_pb2.FieldMask
    ) -> admin_pb2.Budget:
        """Apply the masked fields of ``budget``."""
        return await self._update_policy(_BUDGETS, budget, mask, self._validate_budget)

    async def delete_budget(self, budget_id: str) -> None:
        """Delete a budget."""
        await self._delete_policy(_BUDGETS, budget_id)

    @staticmethod
    def _validate_rate_limit(policy: admin_pb2.RateLimitPolicy) -> None:
        violations: list[FieldViolation] = []
        for name in sorted(RATE_LIMIT_FIELDS - {"models"}):
            if getattr(policy, name) < 0:
                violations.append(FieldViolation(f"policy.{name}", "must not be negative"))
        if not (
            policy.requests_per_minute or policy.tokens_per_minute or policy.max_concurrent_requests
        ):
            violations.append(
                FieldViolation("policy.requests_per_minute", "set at least one limit above 0")
            )
        _names(policy.models, "policy.models", violations)
        _check(violations, "rate-limit policy")

    async def create_rate_limit_policy(
        self, policy: admin_pb2.RateLimitPolicy
    ) -> admin_pb2.RateLimitPolicy:
        """Create a rate-limit policy of an existing key or project."""
        self._validate_rate_limit(policy)
        await self._check_subject(policy.subject, "policy.subject")
        created = admin_pb2.RateLimitPolicy(
            id=_new_id("rlp"),
            subject=policy.subject,
            models=policy.models,
            requests_per_minute=policy.requests_per_minute,
            tokens_per_minute=policy.tokens_per_minute,
            max_concurrent_requests=policy.max_concurrent_requests,
        )
        created.create_time.CopyFrom(self._now())
        created.update_time.CopyFrom(created.create_time)
        async with self._store.write() as writer:
            await writer.save_policy(_RATE_LIMITS.table, created.id, created)
        return created

    async def get_rate_limit_policy(self, policy_id: str) -> admin_pb2.RateLimitPolicy:
        """The policy ``policy_id``; NOT_FOUND when absent."""
        return await self._get_policy(_RATE_LIMITS, policy_id)

    async def list_rate_limit_policies(
        self, subject: admin_pb2.PolicySubject | None, page: Page
    ) -> list[admin_pb2.RateLimitPolicy]:
        """Policies ordered by id, optionally of one subject."""
        return await self._list_policies(_RATE_LIMITS, subject, page)

    async def update_rate_limit_policy(
        self, policy: admin_pb2.RateLimitPolicy, mask: field_mask_pb2.FieldMask
    ) -> admin_pb2.RateLimitPolicy:
        """Apply the masked fields of ``policy``."""
        return await self._update_policy(_RATE_LIMITS, policy, mask, self._validate_rate_limit)

    async def delete_rate_limit_policy(self, policy_id: str) -> None:
        """Delete a rate-limit policy."""
        await self._delete_policy(_RATE_LIMITS, policy_id)

    # Budgets and rate-limit policies alike

    async def _get_policy(self, kind: _PolicyKind[PolicyT], policy_id: str) -> PolicyT:
        async with self._store.read() as reader:
            policy = await reader.policy(kind.table, policy_id, kind.message)
        if policy is None:
            raise NotFound(kind.resource, policy_id)
        return policy

    async def _list_policies(
        self, kind: _PolicyKind[PolicyT], subject: admin_pb2.PolicySubject | None, page: Page
    ) -> list[PolicyT]:
        async with self._store.read() as reader:
            return await reader.policies(kind.table, subject, page, kind.message)

    async def _update_policy(
        self,
        kind: _PolicyKind[PolicyT],
        policy: PolicyT,
        mask: field_mask_pb2.FieldMask,
        validate: Callable[[PolicyT], None],
    ) -> PolicyT:
        async with self._store.write() as writer:
            stored = await writer.policy(kind.table, policy.id, kind.message)
            if stored is None:
                raise NotFound(kind.resource, policy.id)
            apply_mask(stored, policy, mask, kind.fields, prefix=kind.mask_prefix)
            validate(stored)
            stored.update_time.CopyFrom(self._now())
            await writer.save_policy(kind.table, stored.id, stored)
        return stored

    async def _delete_policy(self, kind: _PolicyKind[PolicyT], policy_id: str) -> None:
        async with self._store.write() as writer:
            if await writer.policy(kind.table, policy_id, kind.message) is None:
                raise NotFound(kind.resource, policy_id)
            await writer.delete_policy(kind.table, policy_id)
