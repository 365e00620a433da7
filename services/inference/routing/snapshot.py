"""The routing table's source: a ``RegistrySnapshot``, read from a YAML file until the
registry pushes it.

The file has the snapshot's JSON shape (``google.protobuf.json_format``; field names
in ``snake_case`` or ``lowerCamelCase``)::

    versions:
      - model: support-bot
        version: "1"
        provider: simulated
        provider_model_id: sim-small
        context_window: 8192
        max_output_tokens: 1024
        pricing: {currency_code: USD, input_per_million_nanos: 150000000}
    aliases:
      - {model: support-bot, alias: production, version: "1"}
    groups:
      - name: chat
        deployments: [{id: a, model_ref: support-bot@production}]

:func:`load_snapshot` parses entry by entry, so an error names the entry (e.g.
``versions[2] (support-bot/versions/3)``), then checks references with
:func:`check_snapshot`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from llmgw.models.v1 import models_pb2


class SnapshotError(ValueError):
    """The snapshot file is unreadable or inconsistent; the message lists every problem."""


_SECTIONS: Mapping[str, Callable[[], Message]] = MappingProxyType(
    {
        "models": models_pb2.Model,
        "versions": models_pb2.ModelVersion,
        "aliases": models_pb2.Alias,
        "groups": models_pb2.ModelGroup,
    }
)


def load_snapshot(path: str | Path) -> models_pb2.RegistrySnapshot:
    """Read the YAML file at ``path`` into a snapshot.

    Raises :class:`SnapshotError` naming the file and each offending entry when the
    file is not YAML, has unknown sections or fields, bad values, or references
    that do not resolve.
    """
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SnapshotError(f"{path}: cannot read routing snapshot: {exc}") from exc
    return parse_snapshot(document or {}, source=str(path))


def parse_snapshot(document: Any, *, source: str = "snapshot") -> models_pb2.RegistrySnapshot:
    """Build a snapshot from a parsed document (a mapping of section -> list of entries)."""
    if not isinstance(document, Mapping):
        raise SnapshotError(f"{source}: expected a mapping of {', '.join(_SECTIONS)}")
    problems: list[str] = []
    unknown = sorted(set(map(str, document)) - set(_SECTIONS))
    if unknown:
        problems.append(f"unknown section(s) {', '.join(unknown)}")
    snapshot = models_pb2.RegistrySnapshot()
    for section, make in _SECTIONS.items():
        entries = document.get(section) or []
        if not isinstance(entries, list):
            problems.append(f"{section}: expected a list")
            continue
        target = getattr(snapshot, section)
        for index, entry in enumerate(entries):
            label = f"{section}[{index}]{_describe(entry)}"
            message = make()
            try:
                if not isinstance(entry, Mapping):
                    raise TypeError("expected a mapping")
                json_format.ParseDict(dict(entry), message)
            except (json_format.ParseError, TypeError, ValueError) as exc:
                problems.append(f"{label}: {exc}")
                continue
            target.append(message)
    if not problems:
        problems.extend(check_snapshot(snapshot))
    if problems:
        raise SnapshotError(f"{source}: " + "; ".join(problems))
    return snapshot


def check_snapshot(snapshot: models_pb2.RegistrySnapshot) -> list[str]:
    """Inconsistencies of ``snapshot``: duplicates and references that do not resolve."""
    problems: list[str] = []
    versions = _check_versions(snapshot, problems)
    names = _Names(
        models={m.name for m in snapshot.models} | {model for model, _ in versions},
        aliases={(a.model, a.alias) for a in snapshot.aliases},
        versions=versions,
        groups={g.name for g in snapshot.groups},
    )
    _check_aliases(snapshot, names, problems)
    _check_groups(snapshot, names, problems)
    return problems


@dataclass(frozen=True, slots=True)
class _Names:
    models: set[str]
    aliases: set[tuple[str, str]]
    versions: set[tuple[str, str]]
    groups: set[str]

    def known(self, ref: str, *, groups: bool = False) -> bool:
        if "/versions/" in ref:
            model, _, version = ref.partition("/versions/")
            return (model, version) in self.versions
        if "@" in ref:
            model, _, alias = ref.partition("@")
            return (model, alias) in self.aliases
        return ref in self.models or (groups and ref in self.groups)


def _check_versions(
    snapshot: models_pb2.RegistrySnapshot, problems: list[str]
) -> set[tuple[str, str]]:
    versions: set[tuple[str, str]] = set()
    for index, entry in enumerate(snapshot.versions):
        key = (entry.model, entry.version)
        label = f"versions[{index}] ({entry.model}/versions/{entry.version})"
        if not entry.model or not entry.version:
            problems.append(f"{label}: model and version are required")
        if not entry.provider:
            problems.append(f"{label}: provider is required")
        if key in versions:
            problems.append(f"{label}: duplicate version")
        versions.add(key)
    return versions


def _check_aliases(
    snapshot: models_pb2.RegistrySnapshot, names: _Names, problems: list[str]
) -> None:
    for index, alias in enumerate(snapshot.aliases):
        label = f"aliases[{index}] ({alias.model}@{alias.alias})"
        for version_id in (alias.version, alias.traffic_split.version):
            if version_id and (alias.model, version_id) not in names.versions:
                problems.append(f"{label}: unknown version {version_id!r}")
        split = alias.traffic_split
        if split.version and not 1 <= split.weight_percent <= 99:
            problems.append(f"{label}: traffic_split.weight_percent must be within 1..99")


def _check_groups(
    snapshot: models_pb2.RegistrySnapshot, names: _Names, problems: list[str]
) -> None:
    for index, group in enumerate(snapshot.groups):
        label = f"groups[{index}] ({group.name})"
        if group.name in names.models:
            problems.append(f"{label}: a model has the same name")
        for position, deployment in enumerate(group.deployments):
            if not names.known(deployment.model_ref):
                problems.append(
                    f"{label}: deployments[{position}] unknown model_ref {deployment.model_ref!r}"
                )
        for ref in [*group.fallbacks, *group.context_window_fallbacks]:
            if not names.known(ref, groups=True):
                problems.append(f"{label}: unknown fallback {ref!r}")


def _describe(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return ""
    if "version" in entry and "provider" in entry:
        return f" ({entry.get('model')}/versions/{entry.get('version')})"
    if "alias" in entry:
        return f" ({entry.get('model')}@{entry.get('alias')})"
    if "name" in entry:
        return f" ({entry['name']})"
    return ""
