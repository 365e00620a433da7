"""The ModelRegistryService servicer: request messages in, registry calls, responses out.

Thin on purpose: it reads the caller from the call's metadata
(:mod:`services.models.caller`), turns page tokens into windows, and leaves
every rule to :class:`~services.models.registry.Registry`,
:class:`~services.models.aliases.Aliases`, :mod:`services.models.resolve` and
:class:`~services.models.feed.ChangeFeed`. Their exceptions are mapped to
status codes by the kernel interceptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio

from llmgw.models.v1 import models_pb2 as pb
from llmgw.models.v1 import models_pb2_grpc
from services.kernel.context import current_request_id
from services.kernel.paging import next_token, page_of
from services.models.aliases import Aliases
from services.models.caller import Caller, caller_from_metadata
from services.models.feed import ChangeFeed
from services.models.registry import Registry
from services.models.resolve import resolve

Context = aio.ServicerContext[object, object]


def _caller(context: Context) -> Caller:
    return caller_from_metadata(
        context.invocation_metadata(), request_id=current_request_id(), peer=context.peer()
    )


class ModelRegistryServicer(models_pb2_grpc.ModelRegistryServiceServicer):
    """Serves one registry, its aliases and its change feed."""

    def __init__(self, registry: Registry, feed: ChangeFeed) -> None:
        """Serve ``registry``; ``feed`` answers Resolve snapshots and WatchRegistry."""
        self._registry = registry
        self._aliases = Aliases(registry)
        self._feed = feed

    async def CreateModel(  # noqa: N802 - the generated method name
        self, request: pb.CreateModelRequest, context: Context
    ) -> pb.CreateModelResponse:
        model = await self._registry.create_model(request.model, _caller(context))
        return pb.CreateModelResponse(model=model)

    async def GetModel(  # noqa: N802 - the generated method name
        self, request: pb.GetModelRequest, context: Context
    ) -> pb.GetModelResponse:
        return pb.GetModelResponse(model=await self._registry.get_model(request.name))

    async def ListModels(  # noqa: N802 - the generated method name
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        page = page_of(request.page_size, request.page_token)
        models = await self._registry.list_models(request.project_id, page)
        return pb.ListModelsResponse(models=models, next_page_token=next_token(page, len(models)))

    async def UpdateModel(  # noqa: N802 - the generated method name
        self, request: pb.UpdateModelRequest, context: Context
    ) -> pb.UpdateModelResponse:
        model = await self._registry.update_model(
            request.model, request.update_mask, _caller(context)
        )
        return pb.UpdateModelResponse(model=model)

    async def DeleteModel(  # noqa: N802 - the generated method name
        self, request: pb.DeleteModelRequest, context: Context
    ) -> pb.DeleteModelResponse:
        await self._registry.delete_model(request.name, _caller(context))
        return pb.DeleteModelResponse()

    async def CreateModelVersion(  # noqa: N802 - the generated method name
        self, request: pb.CreateModelVersionRequest, context: Context
    ) -> pb.CreateModelVersionResponse:
        version = await self._registry.create_version(request.version, _caller(context))
        return pb.CreateModelVersionResponse(version=version)

    async def GetModelVersion(  # noqa: N802 - the generated method name
        self, request: pb.GetModelVersionRequest, context: Context
    ) -> pb.GetModelVersionResponse:
        version = await self._registry.get_version(request.model, request.version)
        return pb.GetModelVersionResponse(version=version)

    async def ListModelVersions(  # noqa: N802 - the generated method name
        self, request: pb.ListModelVersionsRequest, context: Context
    ) -> pb.ListModelVersionsResponse:
        page = page_of(request.page_size, request.page_token)
        versions = await self._registry.list_versions(request.model, request.statuses, page)
        return pb.ListModelVersionsResponse(
            versions=versions, next_page_token=next_token(page, len(versions))
        )

    async def UpdateModelVersion(  # noqa: N802 - the generated method name
        self, request: pb.UpdateModelVersionRequest, context: Context
    ) -> pb.UpdateModelVersionResponse:
        version = await self._registry.update_version(
            request.version, request.update_mask, _caller(context)
        )
        return pb.UpdateModelVersionResponse(version=version)

    async def CreateAlias(  # noqa: N802 - the generated method name
        self, request: pb.CreateAliasRequest, context: Context
    ) -> pb.CreateAliasResponse:
        change = await self._aliases.create(request.alias, request.reason, _caller(context))
        return pb.CreateAliasResponse(alias=change.alias)

    async def GetAlias(  # noqa: N802 - the generated method name
        self, request: pb.GetAliasRequest, context: Context
    ) -> pb.GetAliasResponse:
        return pb.GetAliasResponse(alias=await self._aliases.get(request.model, request.alias))

    async def ListAliases(  # noqa: N802 - the generated method name
        self, request: pb.ListAliasesRequest, context: Context
    ) -> pb.ListAliasesResponse:
        page = page_of(request.page_size, request.page_token)
        aliases = await self._aliases.list_aliases(request.model, page)
        return pb.ListAliasesResponse(
            aliases=aliases, next_page_token=next_token(page, len(aliases))
        )

    async def UpdateAlias(  # noqa: N802 - the generated method name
        self, request: pb.UpdateAliasRequest, context: Context
    ) -> pb.UpdateAliasResponse:
        change = await self._aliases.update(
            request.alias,
            request.update_mask,
            request.reason,
            request.expected_history_sequence,
            _caller(context),
        )
        return pb.UpdateAliasResponse(alias=change.alias)

    async def DeleteAlias(  # noqa: N802 - the generated method name
        self, request: pb.DeleteAliasRequest, context: Context
    ) -> pb.DeleteAliasResponse:
        await self._aliases.delete(request.model, request.alias, request.reason, _caller(context))
        return pb.DeleteAliasResponse()

    async def PromoteVersion(  # noqa: N802 - the generated method name
        self, request: pb.PromoteVersionRequest, context: Context
    ) -> pb.PromoteVersionResponse:
        change = await self._aliases.promote(request, _caller(context))
        return pb.PromoteVersionResponse(alias=change.alias, history_entry=change.entry)

    async def RollbackAlias(  # noqa: N802 - the generated method name
        self, request: pb.RollbackAliasRequest, context: Context
    ) -> pb.RollbackAliasResponse:
        change = await self._aliases.rollback(
            request.model, request.alias, request.to_sequence, request.reason, _caller(context)
        )
        return pb.RollbackAliasResponse(alias=change.alias, history_entry=change.entry)

    async def ListAliasHistory(  # noqa: N802 - the generated method name
        self, request: pb.ListAliasHistoryRequest, context: Context
    ) -> pb.ListAliasHistoryResponse:
        page = page_of(request.page_size, request.page_token)
        entries = await self._aliases.history(request.model, request.alias, page)
        return pb.ListAliasHistoryResponse(
            entries=entries, next_page_token=next_token(page, len(entries))
        )

    async def CreateModelGroup(  # noqa: N802 - the generated method name
        self, request: pb.CreateModelGroupRequest, context: Context
    ) -> pb.CreateModelGroupResponse:
        group = await self._registry.create_group(request.group, _caller(context))
        return pb.CreateModelGroupResponse(group=group)

    async def GetModelGroup(  # noqa: N802 - the generated method name
        self, request: pb.GetModelGroupRequest, context: Context
    ) -> pb.GetModelGroupResponse:
        return pb.GetModelGroupResponse(group=await self._registry.get_group(request.name))

    async def ListModelGroups(  # noqa: N802 - the generated method name
        self, request: pb.ListModelGroupsRequest, context: Context
    ) -> pb.ListModelGroupsResponse:
        page = page_of(request.page_size, request.page_token)
        groups = await self._registry.list_groups(page)
        return pb.ListModelGroupsResponse(
            groups=groups, next_page_token=next_token(page, len(groups))
        )

    async def UpdateModelGroup(  # noqa: N802 - the generated method name
        self, request: pb.UpdateModelGroupRequest, context: Context
    ) -> pb.UpdateModelGroupResponse:
        group = await self._registry.update_group(
            request.group, request.update_mask, _caller(context)
        )
        return pb.UpdateModelGroupResponse(group=group)

    async def DeleteModelGroup(  # noqa: N802 - the generated method name
        self, request: pb.DeleteModelGroupRequest, context: Context
    ) -> pb.DeleteModelGroupResponse:
        await self._registry.delete_group(request.name, _caller(context))
        return pb.DeleteModelGroupResponse()

    async def Resolve(  # noqa: N802 - the generated method name
        self, request: pb.ResolveRequest, context: Context
    ) -> pb.ResolveResponse:
        revision, snapshot = await self._feed.current()
        return resolve(snapshot, revision, request.ref)

    async def WatchRegistry(  # noqa: N802 - the generated method name
        self, request: pb.WatchRegistryRequest, context: Context
    ) -> AsyncIterator[pb.WatchRegistryResponse]:
        async for message in self._feed.watch(request.after_revision):
            yield message
