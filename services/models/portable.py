"""The whole registry as a YAML document, for GitOps and for seeding a deployment.

The document has the shape of a ``RegistrySnapshot`` in proto JSON (the same
format as the inference service's routing file)::

    models:   [{name: support-bot, description: ...}]
    versions: [{model: support-bot, version: "1", provider: openai, ...}]
    aliases:  [{model: support-bot, alias: production, version: "1"}]
    groups:   [{name: chat, deployments: [{id: a, model_ref: support-bot@production}]}]

:func:`export_registry` writes every resource (ARCHIVED versions included)
without output only fields. :func:`import_registry` makes the registry hold
every entry of a document:

- **validated**: every entry is parsed and checked before anything is written;
  errors are INVALID_ARGUMENT naming the entry, e.g.
  ``versions[2] (support-bot/versions/3): pricing.input_per_million_nanos ...``;
- **transactional**: all entries are applied in one transaction, or none;
- **idempotent**: an entry equal to the stored resource changes nothing, so
  importing the same document twice records no change the second time;
- **additive**: resources the document does not mention are kept.

A version's ``status`` left out keeps the stored status (REGISTERED for a new
version); ``provider``, ``provider_model_id`` and ``origin`` of a stored
version cannot change. A ``credential.plaintext_value`` is encrypted on import
(see :mod:`services.models.credentials`); the export holds only the
``encrypted_value``, which imports back unchanged into a registry with the key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from llmgw.models.v1 import models_pb2
from services.kernel.errors import FieldViolation, InvalidArgument, LlmgwError
from services.models import validation
from services.models.aliases import Aliases
from services.models.caller import Caller
from services.models.changes import ChangeContext
from services.models.registry import Registry, raise_if

_SECTIONS: Mapping[str, Callable[[], Message]] = {
    "models": models_pb2.Model,
    "versions": models_pb2.ModelVersion,
    "aliases": models_pb2.Alias,
    "groups": models_pb2.ModelGroup,
}
_OUTPUT_ONLY = ("revision", "create_time", "update_time", "history_sequence")
_IMMUTABLE_VERSION_FIELDS = ("provider", "provider_model_id", "origin")
IMPORT_REASON = "registry import"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """How many entries the import created or changed, and the revision after it."""

    changed: int
    revision: int


async def export_registry(registry: Registry) -> str:
    """The whole registry as a YAML document (module docstring)."""
    async with registry.store.consistent_read() as reader:
        snapshot = await reader.snapshot(include_archived=True)
    document: dict[str, list[dict[str, Any]]] = {}
    for section in _SECTIONS:
        entries = []
        for message in getattr(snapshot, section):
            for field in _OUTPUT_ONLY:
                if field in message.DESCRIPTOR.fields_by_name:
                    message.ClearField(field)
            entries.append(json_format.MessageToDict(message, preserving_proto_field_name=True))
        document[section] = entries
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def parse_document(text: str) -> models_pb2.RegistrySnapshot:
    """Parse and check a document; INVALID_ARGUMENT naming every bad entry."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(
            "the registry document is not valid YAML",
            [FieldViolation("document", str(exc))],
        ) from exc
    document = document or {}
    if not isinstance(document, Mapping):
        raise InvalidArgument(
            "the registry document must be a mapping of models, versions, aliases, groups",
            [FieldViolation("document", "must be a mapping")],
        )
    problems: list[FieldViolation] = [
        FieldViolation(str(key), "unknown section") for key in document if key not in _SECTIONS
    ]
    snapshot = models_pb2.RegistrySnapshot()
    for section, make in _SECTIONS.items():
        entries = document.get(section) or []
        if not isinstance(entries, list):
            problems.append(FieldViolation(section, "must be a list"))
            continue
        for index, entry in enumerate(entries):
            message = make()
            try:
                if not isinstance(entry, Mapping):
                    raise TypeError("must be a mapping")
                json_format.ParseDict(dict(entry), message)
            except (json_format.ParseError, TypeError, ValueError) as exc:
                problems.append(FieldViolation(f"{section}[{index}]", str(exc)))
                continue
            getattr(snapshot, section).append(message)
    raise_if(problems, "registry document")
    return snapshot


async def import_registry(registry: Registry, text: str, caller: Caller) -> ImportResult:
    """Apply a document (module docstring); returns what changed."""
    snapshot = parse_document(text)
    _check_fields(snapshot, registry.rules)
    aliases = Aliases(registry)
    changed = 0
    async with registry.change(caller) as ctx:
        for index, model in enumerate(snapshot.models):
            with _naming(f"models[{index}] ({model.name})"):
                changed += await _put_model(registry, ctx, model)
        for index, version in enumerate(snapshot.versions):
            with _naming(f"versions[{index}] ({version.model}/versions/{version.version})"):
                changed += await _put_version(registry, ctx, version)
        for index, alias in enumerate(snapshot.aliases):
            with _naming(f"aliases[{index}] ({alias.model}@{alias.alias})"):
                changed += await aliases.put(ctx, alias, IMPORT_REASON)
        for index, group in enumerate(snapshot.groups):
            with _naming(f"groups[{index}] ({group.name})"):
                changed += await _put_group(registry, ctx, group)
        revision = ctx.writer.last_revision
    return ImportResult(changed=changed, revision=revision)


def _check_fields(snapshot: models_pb2.RegistrySnapshot, rules: validation.Rules) -> None:
    problems: list[FieldViolation] = []
    for index, model in enumerate(snapshot.models):
        problems += validation.check_model(model, f"models[{index}] ({model.name}).")
    for index, version in enumerate(snapshot.versions):
        label = f"versions[{index}] ({version.model}/versions/{version.version})."
        if not version.version:
            problems.append(FieldViolation(f"{label}version", "is required in a document"))
        problems += validation.check_version(version, label, rules)
    for index, alias in enumerate(snapshot.aliases):
        problems += validation.check_alias(
            alias, f"aliases[{index}] ({alias.model}@{alias.alias})."
        )
    for index, group in enumerate(snapshot.groups):
        problems += validation.check_group(group, f"groups[{index}] ({group.name}).")
    raise_if(problems, "registry document")


@contextlib.contextmanager
def _naming(label: str) -> Iterator[None]:
    """Re-raise any registry error inside the block as INVALID_ARGUMENT naming ``label``."""
    try:
        yield
    except LlmgwError as exc:
        violations = [
            FieldViolation(
                f"{label}.{v.field.partition('.')[2] or v.field}", v.description, v.reason
            )
            for v in getattr(exc, "violations", ())
        ] or [FieldViolation(label, exc.message, exc.reason)]
        raise InvalidArgument(f"{label}: {exc.message}", violations, reason=exc.reason) from exc


def _stripped(message: Message) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    for field in _OUTPUT_ONLY:
        if field in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(field)
    return copy


async def _put_model(registry: Registry, ctx: ChangeContext, model: models_pb2.Model) -> int:
    stored = await ctx.writer.model(model.name)
    wanted = _stripped(model)
    assert isinstance(wanted, models_pb2.Model)
    if stored is not None and _stripped(stored) == wanted:
        return 0
    await registry.upsert_model(ctx, wanted, fresh=False)
    return 1


async def _put_version(
    registry: Registry, ctx: ChangeContext, version: models_pb2.ModelVersion
) -> int:
    wanted = _stripped(version)
    assert isinstance(wanted, models_pb2.ModelVersion)
    if wanted.origin.type == models_pb2.VERSION_ORIGIN_TYPE_UNSPECIFIED:
        wanted.origin.type = models_pb2.VERSION_ORIGIN_TYPE_MANUAL
    if await ctx.writer.model(wanted.model) is None:
        await registry.upsert_model(ctx, models_pb2.Model(name=wanted.model), fresh=True)
    stored = await ctx.writer.version(wanted.model, wanted.version)
    if stored is None:
        await registry.insert_version(ctx, wanted)
        return 1
    if wanted.status == models_pb2.VERSION_STATUS_UNSPECIFIED:
        wanted.status = stored.status
    registry.sealer.seal(wanted, stored)
    if _stripped(stored) == wanted:
        return 0
    changed = [f for f in _IMMUTABLE_VERSION_FIELDS if getattr(stored, f) != getattr(wanted, f)]
    if changed:
        raise InvalidArgument(
            "a registered version cannot change " + ", ".join(changed),
            [FieldViolation(field, "is immutable once registered") for field in changed],
            reason="IMMUTABLE_FIELD",
        )
    if wanted.status != stored.status:
        await registry.check_status_change(ctx, stored, wanted.status)
    wanted.create_time.CopyFrom(stored.create_time)
    await registry.save_version(ctx, wanted, "models.versions.import")
    return 1


async def _put_group(registry: Registry, ctx: ChangeContext, group: models_pb2.ModelGroup) -> int:
    stored = await ctx.writer.group(group.name)
    wanted = _stripped(group)
    assert isinstance(wanted, models_pb2.ModelGroup)
    if stored is not None and _stripped(stored) == wanted:
        return 0
    await registry.upsert_group(ctx, wanted, fresh=False)
    return 1
