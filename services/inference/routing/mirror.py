"""A local copy of the registry, kept current from the ``WatchRegistry`` stream.

:class:`RegistryMirror` holds every model, version, alias and group by key and
the revision it is at. A snapshot replaces everything; a change upserts or
removes one resource and moves the revision to the change's. Like the
registry's own snapshots it holds no ARCHIVED version: upserting one removes it.

The mirror only applies what it is given; deciding which messages to apply
(order, duplicates, gaps) is the watcher's job
(:mod:`services.inference.routing.registry_watch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from google.protobuf.message import Message

from llmgw.models.v1 import models_pb2

_KEYS: Mapping[str, Callable[[Any], tuple[str, ...]]] = MappingProxyType(
    {
        "model": lambda m: (m.name,),
        "version": lambda v: (v.model, v.version),
        "alias": lambda a: (a.model, a.alias),
        "group": lambda g: (g.name,),
    }
)
_SECTIONS: Mapping[str, str] = MappingProxyType(
    {"model": "models", "version": "versions", "alias": "aliases", "group": "groups"}
)


class ChangeError(ValueError):
    """A change that names no resource or no known change type."""


class RegistryMirror:
    """The registry as of :attr:`revision`; empty at revision 0 until a snapshot."""

    def __init__(self) -> None:
        """An empty mirror that has seen no snapshot."""
        self._entries: dict[str, dict[tuple[str, ...], Message]] = {kind: {} for kind in _KEYS}
        self._revision = 0
        self._synced = False

    @property
    def revision(self) -> int:
        """The revision of the last snapshot or change applied (0 before any)."""
        return self._revision

    @property
    def synced(self) -> bool:
        """Whether a snapshot was applied and no change was refused since."""
        return self._synced

    def reset(self, revision: int, snapshot: models_pb2.RegistrySnapshot) -> None:
        """Hold exactly ``snapshot``, at ``revision``."""
        for kind, section in _SECTIONS.items():
            entries: dict[tuple[str, ...], Message] = {}
            for entry in getattr(snapshot, section):
                if not _archived(entry):
                    entries[_KEYS[kind](entry)] = _copy(entry)
            self._entries[kind] = entries
        self._revision = revision
        self._synced = True

    def apply(self, revision: int, change: models_pb2.RegistryChange) -> None:
        """Apply ``change`` and move to ``revision``.

        Raises :class:`ChangeError` (leaving the mirror unchanged) when the change
        carries no resource or an unknown change type.
        """
        kind = change.WhichOneof("resource")
        if kind is None or kind not in _KEYS:
            raise ChangeError(f"revision {revision}: the change carries no resource")
        resource: Message = getattr(change, kind)
        key = _KEYS[kind](resource)
        entries = self._entries[kind]
        if change.change_type == models_pb2.CHANGE_TYPE_UPSERTED:
            if _archived(resource):
                entries.pop(key, None)
            else:
                entries[key] = _copy(resource)
        elif change.change_type == models_pb2.CHANGE_TYPE_DELETED:
            entries.pop(key, None)
        else:
            raise ChangeError(f"revision {revision}: unknown change type {change.change_type}")
        self._revision = revision

    def invalidate(self) -> None:
        """Mark the mirror stale: the next stream must start with a snapshot.

        The content and revision stay as they are until that snapshot arrives.
        """
        self._synced = False

    def snapshot(self) -> models_pb2.RegistrySnapshot:
        """A new snapshot of the mirror (the caller owns it), each section sorted by key."""
        snapshot = models_pb2.RegistrySnapshot()
        for kind, section in _SECTIONS.items():
            entries = self._entries[kind]
            getattr(snapshot, section).extend(entries[key] for key in sorted(entries))
        return snapshot


def _archived(entry: Message) -> bool:
    return (
        isinstance(entry, models_pb2.ModelVersion)
        and entry.status == models_pb2.VERSION_STATUS_ARCHIVED
    )


def _copy(entry: Message) -> Message:
    copy = type(entry)()
    copy.CopyFrom(entry)
    return copy
