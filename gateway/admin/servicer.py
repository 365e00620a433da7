"""The AdminService servicer: authentication, authorization and audit around each RPC.

Admin calls reach the gateway's own server, not the proxied filter chain, so
the servicer runs the same checks itself: the credential
(:class:`~gateway.auth.authenticator.Authenticator`) and the ADMIN scope
(:class:`~gateway.auth.authorizer.Authorizer`). A refused call and every
write, successful or not, are recorded in the audit log. The rules are in
:class:`~gateway.admin.api.AdminApi`; its errors become status codes in the
kernel interceptor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from google.rpc import status_pb2
from grpc import aio

from gateway.admin.api import AdminApi
from gateway.auth.audit import AuditSink, audit_entry
from gateway.auth.authenticator import Authenticator
from gateway.auth.authorizer import Authorizer
from gateway.auth.grants import Grants, KeyUsage
from llmgw.admin.v1 import admin_pb2 as pb
from llmgw.admin.v1 import admin_pb2_grpc
from services.kernel.context import current_request_id
from services.kernel.errors import LlmgwError
from services.kernel.identity import Principal
from services.kernel.paging import next_token, page_of

Context = aio.ServicerContext[object, object]
T = TypeVar("T")

SERVICE = "llmgw.admin.v1.AdminService"
_OK = status_pb2.Status(code=0)


def _user_agent(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "user-agent" and isinstance(value, str):
            return value
    return ""


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """Serves one :class:`AdminApi` to callers holding the ADMIN scope."""

    def __init__(
        self,
        api: AdminApi,
        authenticator: Authenticator,
        authorizer: Authorizer,
        audit: AuditSink,
        *,
        after_write: Callable[[], Awaitable[object]],
        usage: KeyUsage,
    ) -> None:
        """Check callers with ``authenticator``/``authorizer``; record to ``audit``.

        ``after_write`` is awaited after every successful write before the reply
        (it reloads this replica's cache, so a caller reads its own writes).
        """
        self._after_write = after_write
        self._usage = usage
        self._api = api
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._audit = audit

    def _record(
        self,
        context: Context,
        action: str,
        resource: str,
        status: status_pb2.Status,
        who: Principal,
        *,
        details: Mapping[str, str] | None = None,
    ) -> None:
        self._audit.record(
            audit_entry(
                action,
                resource,
                status,
                who,
                request_id=current_request_id(),
                client_address=context.peer(),
                user_agent=_user_agent(context),
                details=details,
            )
        )

    async def _admit(self, context: Context, rpc: str) -> Grants:
        method = f"/{SERVICE}/{rpc}"
        principal = Principal()
        try:
            grants = await self._authenticator.authenticate(context.invocation_metadata() or ())
            principal = grants.principal
            if grants.key_id:
                self._usage.mark(grants.key_id)
            self._authorizer.check_method(grants, method)
        except LlmgwError as error:
            action = (
                "gateway.calls.authorize" if principal.actor_id else "gateway.calls.authenticate"
            )
            self._record(context, action, method, error.to_status(), principal)
            raise
        return grants

    async def _read(self, context: Context, rpc: str, work: Callable[[], Awaitable[T]]) -> T:
        await self._admit(context, rpc)
        return await work()

    async def _write(
        self,
        context: Context,
        rpc: str,
        action: str,
        resource: Callable[[T | None], str],
        work: Callable[[], Awaitable[T]],
        *,
        details: Mapping[str, str] | None = None,
    ) -> T:
        grants = await self._admit(context, rpc)
        who = grants.principal
        try:
            result = await work()
        except LlmgwError as error:
            self._record(context, action, resource(None), error.to_status(), who, details=details)
            raise
        self._record(context, action, resource(result), _OK, who, details=details)
        await self._after_write()
        return result

    # Projects

    async def CreateProject(  # noqa: N802 - the generated method name
        self, request: pb.CreateProjectRequest, context: Context
    ) -> pb.CreateProjectResponse:
        project = await self._write(
            context,
            "CreateProject",
            "admin.projects.create",
            lambda _: f"projects/{request.project.id}",
            lambda: self._api.create_project(request.project),
        )
        return pb.CreateProjectResponse(project=project)

    async def GetProject(  # noqa: N802 - the generated method name
        self, request: pb.GetProjectRequest, context: Context
    ) -> pb.GetProjectResponse:
        project = await self._read(
            context, "GetProject", lambda: self._api.get_project(request.project_id)
        )
        return pb.GetProjectResponse(project=project)

    async def ListProjects(  # noqa: N802 - the generated method name
        self, request: pb.ListProjectsRequest, context: Context
    ) -> pb.ListProjectsResponse:
        await self._admit(context, "ListProjects")
        page = page_of(request.page_size, request.page_token)
        projects = await self._api.list_projects(page)
        return pb.ListProjectsResponse(
            projects=projects, next_page_token=next_token(page, len(projects))
        )

    async def UpdateProject(  # noqa: N802 - the generated method name
        self, request: pb.UpdateProjectRequest, context: Context
    ) -> pb.UpdateProjectResponse:
        project = await self._write(
            context,
            "UpdateProject",
            "admin.projects.update",
            lambda _: f"projects/{request.project.id}",
            lambda: self._api.update_project(request.project, request.update_mask),
        )
        return pb.UpdateProjectResponse(project=project)

    async def DeleteProject(  # noqa: N802 - the generated method name
        self, request: pb.DeleteProjectRequest, context: Context
    ) -> pb.DeleteProjectResponse:
        await self._write(
            context,
            "DeleteProject",
            "admin.projects.delete",
            lambda _: f"projects/{request.project_id}",
            lambda: self._api.delete_project(request.project_id),
        )
        return pb.DeleteProjectResponse()

    # API keys

    async def CreateApiKey(  # noqa: N802 - the generated method name
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        key, secret = await self._write(
            context,
            "CreateApiKey",
            "admin.api_keys.create",
            lambda made: f"api_keys/{made[0].id}" if made else "api_keys",
            lambda: self._api.create_api_key(request.api_key),
        )
        return pb.CreateApiKeyResponse(api_key=key, secret=secret)

    async def GetApiKey(  # noqa: N802 - the generated method name
        self, request: pb.GetApiKeyRequest, context: Context
    ) -> pb.GetApiKeyResponse:
        key = await self._read(
            context, "GetApiKey", lambda: self._api.get_api_key(request.api_key_id)
        )
        return pb.GetApiKeyResponse(api_key=key)

    async def ListApiKeys(  # noqa: N802 - the generated method name
        self, request: pb.ListApiKeysRequest, context: Context
    ) -> pb.ListApiKeysResponse:
        await self._admit(context, "ListApiKeys")
        page = page_of(request.page_size, request.page_token)
        keys = await self._api.list_api_keys(request.project_id, request.include_revoked, page)
        return pb.ListApiKeysResponse(api_keys=keys, next_page_token=next_token(page, len(keys)))

    async def UpdateApiKey(  # noqa: N802 - the generated method name
        self, request: pb.UpdateApiKeyRequest, context: Context
    ) -> pb.UpdateApiKeyResponse:
        key = await self._write(
            context,
            "UpdateApiKey",
            "admin.api_keys.update",
            lambda _: f"api_keys/{request.api_key.id}",
            lambda: self._api.update_api_key(request.api_key, request.update_mask),
        )
        return pb.UpdateApiKeyResponse(api_key=key)

    async def RevokeApiKey(  # noqa: N802 - the generated method name
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        key = await self._write(
            context,
            "RevokeApiKey",
            "admin.api_keys.revoke",
            lambda _: f"api_keys/{request.api_key_id}",
            lambda: self._api.revoke_api_key(request.api_key_id),
            details={"reason": request.reason} if request.reason else None,
        )
        return pb.RevokeApiKeyResponse(api_key=key)

    # Budgets

    async def CreateBudget(  # noqa: N802 - the generated method name
        self, request: pb.CreateBudgetRequest, context: Context
    ) -> pb.CreateBudgetResponse:
        budget = await self._write(
            context,
            "CreateBudget",
            "admin.budgets.create",
            lambda made: f"budgets/{made.id}" if made else "budgets",
            lambda: self._api.create_budget(request.budget),
        )
        return pb.CreateBudgetResponse(budget=budget)

    async def GetBudget(  # noqa: N802 - the generated method name
        self, request: pb.GetBudgetRequest, context: Context
    ) -> pb.GetBudgetResponse:
        budget = await self._read(
            context, "GetBudget", lambda: self._api.get_budget(request.budget_id)
        )
        return pb.GetBudgetResponse(budget=budget)

    async def ListBudgets(  # noqa: N802 - the generated method name
        self, request: pb.ListBudgetsRequest, context: Context
    ) -> pb.ListBudgetsResponse:
        await self._admit(context, "ListBudgets")
        page = page_of(request.page_size, request.page_token)
        subject = request.subject if request.HasField("subject") else None
        budgets = await self._api.list_budgets(subject, page)
        return pb.ListBudgetsResponse(
            budgets=budgets, next_page_token=next_token(page, len(budgets))
        )

    async def UpdateBudget(  # noqa: N802 - the generated method name
        self, request: pb.UpdateBudgetRequest, context: Context
    ) -> pb.UpdateBudgetResponse:
        budget = await self._write(
            context,
            "UpdateBudget",
            "admin.budgets.update",
            lambda _: f"budgets/{request.budget.id}",
            lambda: self._api.update_budget(request.budget, request.update_mask),
        )
        return pb.UpdateBudgetResponse(budget=budget)

    async def DeleteBudget(  # noqa: N802 - the generated method name
        self, request: pb.DeleteBudgetRequest, context: Context
    ) -> pb.DeleteBudgetResponse:
        await self._write(
            context,
            "DeleteBudget",
            "admin.budgets.delete",
            lambda _: f"budgets/{request.budget_id}",
            lambda: self._api.delete_budget(request.budget_id),
        )
        return pb.DeleteBudgetResponse()

    # Rate-limit policies

    async def CreateRateLimitPolicy(  # noqa: N802 - the generated method name
        self, request: pb.CreateRateLimitPolicyRequest, context: Context
    ) -> pb.CreateRateLimitPolicyResponse:
        policy = await self._write(
            context,
            "CreateRateLimitPolicy",
            "admin.rate_limit_policies.create",
            lambda made: f"rate_limit_policies/{made.id}" if made else "rate_limit_policies",
            lambda: self._api.create_rate_limit_policy(request.policy),
        )
        return pb.CreateRateLimitPolicyResponse(policy=policy)

    async def GetRateLimitPolicy(  # noqa: N802 - the generated method name
        self, request: pb.GetRateLimitPolicyRequest, context: Context
    ) -> pb.GetRateLimitPolicyResponse:
        policy = await self._read(
            context,
            "GetRateLimitPolicy",
            lambda: self._api.get_rate_limit_policy(request.policy_id),
        )
        return pb.GetRateLimitPolicyResponse(policy=policy)

    async def ListRateLimitPolicies(  # noqa: N802 - the generated method name
        self, request: pb.ListRateLimitPoliciesRequest, context: Context
    ) -> pb.ListRateLimitPoliciesResponse:
        await self._admit(context, "ListRateLimitPolicies")
        page = page_of(request.page_size, request.page_token)
        subject = request.subject if request.HasField("subject") else None
        policies = await self._api.list_rate_limit_policies(subject, page)
        return pb.ListRateLimitPoliciesResponse(
            policies=policies, next_page_token=next_token(page, len(policies))
        )

    async def UpdateRateLimitPolicy(  # noqa: N802 - the generated method name
        self, request: pb.UpdateRateLimitPolicyRequest, context: Context
    ) -> pb.UpdateRateLimitPolicyResponse:
        policy = await self._write(
            context,
            "UpdateRateLimitPolicy",
            "admin.rate_limit_policies.update",
            lambda _: f"rate_limit_policies/{request.policy.id}",
            lambda: self._api.update_rate_limit_policy(request.policy, request.update_mask),
        )
        return pb.UpdateRateLimitPolicyResponse(policy=policy)

    async def DeleteRateLimitPolicy(  # noqa: N802 - the generated method name
        self, request: pb.DeleteRateLimitPolicyRequest, context: Context
    ) -> pb.DeleteRateLimitPolicyResponse:
        await self._write(
            context,
            "DeleteRateLimitPolicy",
            "admin.rate_limit_policies.delete",
            lambda _: f"rate_limit_policies/{request.policy_id}",
            lambda: self._api.delete_rate_limit_policy(request.policy_id),
        )
        return pb.DeleteRateLimitPolicyResponse()
