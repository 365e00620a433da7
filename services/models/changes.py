"""Recording one registry change: revision, timestamps, change feed row and audit entry.

:func:`record` is the only way resources are written, so every write gets a
new revision, a ``RegistryChange`` (for ``WatchRegistry`` and ``ModelChanged``)
and an ``AuditEntry`` with the state before and after (for ``AuditRecorded``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.rpc import status_pb2

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2
from services.models.caller import Caller
from services.models.store import RegistryWriter

Resource = models_pb2.Model | models_pb2.ModelVersion | models_pb2.Alias | models_pb2.ModelGroup
Kind = Literal["model", "version", "alias", "group"]

_KIND_OF: dict[type, Kind] = {
    models_pb2.Model: "model",
    models_pb2.ModelVersion: "version",
    models_pb2.Alias: "alias",
    models_pb2.ModelGroup: "group",
}


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """The writer, the caller and the moment shared by the changes of one request."""

    writer: RegistryWriter
    caller: Caller
    now: datetime

    def timestamp(self) -> timestamp_pb2.Timestamp:
        """``now`` as a protobuf timestamp."""
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(self.now)
        return stamp


async def record(
    ctx: ChangeContext,
    *,
    resource: Resource,
    name: str,
    action: str,
    before: Resource | None,
    save: Callable[[], Awaitable[None]] | None,
    deleted: bool = False,
) -> int:
    """Stamp ``resource`` with a new revision, store it with ``save`` and log the change.

    ``resource`` is the new state (the last state when ``deleted``); ``save`` runs
    after the stamp (``None`` when the caller deletes the row itself). Returns the
    revision.
    """
    revision = ctx.writer.next_revision()
    if not deleted:
        resource.revision = revision
        resource.update_time.CopyFrom(ctx.timestamp())
    if save is not None:
        await save()
    kind = _KIND_OF[type(resource)]
    change = models_pb2.RegistryChange(
        change_type=models_pb2.CHANGE_TYPE_DELETED if deleted else models_pb2.CHANGE_TYPE_UPSERTED,
        revision=revision,
        change_time=ctx.timestamp(),
        actor=ctx.caller.actor,
    )
    getattr(change, kind).CopyFrom(resource)
    await ctx.writer.record_change(
        name,
        change,
        _audit(ctx, name, action=action, before=before, after=resource, deleted=deleted),
    )
    return revision


def _audit(
    ctx: ChangeContext,
    name: str,
    *,
    action: str,
    before: Resource | None,
    after: Resource,
    deleted: bool,
) -> common_pb2.AuditEntry:
    details = struct_pb2.Struct()
    details.update(
        {
            "before": _as_dict(before),
            "after": None if deleted else _as_dict(after),
        }
    )
    return common_pb2.AuditEntry(
        id=uuid.uuid4().hex,
        time=ctx.timestamp(),
        actor=ctx.caller.actor,
        action=action,
        resource=name,
        status=status_pb2.Status(code=0),
        request_id=ctx.caller.request_id,
        client_address=ctx.caller.client_address,
        user_agent=ctx.caller.user_agent,
        details=details,
    )


def _as_dict(resource: Resource | None) -> dict[str, Any] | None:
    if resource is None:
        return None
    return json_format.MessageToDict(resource, preserving_proto_field_name=True)
