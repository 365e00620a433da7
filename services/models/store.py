"""SQL access for the registry: one read view or one write transaction at a time.

:meth:`RegistryStore.read` lends a :class:`RegistryReader`; :meth:`RegistryStore.write`
lends a :class:`RegistryWriter` whose transaction first locks the revision row,
so concurrent writers run one after another on both SQLite and PostgreSQL and
revisions are committed in increasing order. The writer hands out revisions
with :meth:`RegistryWriter.next_revision` and stores the new counter when the
block exits normally; when the block raises, nothing is kept.

Resources travel as their proto messages; this module knows tables and
columns, not rules (those live in :mod:`services.models.registry`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2
from services.kernel.paging import Page
from services.kernel.protojson import from_json, to_json
from services.kernel.sql import Database, Dialect

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One row of the change feed."""

    revision: int
    change: models_pb2.RegistryChange
    audit: common_pb2.AuditEntry


class RegistryReader:
    """Queries over one connection; every result is a fresh message the caller owns."""

    def __init__(self, conn: AsyncConnection) -> None:
        """Read through ``conn`` (owned by the store)."""
        self._conn = conn

    async def revision(self) -> int:
        """The registry revision committed so far (0 for an empty registry)."""
        result = await self._conn.execute(text("SELECT revision FROM registry_state WHERE id = 1"))
        return int(result.scalar_one())

    async def model(self, name: str) -> models_pb2.Model | None:
        """The model called ``name``, if any."""
        return await self._one(
            "SELECT body FROM registry_models WHERE name = :name", {"name": name}, models_pb2.Model
        )

    async def version(self, model: str, version: str) -> models_pb2.ModelVersion | None:
        """One version of a model, if any."""
        return await self._one(
            "SELECT body FROM registry_versions WHERE model = :model AND version = :version",
            {"model": model, "version": version},
            models_pb2.ModelVersion,
        )

    async def alias(self, model: str, alias: str) -> models_pb2.Alias | None:
        """One alias of a model, if any."""
        return await self._one(
            "SELECT body FROM registry_aliases WHERE model = :model AND alias = :alias",
            {"model": model, "alias": alias},
            models_pb2.Alias,
        )

    async def group(self, name: str) -> models_pb2.ModelGroup | None:
        """The model group called ``name``, if any."""
        return await self._one(
            "SELECT body FROM registry_groups WHERE name = :name",
            {"name": name},
            models_pb2.ModelGroup,
        )

    async def history_entry(
        self, model: str, alias: str, sequence: int
    ) -> models_pb2.AliasHistoryEntry | None:
        """One entry of an alias's history, if any."""
        return await self._one(
            "SELECT body FROM registry_alias_history"
            " WHERE model = :model AND alias = :alias AND sequence = :sequence",
            {"model": model, "alias": alias, "sequence": sequence},
            models_pb2.AliasHistoryEntry,
        )

    async def models(self, project_id: str, page: Page) -> list[models_pb2.Model]:
        """Models ordered by name, optionally of one project."""
        where = "WHERE project_id = :project" if project_id else ""
        return await self._many(
            f"SELECT body FROM registry_models {where} ORDER BY name LIMIT :limit OFFSET :offset",
            {"project": project_id, "limit": page.limit, "offset": page.offset},
            models_pb2.Model,
        )

    async def versions(
        self, model: str, statuses: Sequence[int], page: Page
    ) -> list[models_pb2.ModelVersion]:
        """Versions of ``model``, newest first, optionally only in ``statuses``."""
        statement = text(
            "SELECT body FROM registry_versions WHERE model = :model"
            + (" AND status IN :statuses" if statuses else "")
            + " ORDER BY ordinal DESC LIMIT :limit OFFSET :offset"
        )
        params: dict[str, object] = {"model": model, "limit": page.limit, "offset": page.offset}
        if statuses:
            statement = statement.bindparams(bindparam("statuses", expanding=True))
            params["statuses"] = list(statuses)
        result = await self._conn.execute(statement, params)
        return [from_json(row.body, models_pb2.ModelVersion) for row in result]

    async def aliases(self, model: str, page: Page) -> list[models_pb2.Alias]:
        """Aliases ordered by model and alias name, optionally of one model."""
        where = "WHERE model = :model" if model else ""
        return await self._many(
            f"SELECT body FROM registry_aliases {where}"
            " ORDER BY model, alias LIMIT :limit OFFSET :offset",
            {"model": model, "limit": page.limit, "offset": page.offset},
            models_pb2.Alias,
        )

    async def aliases_targeting(self, model: str, version: str) -> list[models_pb2.Alias]:
        """Aliases whose version or traffic split is ``model``/``version``."""
        return await self._many(
            "SELECT body FROM registry_aliases WHERE model = :model"
            " AND (version = :version OR split_version = :version) ORDER BY alias",
            {"model": model, "version": version},
            models_pb2.Alias,
        )

    async def history(
        self, model: str, alias: str, page: Page
    ) -> list[models_pb2.AliasHistoryEntry]:
        """An alias's history, newest first."""
        return await self._many(
            "SELECT body FROM registry_alias_history WHERE model = :model AND alias = :alias"
            " ORDER BY sequence DESC LIMIT :limit OFFSET :offset",
            {"model": model, "alias": alias, "limit": page.limit, "offset": page.offset},
            models_pb2.AliasHistoryEntry,
        )

    async def last_history_sequence(self, model: str, alias: str) -> int:
        """The sequence of the alias's latest history entry, 0 when it has none."""
        result = await self._conn.execute(
            text(
                "SELECT MAX(sequence) FROM registry_alias_history"
                " WHERE model = :model AND alias = :alias"
            ),
            {"model": model, "alias": alias},
        )
        return int(result.scalar_one() or 0)

    async def groups(self, page: Page) -> list[models_pb2.ModelGroup]:
        """Model groups ordered by name."""
        return await self._many(
            "SELECT body FROM registry_groups ORDER BY name LIMIT :limit OFFSET :offset",
            {"limit": page.limit, "offset": page.offset},
            models_pb2.ModelGroup,
        )

    async def count_versions(self, model: str) -> int:
        """How many versions ``model`` has."""
        result = await self._conn.execute(
            text("SELECT COUNT(*) FROM registry_versions WHERE model = :model"), {"model": model}
        )
        return int(result.scalar_one())

    async def snapshot(self, *, include_archived: bool = False) -> models_pb2.RegistrySnapshot:
        """Every model, version (ARCHIVED ones only when asked), alias and group."""
        archived = -1 if include_archived else models_pb2.VERSION_STATUS_ARCHIVED
        snapshot = models_pb2.RegistrySnapshot()
        for model in await self._many(
            "SELECT body FROM registry_models ORDER BY name", {}, models_pb2.Model
        ):
            snapshot.models.append(model)
        snapshot.versions.extend(
            await self._many(
                "SELECT body FROM registry_versions WHERE status <> :archived"
                " ORDER BY model, ordinal",
                {"archived": archived},
                models_pb2.ModelVersion,
            )
        )
        snapshot.aliases.extend(
            await self._many(
                "SELECT body FROM registry_aliases ORDER BY model, alias", {}, models_pb2.Alias
            )
        )
        snapshot.groups.extend(
            await self._many(
                "SELECT body FROM registry_groups ORDER BY name", {}, models_pb2.ModelGroup
            )
        )
        return snapshot

    async def changes_after(self, revision: int, limit: int) -> list[StoredChange]:
        """Up to ``limit`` changes with a revision above ``revision``, in revision order."""
        result = await self._conn.execute(
            text(
                "SELECT revision, change, audit FROM registry_changes WHERE revision > :revision"
                " ORDER BY revision LIMIT :limit"
            ),
            {"revision": revision, "limit": limit},
        )
        return [_stored_change(row.revision, row.change, row.audit) for row in result]

    async def oldest_change(self) -> int:
        """The smallest revision still in the change feed, 0 when it is empty."""
        result = await self._conn.execute(text("SELECT MIN(revision) FROM registry_changes"))
        return int(result.scalar_one() or 0)

    async def unpublished(self, limit: int) -> list[StoredChange]:
        """Up to ``limit`` changes not yet marked published, in revision order."""
        result = await self._conn.execute(
            text(
                "SELECT revision, change, audit FROM registry_changes WHERE published = 0"
                " ORDER BY revision LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [_stored_change(row.revision, row.change, row.audit) for row in result]

    async def _one(self, sql: str, params: dict[str, object], message_type: type[M]) -> M | None:
        result = await self._conn.execute(text(sql), params)
        row = result.first()
        return None if row is None else from_json(row.body, message_type)

    async def _many(self, sql: str, params: dict[str, object], message_type: type[M]) -> list[M]:
        result = await self._conn.execute(text(sql), params)
        return [from_json(row.body, message_type) for row in result]


class RegistryWriter(RegistryReader):
    """A write transaction: the reads above plus upserts, deletes and the change log."""

    def __init__(self, conn: AsyncConnection, revision: int) -> None:
        """Write through ``conn``, whose transaction holds the revision lock at ``revision``."""
        super().__init__(conn)
        self._revision = revision
        self._start = revision

    @property
    def changed(self) -> bool:
        """Whether this transaction handed out a revision."""
        return self._revision != self._start

    @property
    def last_revision(self) -> int:
        """The last revision handed out, or the revision the transaction started at."""
        return self._revision

    def next_revision(self) -> int:
        """A new revision, one above the last one handed out."""
        self._revision += 1
        return self._revision

    async def save_model(self, model: models_pb2.Model) -> None:
        """Insert or replace a model."""
        await self._upsert(
            "registry_models",
            ("name",),
            {
                "name": model.name,
                "project_id": model.project_id,
                "body": to_json(model),
                "revision": model.revision,
            },
        )

    async def save_version(self, version: models_pb2.ModelVersion) -> None:
        """Insert or replace a version; a new one is ordered after the model's others."""
        result = await self._conn.execute(
            text("SELECT COALESCE(MAX(ordinal), 0) FROM registry_versions WHERE model = :model"),
            {"model": version.model},
        )
        existing = await self._conn.execute(
            text("SELECT ordinal FROM registry_versions WHERE model = :model AND version = :v"),
            {"model": version.model, "v": version.version},
        )
        ordinal = existing.scalar_one_or_none()
        await self._upsert(
            "registry_versions",
            ("model", "version"),
            {
                "model": version.model,
                "version": version.version,
                "ordinal": ordinal if ordinal is not None else int(result.scalar_one()) + 1,
                "status": int(version.status),
                "body": to_json(version),
                "revision": version.revision,
            },
        )

    async def save_alias(self, alias: models_pb2.Alias) -> None:
        """Insert or replace an alias."""
        await self._upsert(
            "registry_aliases",
            ("model", "alias"),
            {
                "model": alias.model,
                "alias": alias.alias,
                "version": alias.version,
                "split_version": alias.traffic_split.version or None,
                "body": to_json(alias),
                "revision": alias.revision,
            },
        )

    async def save_group(self, group: models_pb2.ModelGroup) -> None:
        """Insert or replace a model group."""
        await self._upsert(
            "registry_groups",
            ("name",),
            {"name": group.name, "body": to_json(group), "revision": group.revision},
        )

    async def add_history(self, entry: models_pb2.AliasHistoryEntry) -> None:
        """Append one entry to an alias's history."""
        await self._conn.execute(
            text(
                "INSERT INTO registry_alias_history (model, alias, sequence, body)"
                " VALUES (:model, :alias, :sequence, :body)"
            ),
            {
                "model": entry.model,
                "alias": entry.alias,
                "sequence": entry.sequence,
                "body": to_json(entry),
            },
        )

    async def delete_model(self, name: str) -> None:
        """Delete a model row (its versions must be gone)."""
        await self._conn.execute(text("DELETE FROM registry_models WHERE name = :n"), {"n": name})

    async def delete_versions(self, model: str) -> None:
        """Delete every version row of ``model``."""
        await self._conn.execute(
            text("DELETE FROM registry_versions WHERE model = :m"), {"m": model}
        )

    async def delete_alias(self, model: str, alias: str) -> None:
        """Delete an alias row; its history stays."""
        await self._conn.execute(
            text("DELETE FROM registry_aliases WHERE model = :m AND alias = :a"),
            {"m": model, "a": alias},
        )

    async def delete_group(self, name: str) -> None:
        """Delete a model group row."""
        await self._conn.execute(text("DELETE FROM registry_groups WHERE name = :n"), {"n": name})

    async def record_change(
        self, resource: str, change: models_pb2.RegistryChange, audit: common_pb2.AuditEntry
    ) -> None:
        """Append ``change`` (with its revision set) and its audit entry to the feed."""
        await self._conn.execute(
            text(
                "INSERT INTO registry_changes (revision, resource, change, audit)"
                " VALUES (:revision, :resource, :change, :audit)"
            ),
            {
                "revision": change.revision,
                "resource": resource,
                "change": to_json(change),
                "audit": to_json(audit),
            },
        )

    async def finish(self) -> None:
        """Store the last handed-out revision as the registry revision."""
        if self.changed:
            await self._conn.execute(
                text("UPDATE registry_state SET revision = :revision WHERE id = 1"),
                {"revision": self._revision},
            )

    async def _upsert(self, table: str, keys: tuple[str, ...], row: dict[str, object]) -> None:
        where = " AND ".join(f"{key} = :{key}" for key in keys)
        updates = ", ".join(f"{column} = :{column}" for column in row if column not in keys)
        result = await self._conn.execute(text(f"UPDATE {table} SET {updates} WHERE {where}"), row)
        if result.rowcount == 0:
            columns = ", ".join(row)
            values = ", ".join(f":{column}" for column in row)
            await self._conn.execute(
                text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row
            )


class RegistryStore:
    """The registry's tables in one :class:`~services.kernel.sql.Database`."""

    def __init__(self, database: Database) -> None:
        """Use ``database``, already migrated with :mod:`services.models.schema`."""
        self._database = database

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[RegistryReader]:
        """A reader; its queries may see different commits on PostgreSQL."""
        async with self._database.connection() as conn:
            yield RegistryReader(conn)

    @contextlib.asynccontextmanager
    async def consistent_read(self) -> AsyncIterator[RegistryReader]:
        """A reader that holds the revision lock, so every query sees one revision."""
        async with self._database.transaction() as conn:
            await _lock_revision(conn, self._database.dialect, exclusive=False)
            yield RegistryReader(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[RegistryWriter]:
        """One write transaction holding the revision lock; see the module docstring."""
        async with self._database.transaction() as conn:
            revision = await _lock_revision(conn, self._database.dialect, exclusive=True)
            writer = RegistryWriter(conn, revision)
            yield writer
            await writer.finish()

    async def mark_published(self, revisions: Sequence[int]) -> None:
        """Record that the events of ``revisions`` reached the bus."""
        if not revisions:
            return
        statement = text(
            "UPDATE registry_changes SET published = 1 WHERE revision IN :revisions"
        ).bindparams(bindparam("revisions", expanding=True))
        async with self._database.transaction() as conn:
            await conn.execute(statement, {"revisions": list(revisions)})


async def _lock_revision(conn: AsyncConnection, dialect: Dialect, *, exclusive: bool) -> int:
    """Lock the revision row until the transaction ends and return the revision.

    On PostgreSQL writers take the row ``FOR UPDATE`` and consistent readers
    ``FOR SHARE`` (readers share, writers wait for them and each other); on
    SQLite the transaction's ``BEGIN IMMEDIATE`` already holds the database
    write lock.
    """
    lock = ""
    if dialect is Dialect.POSTGRESQL:
        lock = " FOR UPDATE" if exclusive else " FOR SHARE"
    result = await conn.execute(text(f"SELECT revision FROM registry_state WHERE id = 1{lock}"))
    return int(result.scalar_one())


def _stored_change(revision: int, change: str, audit: str) -> StoredChange:
    return StoredChange(
        revision=int(revision),
        change=from_json(change, models_pb2.RegistryChange),
        audit=from_json(audit, common_pb2.AuditEntry),
    )
