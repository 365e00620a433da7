"""The registry's operations on models, versions and model groups.

:class:`Registry` enforces the rules of the ``ModelRegistryService`` contract
on top of :class:`~services.models.store.RegistryStore`; alias operations live
in :mod:`services.models.aliases` and share :meth:`Registry.change`. Every
write runs in one transaction, records each resource change with
:func:`services.models.changes.record`, and calls ``on_commit`` once the
transaction committed (to wake the change feed and the event relay).

Errors are :mod:`services.kernel.errors` exceptions: INVALID_ARGUMENT with
field violations for bad input, NOT_FOUND / ALREADY_EXISTS with resource
info, FAILED_PRECONDITION for rule violations (each with a stable reason).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from google.protobuf import field_mask_pb2

from llmgw.models.v1 import models_pb2
from services.kernel.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.kernel.paging import Page, apply_mask
from services.kernel.secrets import Keyring
from services.models import validation
from services.models.caller import Caller
from services.models.changes import ChangeContext, record
from services.models.credentials import CredentialSealer
from services.models.refs import Ref, group_name, model_name, parse_ref, version_name
from services.models.store import RegistryReader, RegistryStore

MODEL_FIELDS = frozenset(
    {
        "display_name",
        "description",
        "default_alias",
        "project_id",
        "labels",
        "context_window_fallbacks",
    }
)
VERSION_FIELDS = frozenset(
    {
        "description",
        "labels",
        "pricing",
        "context_window",
        "max_output_tokens",
        "status",
        "capabilities",
        "timeouts",
        "credential",
    }
)
GROUP_FIELDS = frozenset(
    {
        "description",
        "deployments",
        "routing_strategy",
        "fallbacks",
        "max_retries",
        "labels",
        "context_window_fallbacks",
    }
)

_ARCHIVED = models_pb2.VERSION_STATUS_ARCHIVED
_DEPRECATED = models_pb2.VERSION_STATUS_DEPRECATED
_ACTIVE = models_pb2.VERSION_STATUS_ACTIVE
_REGISTERED = models_pb2.VERSION_STATUS_REGISTERED
_NEXT_STATUSES = {
    _REGISTERED: {_REGISTERED, _ACTIVE, _DEPRECATED, _ARCHIVED},
    _ACTIVE: {_ACTIVE, _DEPRECATED, _ARCHIVED},
    _DEPRECATED: {_DEPRECATED, _ACTIVE, _ARCHIVED},
    _ARCHIVED: {_ARCHIVED},
}


def invalid(violations: Sequence[FieldViolation], what: str) -> InvalidArgument:
    """An INVALID_ARGUMENT listing ``violations``; the reason is the first specific one."""
    reason = next((v.reason for v in violations if v.reason), None)
    fields = ", ".join(v.field for v in violations)
    return InvalidArgument(f"invalid {what}: {fields}", violations, reason=reason)


class Registry:
    """Models, versions and groups; see the module docstring for the contract."""

    def __init__(
        self,
        store: RegistryStore,
        rules: validation.Rules,
        *,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        keyring: Keyring | None = None,
    ) -> None:
        """Serve ``store`` under ``rules``; ``on_commit`` runs after each committed write.

        ``keyring`` encrypts plaintext credentials (none: they are refused).
        """
        self.store = store
        self.rules = rules
        self.sealer = CredentialSealer(keyring or Keyring([]))
        self._on_commit = on_commit
        self._clock = clock

    @contextlib.asynccontextmanager
    async def change(self, caller: Caller) -> AsyncIterator[ChangeContext]:
        """One write transaction for ``caller``'s request; notifies after commit."""
        async with self.store.write() as writer:
            ctx = ChangeContext(writer, caller, self._clock())
            yield ctx
            changed = writer.changed
        if changed:
            self._on_commit()

    # -- models -------------------------------------------------------------

    async def create_model(self, model: models_pb2.Model, caller: Caller) -> models_pb2.Model:
        """Create ``model``; ALREADY_EXISTS when a model or group has its name."""
        raise_if(validation.check_model(model, "model."), "model")
        created = models_pb2.Model()
        created.CopyFrom(model)
        async with self.change(caller) as ctx:
            await self.upsert_model(ctx, created, fresh=True)
        return created

    async def upsert_model(
        self, ctx: ChangeContext, model: models_pb2.Model, *, fresh: bool
    ) -> None:
        """Store ``model`` (output only fields reset); ``fresh`` refuses an existing one."""
        before = await ctx.writer.model(model.name)
        if before is not None and fresh:
            raise AlreadyExists("model", model.name)
        if await ctx.writer.group(model.name) is not None:
            raise AlreadyExists("model group", model.name, "a model group has this name")
        model.ClearField("revision")
        if before is None:
            model.create_time.CopyFrom(ctx.timestamp())
        else:
            model.create_time.CopyFrom(before.create_time)
        await record(
            ctx,
            resource=model,
            name=model_name(model.name),
            action="models.create" if before is None else "models.update",
            before=before,
            save=lambda: ctx.writer.save_model(model),
        )

    async def get_model(self, name: str) -> models_pb2.Model:
        """The model called ``name``; NOT_FOUND otherwise."""
        async with self.store.read() as reader:
            return await find_model(reader, name)

    async def list_models(self, project_id: str, page: Page) -> list[models_pb2.Model]:
        """Models ordered by name."""
        async with self.store.read() as reader:
            return await reader.models(project_id, page)

    async def update_model(
        self, model: models_pb2.Model, mask: field_mask_pb2.FieldMask, caller: Caller
    ) -> models_pb2.Model:
        """Apply the fields of ``mask`` from ``model`` to the stored model."""
        async with self.change(caller) as ctx:
            updated = await find_model(ctx.writer, model.name)
            apply_mask(updated, model, mask, MODEL_FIELDS, prefix="model.")
            raise_if(validation.check_model(updated, "model."), "model")
            await self.upsert_model(ctx, updated, fresh=False)
        return updated

    async def delete_model(self, name: str, caller: Caller) -> None:
        """Delete a model without ACTIVE versions, aliases or group references.

        Its remaining (registered, deprecated or archived) versions go with it.
        """
        async with self.change(caller) as ctx:
            model = await find_model(ctx.writer, name)
            if await ctx.writer.aliases(name, Page(0, 1)):
                raise FailedPrecondition(
                    f"model {name!r} still has aliases; delete them first", reason="MODEL_IN_USE"
                )
            versions = await ctx.writer.versions(name, (), Page(0, 1_000_000))
            if any(v.status == _ACTIVE for v in versions):
                raise FailedPrecondition(
                    f"model {name!r} has ACTIVE versions; deprecate them first",
                    reason="MODEL_IN_USE",
                )
            await refuse_group_references(ctx, lambda ref: ref.name == name, f"model {name!r}")
            for version in versions:
                await record(
                    ctx,
                    resource=version,
                    name=version_name(name, version.version),
                    action="models.versions.delete",
                    before=version,
                    save=None,
                    deleted=True,
                )
            await ctx.writer.delete_versions(name)
            await ctx.writer.delete_model(name)
            await record(
                ctx,
                resource=model,
                name=model_name(name),
                action="models.delete",
                before=model,
                save=None,
                deleted=True,
            )

    # -- versions -----------------------------------------------------------

    async def create_version(
        self, version: models_pb2.ModelVersion, caller: Caller
    ) -> models_pb2.ModelVersion:
        """Register ``version`` in status REGISTERED (id assigned when empty)."""
        raise_if(validation.check_version(version, "version.", self.rules), "version")
        created = models_pb2.ModelVersion()
        created.CopyFrom(version)
        created.status = models_pb2.VERSION_STATUS_REGISTERED
        async with self.change(caller) as ctx:
            await self.insert_version(ctx, created)
        return created

    async def insert_version(self, ctx: ChangeContext, version: models_pb2.ModelVersion) -> None:
        """Store a new version; NOT_FOUND without its model, ALREADY_EXISTS on a duplicate id."""
        await find_model(ctx.writer, version.model)
        if not version.version:
            number = await ctx.writer.count_versions(version.model) + 1
            while await ctx.writer.version(version.model, str(number)) is not None:
                number += 1
            version.version = str(number)
        elif await ctx.writer.version(version.model, version.version) is not None:
            raise AlreadyExists(
                "model version",
                version_name(version.model, version.version),
                f"version {version.version!r} of model {version.model!r} exists already",
                reason="DUPLICATE_VERSION",
            )
        if version.status == models_pb2.VERSION_STATUS_UNSPECIFIED:
            version.status = _REGISTERED
        if version.origin.type == models_pb2.VERSION_ORIGIN_TYPE_UNSPECIFIED:
            version.origin.type = models_pb2.VERSION_ORIGIN_TYPE_MANUAL
        version.create_time.CopyFrom(ctx.timestamp())
        self.sealer.seal(version, None)
        await record(
            ctx,
            resource=version,
            name=version_name(version.model, version.version),
            action="models.versions.create",
            before=None,
            save=lambda: ctx.writer.save_version(version),
        )

    async def get_version(self, model: str, version: str) -> models_pb2.ModelVersion:
        """One version; NOT_FOUND otherwise."""
        async with self.store.read() as reader:
            return await find_version(reader, model, version)

    async def list_versions(
        self, model: str, statuses: Sequence[int], page: Page
    ) -> list[models_pb2.ModelVersion]:
        """Versions of an existing model, newest first."""
        async with self.store.read() as reader:
            await find_model(reader, model)
            return await reader.versions(model, statuses, page)

    async def update_version(
        self,
        version: models_pb2.ModelVersion,
        mask: field_mask_pb2.FieldMask,
        caller: Caller,
    ) -> models_pb2.ModelVersion:
        """Apply ``mask``; a status change must follow the lifecycle (module rules)."""
        async with self.change(caller) as ctx:
            updated = await find_version(ctx.writer, version.model, version.version)
            paths = apply_mask(updated, version, mask, VERSION_FIELDS, prefix="version.")
            if "status" in paths:
                before = await find_version(ctx.writer, version.model, version.version)
                await self.check_status_change(ctx, before, updated.status)
            raise_if(validation.check_version(updated, "version.", self.rules), "version")
            await self.save_version(ctx, updated, "models.versions.update")
        return updated

    async def check_status_change(
        self,
        ctx: ChangeContext,
        version: models_pb2.ModelVersion,
        status: models_pb2.VersionStatus.ValueType,
    ) -> None:
        """Refuse a status move the lifecycle forbids, or archiving a version in use."""
        if status == models_pb2.VERSION_STATUS_UNSPECIFIED:
            raise InvalidArgument(
                "status must be set",
                [FieldViolation("version.status", "must not be UNSPECIFIED")],
            )
        if status not in _NEXT_STATUSES[version.status]:
            raise FailedPrecondition(
                f"version {version.version!r} of {version.model!r} cannot move from "
                f"{models_pb2.VersionStatus.Name(version.status)} to "
                f"{models_pb2.VersionStatus.Name(status)}",
                reason="INVALID_STATUS_TRANSITION",
            )
        if status != _ARCHIVED or version.status == _ARCHIVED:
            return
        aliases = await ctx.writer.aliases_targeting(version.model, version.version)
        if aliases:
            names = ", ".join(f"{a.model}@{a.alias}" for a in aliases)
            raise FailedPrecondition(
                f"version {version.version!r} of {version.model!r} is the target of {names}; "
                "move those aliases first",
                reason="VERSION_IN_USE",
            )
        await refuse_group_references(
            ctx,
            lambda ref: ref.name == version.model and ref.version == version.version,
            f"version {version.version!r} of {version.model!r}",
        )

    async def save_version(
        self, ctx: ChangeContext, version: models_pb2.ModelVersion, action: str
    ) -> None:
        """Record an updated version (its credential sealed first)."""
        before = await ctx.writer.version(version.model, version.version)
        self.sealer.seal(version, before)
        await record(
            ctx,
            resource=version,
            name=version_name(version.model, version.version),
            action=action,
            before=before,
            save=lambda: ctx.writer.save_version(version),
        )

    # -- groups -------------------------------------------------------------

    async def create_group(
        self, group: models_pb2.ModelGroup, caller: Caller
    ) -> models_pb2.ModelGroup:
        """Create a group whose references all resolve; ALREADY_EXISTS on a taken name."""
        raise_if(validation.check_group(group, "group."), "group")
        created = models_pb2.ModelGroup()
        created.CopyFrom(group)
        async with self.change(caller) as ctx:
            await self.upsert_group(ctx, created, fresh=True)
        return created

    async def upsert_group(
        self, ctx: ChangeContext, group: models_pb2.ModelGroup, *, fresh: bool
    ) -> None:
        """Store ``group`` after checking its references against the registry."""
        before = await ctx.writer.group(group.name)
        if before is not None and fresh:
            raise AlreadyExists("model group", group.name)
        if await ctx.writer.model(group.name) is not None:
            raise AlreadyExists("model", group.name, "a model has this name")
        problems: list[FieldViolation] = []
        for index, deployment in enumerate(group.deployments):
            if not await ref_exists(ctx.writer, deployment.model_ref, groups=False):
                problems.append(
                    FieldViolation(
                        f"group.deployments[{index}].model_ref",
                        f"{deployment.model_ref!r} does not exist",
                        "UNKNOWN_REFERENCE",
                    )
                )
        for field in ("fallbacks", "context_window_fallbacks"):
            for index, ref in enumerate(getattr(group, field)):
                if ref != group.name and not await ref_exists(ctx.writer, ref, groups=True):
                    problems.append(
                        FieldViolation(
                            f"group.{field}[{index}]",
                            f"{ref!r} does not exist",
                            "UNKNOWN_REFERENCE",
                        )
                    )
        raise_if(problems, "group")
        group.ClearField("revision")
        group.create_time.CopyFrom(before.create_time if before else ctx.timestamp())
        await record(
            ctx,
            resource=group,
            name=group_name(group.name),
            action="models.groups.create" if before is None else "models.groups.update",
            before=before,
            save=lambda: ctx.writer.save_group(group),
        )

    async def get_group(self, name: str) -> models_pb2.ModelGroup:
        """The group called ``name``; NOT_FOUND otherwise."""
        async with self.store.read() as reader:
            return await _group(reader, name)

    async def list_groups(self, page: Page) -> list[models_pb2.ModelGroup]:
        """Groups ordered by name."""
        async with self.store.read() as reader:
            return await reader.groups(page)

    async def update_group(
        self, group: models_pb2.ModelGroup, mask: field_mask_pb2.FieldMask, caller: Caller
    ) -> models_pb2.ModelGroup:
        """Apply ``mask`` from ``group`` to the stored group."""
        async with self.change(caller) as ctx:
            updated = await _group(ctx.writer, group.name)
            apply_mask(updated, group, mask, GROUP_FIELDS, prefix="group.")
            raise_if(validation.check_group(updated, "group."), "group")
            await self.upsert_group(ctx, updated, fresh=False)
        return updated

    async def delete_group(self, name: str, caller: Caller) -> None:
        """Delete a group no other group names as a fallback."""
        async with self.change(caller) as ctx:
            group = await _group(ctx.writer, name)
            await refuse_group_references(
                ctx, lambda ref: ref.bare and ref.name == name, f"group {name!r}", skip=name
            )
            await ctx.writer.delete_group(name)
            await record(
                ctx,
                resource=group,
                name=group_name(name),
                action="models.groups.delete",
                before=group,
                save=None,
                deleted=True,
            )


def raise_if(violations: Sequence[FieldViolation], what: str) -> None:
    if violations:
        raise invalid(violations, what)


async def find_model(reader: RegistryReader, name: str) -> models_pb2.Model:
    model = await reader.model(name)
    if model is None:
        raise NotFound("model", name)
    return model


async def find_version(reader: RegistryReader, model: str, version: str) -> models_pb2.ModelVersion:
    found = await reader.version(model, version)
    if found is None:
        raise NotFound("model version", version_name(model, version))
    return found


async def _group(reader: RegistryReader, name: str) -> models_pb2.ModelGroup:
    group = await reader.group(name)
    if group is None:
        raise NotFound("model group", name)
    return group


async def ref_exists(reader: RegistryReader, ref: str, *, groups: bool) -> bool:
    parsed = parse_ref(ref)
    if parsed is None:
        return False
    if parsed.version:
        found = await reader.version(parsed.name, parsed.version)
        return found is not None and found.status != _ARCHIVED
    if parsed.alias:
        return await reader.alias(parsed.name, parsed.alias) is not None
    if await reader.model(parsed.name) is not None:
        return True
    return groups and await reader.group(parsed.name) is not None


async def refuse_group_references(
    ctx: ChangeContext,
    matches: Callable[[Ref], bool],
    what: str,
    *,
    skip: str = "",
) -> None:
    """FAILED_PRECONDITION when a group (other than ``skip``) refers to ``what``."""
    for group in await ctx.writer.groups(Page(0, 1_000_000)):
        if group.name == skip:
            continue
        refs = [
            *(d.model_ref for d in group.deployments),
            *group.fallbacks,
            *group.context_window_fallbacks,
        ]
        if any((parsed := parse_ref(ref)) is not None and matches(parsed) for ref in refs):
            raise FailedPrecondition(
                f"{what} is used by model group {group.name!r}", reason="REFERENCED_BY_GROUP"
            )
