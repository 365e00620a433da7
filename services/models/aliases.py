"""Alias operations: create, update, delete, promote, roll back, history.

Every change of an alias appends an :class:`AliasHistoryEntry` (sequence 1, 2, ...
per alias, kept after the alias is deleted) recording the target and split
before and after. A version that becomes an alias target turns ACTIVE.

Rules (FAILED_PRECONDITION with the reason in brackets):

- an alias may not target an ARCHIVED version [VERSION_ARCHIVED] nor newly
  target a DEPRECATED one [VERSION_DEPRECATED];
- ``expected_history_sequence``, when non-zero, must equal the alias's
  current sequence [HISTORY_SEQUENCE_MISMATCH];
- rollback may restore a DEPRECATED target (never an ARCHIVED one);
- a canary promotion needs an existing alias with another version [NO_ALIAS_TO_SPLIT];
- rollback needs an earlier entry with a target [NOTHING_TO_ROLL_BACK];
- an alias a model group uses cannot be deleted [REFERENCED_BY_GROUP].
"""

from __future__ import annotations

from dataclasses import dataclass

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
from services.models import validation
from services.models.caller import Caller
from services.models.changes import ChangeContext, record
from services.models.refs import alias_name
from services.models.registry import (
    Registry,
    find_model,
    find_version,
    raise_if,
    refuse_group_references,
)
from services.models.store import RegistryReader

ALIAS_FIELDS = frozenset({"version", "traffic_split", "description"})

_CHANGE_ACTIONS = {
    models_pb2.ALIAS_CHANGE_TYPE_CREATED: "models.aliases.create",
    models_pb2.ALIAS_CHANGE_TYPE_UPDATED: "models.aliases.update",
    models_pb2.ALIAS_CHANGE_TYPE_PROMOTED: "models.aliases.promote",
    models_pb2.ALIAS_CHANGE_TYPE_ROLLED_BACK: "models.aliases.rollback",
    models_pb2.ALIAS_CHANGE_TYPE_DELETED: "models.aliases.delete",
}


@dataclass(frozen=True, slots=True)
class AliasChange:
    """What an alias write returns: the alias after it and its history entry."""

    alias: models_pb2.Alias
    entry: models_pb2.AliasHistoryEntry


class Aliases:
    """Alias operations of one :class:`~services.models.registry.Registry`."""

    def __init__(self, registry: Registry) -> None:
        """Write through ``registry``'s transactions."""
        self._registry = registry

    async def create(self, alias: models_pb2.Alias, reason: str, caller: Caller) -> AliasChange:
        """Create ``alias``; ALREADY_EXISTS when the model has it already."""
        raise_if(validation.check_alias(alias, "alias."), "alias")
        async with self._registry.change(caller) as ctx:
            await find_model(ctx.writer, alias.model)
            if await ctx.writer.alias(alias.model, alias.alias) is not None:
                raise AlreadyExists("alias", alias_name(alias.model, alias.alias))
            created = models_pb2.Alias(
                model=alias.model, alias=alias.alias, description=alias.description
            )
            created.create_time.CopyFrom(ctx.timestamp())
            return await self._move(
                ctx,
                None,
                created,
                version=alias.version,
                split=alias.traffic_split,
                change_type=models_pb2.ALIAS_CHANGE_TYPE_CREATED,
                reason=reason,
            )

    async def put(self, ctx: ChangeContext, alias: models_pb2.Alias, reason: str) -> bool:
        """Make the stored alias equal ``alias`` (target, split, description) within ``ctx``.

        Creates it, updates it, or does nothing when it is equal already; returns
        whether anything changed. The model must exist.
        """
        raise_if(validation.check_alias(alias, "alias."), "alias")
        await find_model(ctx.writer, alias.model)
        before = await ctx.writer.alias(alias.model, alias.alias)
        if before is None:
            after = models_pb2.Alias(
                model=alias.model, alias=alias.alias, description=alias.description
            )
            after.create_time.CopyFrom(ctx.timestamp())
            change_type = models_pb2.ALIAS_CHANGE_TYPE_CREATED
        else:
            same = (
                before.version == alias.version
                and before.traffic_split == alias.traffic_split
                and before.description == alias.description
            )
            if same:
                return False
            after = models_pb2.Alias()
            after.CopyFrom(before)
            after.description = alias.description
            change_type = models_pb2.ALIAS_CHANGE_TYPE_UPDATED
        await self._move(
            ctx,
            before,
            after,
            version=alias.version,
            split=alias.traffic_split,
            change_type=change_type,
            reason=reason,
        )
        return True

    async def get(self, model: str, alias: str) -> models_pb2.Alias:
        """One alias; NOT_FOUND otherwise."""
        async with self._registry.store.read() as reader:
            return await _alias(reader, model, alias)

    async def list_aliases(self, model: str, page: Page) -> list[models_pb2.Alias]:
        """Aliases of ``model`` (all models when empty), by model and name."""
        async with self._registry.store.read() as reader:
            if model:
                await find_model(reader, model)
            return await reader.aliases(model, page)

    async def update(
        self,
        alias: models_pb2.Alias,
        mask: field_mask_pb2.FieldMask,
        reason: str,
        expected_sequence: int,
        caller: Caller,
    ) -> AliasChange:
        """Apply ``mask`` (version, traffic_split, description) to the stored alias."""
        async with self._registry.change(caller) as ctx:
            before = await _alias(ctx.writer, alias.model, alias.alias)
            _check_sequence(before, expected_sequence)
            wanted = models_pb2.Alias()
            wanted.CopyFrom(before)
            apply_mask(wanted, alias, mask, ALIAS_FIELDS, prefix="alias.")
            raise_if(validation.check_split(wanted, "alias."), "alias")
            after = models_pb2.Alias()
            after.CopyFrom(before)
            after.description = wanted.description
            return await self._move(
                ctx,
                before,
                after,
                version=wanted.version,
                split=wanted.traffic_split,
                change_type=models_pb2.ALIAS_CHANGE_TYPE_UPDATED,
                reason=reason,
            )

    async def delete(self, model: str, alias: str, reason: str, caller: Caller) -> None:
        """Delete an alias no group uses; its history stays."""
        async with self._registry.change(caller) as ctx:
            before = await _alias(ctx.writer, model, alias)
            await refuse_group_references(
                ctx,
                lambda ref: ref.name == model and ref.alias == alias,
                f"alias {model}@{alias}",
            )
            entry = await self._history(
                ctx, before, None, change_type=models_pb2.ALIAS_CHANGE_TYPE_DELETED, reason=reason
            )
            await ctx.writer.delete_alias(model, alias)
            revision = await record(
                ctx,
                resource=before,
                name=alias_name(model, alias),
                action=_CHANGE_ACTIONS[entry.change_type],
                before=before,
                save=None,
                deleted=True,
            )
            entry.revision = revision
            await ctx.writer.add_history(entry)

    async def promote(
        self,
        request: models_pb2.PromoteVersionRequest,
        caller: Caller,
    ) -> AliasChange:
        """Point the alias at the version, fully or as a canary split; see the module rules."""
        canary = request.HasField("canary_weight_percent")
        if canary and not 1 <= request.canary_weight_percent <= 99:
            raise InvalidArgument(
                "canary_weight_percent must be 1 to 99",
                [
                    FieldViolation(
                        "canary_weight_percent", "must be 1 to 99", "INVALID_TRAFFIC_SPLIT"
                    )
                ],
                reason="INVALID_TRAFFIC_SPLIT",
            )
        probe = models_pb2.Alias(model=request.model, alias=request.alias, version=request.version)
        raise_if(validation.check_alias(probe, ""), "promotion")
        async with self._registry.change(caller) as ctx:
            await find_model(ctx.writer, request.model)
            before = await ctx.writer.alias(request.model, request.alias)
            if before is not None:
                _check_sequence(before, request.expected_history_sequence)
            if canary:
                if before is None or before.version == request.version:
                    raise FailedPrecondition(
                        f"a canary of {request.version!r} needs alias "
                        f"{request.model}@{request.alias} pointing at another version",
                        reason="NO_ALIAS_TO_SPLIT",
                    )
                version = before.version
                split = models_pb2.TrafficSplit(
                    version=request.version, weight_percent=request.canary_weight_percent
                )
            else:
                version, split = request.version, models_pb2.TrafficSplit()
            after = models_pb2.Alias()
            if before is not None:
                after.CopyFrom(before)
            else:
                after.model, after.alias = request.model, request.alias
                after.create_time.CopyFrom(ctx.timestamp())
            return await self._move(
                ctx,
                before,
                after,
                version=version,
                split=split,
                change_type=models_pb2.ALIAS_CHANGE_TYPE_PROMOTED,
                reason=request.reason,
                strict={request.version},
            )

    async def rollback(
        self, model: str, alias: str, to_sequence: int, reason: str, caller: Caller
    ) -> AliasChange:
        """Restore the target and split the alias had after entry ``to_sequence``
        (0: the entry before the latest)."""
        async with self._registry.change(caller) as ctx:
            before = await _alias(ctx.writer, model, alias)
            latest = before.history_sequence
            sequence = to_sequence or latest - 1
            if sequence < 1 or sequence >= latest + 1:
                raise FailedPrecondition(
                    f"alias {model}@{alias} has no entry {sequence} to roll back to",
                    reason="NOTHING_TO_ROLL_BACK",
                )
            entry = await ctx.writer.history_entry(model, alias, sequence)
            if entry is None or not entry.version:
                raise FailedPrecondition(
                    f"entry {sequence} of {model}@{alias} holds no target to restore",
                    reason="NOTHING_TO_ROLL_BACK",
                )
            after = models_pb2.Alias()
            after.CopyFrom(before)
            return await self._move(
                ctx,
                before,
                after,
                version=entry.version,
                split=entry.traffic_split,
                change_type=models_pb2.ALIAS_CHANGE_TYPE_ROLLED_BACK,
                reason=reason,
                restored=sequence,
                deprecated_ok=True,
            )

    async def history(
        self, model: str, alias: str, page: Page
    ) -> list[models_pb2.AliasHistoryEntry]:
        """An alias's history, newest first; NOT_FOUND when it never existed."""
        async with self._registry.store.read() as reader:
            await find_model(reader, model)
            if not await reader.last_history_sequence(model, alias):
                raise NotFound("alias", alias_name(model, alias))
            return await reader.history(model, alias, page)

    async def _move(
        self,
        ctx: ChangeContext,
        before: models_pb2.Alias | None,
        after: models_pb2.Alias,
        *,
        version: str,
        split: models_pb2.TrafficSplit,
        change_type: models_pb2.AliasChangeType.ValueType,
        reason: str,
        restored: int = 0,
        strict: set[str] | None = None,
        deprecated_ok: bool = False,
    ) -> AliasChange:
        """Point ``after`` at ``version``/``split``, activate targets and record both."""
        old = {before.version, before.traffic_split.version} if before is not None else set()
        targets = [(version, "version"), (split.version, "traffic_split.version")]
        for target, field in targets:
            if not target:
                continue
            found = await find_version(ctx.writer, after.model, target)
            new_target = not deprecated_ok and (
                target not in old or (strict is not None and target in strict)
            )
            await _check_target(found, field, new_target=new_target)
            if found.status == models_pb2.VERSION_STATUS_REGISTERED:
                found.status = models_pb2.VERSION_STATUS_ACTIVE
                await self._registry.save_version(ctx, found, "models.versions.activate")
        after.version = version
        after.traffic_split.CopyFrom(split)
        if not split.version:
            after.ClearField("traffic_split")
        entry = await self._history(
            ctx, before, after, change_type=change_type, reason=reason, restored=restored
        )
        after.history_sequence = entry.sequence
        entry.revision = await record(
            ctx,
            resource=after,
            name=alias_name(after.model, after.alias),
            action=_CHANGE_ACTIONS[change_type],
            before=before,
            save=lambda: ctx.writer.save_alias(after),
        )
        entry.change_time.CopyFrom(ctx.timestamp())
        await ctx.writer.add_history(entry)
        return AliasChange(after, entry)

    async def _history(
        self,
        ctx: ChangeContext,
        before: models_pb2.Alias | None,
        after: models_pb2.Alias | None,
        *,
        change_type: models_pb2.AliasChangeType.ValueType,
        reason: str,
        restored: int = 0,
    ) -> models_pb2.AliasHistoryEntry:
        subject = after if after is not None else before
        assert subject is not None
        entry = models_pb2.AliasHistoryEntry(
            model=subject.model,
            alias=subject.alias,
            sequence=await ctx.writer.last_history_sequence(subject.model, subject.alias) + 1,
            change_type=change_type,
            restored_sequence=restored,
            actor=ctx.caller.actor,
            reason=reason,
            change_time=ctx.timestamp(),
        )
        if after is not None:
            entry.version = after.version
            if after.HasField("traffic_split"):
                entry.traffic_split.CopyFrom(after.traffic_split)
        if before is not None:
            entry.previous_version = before.version
            if before.HasField("traffic_split"):
                entry.previous_traffic_split.CopyFrom(before.traffic_split)
        return entry


async def _alias(reader: RegistryReader, model: str, alias: str) -> models_pb2.Alias:
    found = await reader.alias(model, alias)
    if found is None:
        raise NotFound("alias", alias_name(model, alias))
    return found


def _check_sequence(alias: models_pb2.Alias, expected: int) -> None:
    if expected and alias.history_sequence != expected:
        raise FailedPrecondition(
            f"alias {alias.model}@{alias.alias} is at history sequence "
            f"{alias.history_sequence}, not {expected}",
            reason="HISTORY_SEQUENCE_MISMATCH",
        )


async def _check_target(version: models_pb2.ModelVersion, field: str, *, new_target: bool) -> None:
    if version.status == models_pb2.VERSION_STATUS_ARCHIVED:
        raise FailedPrecondition(
            f"{field}: version {version.version!r} of {version.model!r} is ARCHIVED",
            reason="VERSION_ARCHIVED",
        )
    if new_target and version.status == models_pb2.VERSION_STATUS_DEPRECATED:
        raise FailedPrecondition(
            f"{field}: version {version.version!r} of {version.model!r} is DEPRECATED",
            reason="VERSION_DEPRECATED",
        )
