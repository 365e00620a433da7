"""SQL access for the admin API: one read connection or one write transaction.

:meth:`AdminStore.write` lends an :class:`AdminWriter` whose transaction first
increments the revision row (so writers are serialised on both databases and
every change is seen by the replicas polling :meth:`AdminStore.revision`).
Resources travel as their proto messages; rules live in :mod:`gateway.admin.api`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.admin import records
from gateway.auth.cache import PolicySnapshot
from llmgw.admin.v1 import admin_pb2
from services.kernel.paging import Page
from services.kernel.protojson import from_json, to_json
from services.kernel.sql import Database

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An API key row: the proto plus the columns that never leave the gateway."""

    key: admin_pb2.ApiKey
    lookup: str
    secret_hash: str


_SUBJECT_TABLES = {"budgets": "admin_budgets", "rate_limits": "admin_rate_limits"}


def subject_columns(subject: admin_pb2.PolicySubject) -> tuple[str, str]:
    """``(subject_kind, subject_id)`` of a policy subject."""
    kind = subject.WhichOneof("subject") or ""
    return kind, getattr(subject, kind) if kind else ""


class AdminReader:
    """Queries over one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        """Read through ``conn`` (owned by the store)."""
        self._conn = conn

    async def revision(self) -> int:
        """The revision committed so far."""
        result = await self._conn.execute(text("SELECT revision FROM admin_state WHERE id = 1"))
        return int(result.scalar_one())

    async def project(self, project_id: str) -> admin_pb2.Project | None:
        """The project ``project_id``, if any."""
        return await self._one(
            "SELECT body FROM admin_projects WHERE id = :id", {"id": project_id}, admin_pb2.Project
        )

    async def projects(self, page: Page) -> list[admin_pb2.Project]:
        """Projects ordered by id."""
        return await self._many(
            "SELECT body FROM admin_projects ORDER BY id LIMIT :limit OFFSET :offset",
            {"limit": page.limit, "offset": page.offset},
            admin_pb2.Project,
        )

    async def key(self, key_id: str) -> StoredKey | None:
        """The API key ``key_id``, if any."""
        result = await self._conn.execute(
            text(
                "SELECT body, lookup, secret_hash, last_used_nanos FROM admin_api_keys"
                " WHERE id = :id"
            ),
            {"id": key_id},
        )
        row = result.first()
        if row is None:
            return None
        return StoredKey(_key_of(row.body, row.last_used_nanos), row.lookup, row.secret_hash)

    async def keys(
        self, project_id: str, include_revoked: bool, page: Page
    ) -> list[admin_pb2.ApiKey]:
        """API keys, newest first, optionally of one project and without revoked ones."""
        where = ["1 = 1"]
        if project_id:
            where.append("project_id = :project")
        if not include_revoked:
            where.append("revoked = 0")
        result = await self._conn.execute(
            text(
                f"SELECT body, last_used_nanos FROM admin_api_keys WHERE {' AND '.join(where)}"
                " ORDER BY created_nanos DESC, id LIMIT :limit OFFSET :offset"
            ),
            {"project": project_id, "limit": page.limit, "offset": page.offset},
        )
        return [_key_of(row.body, row.last_used_nanos) for row in result]

    async def count_keys(self) -> int:
        """How many API keys exist (revoked ones too)."""
        result = await self._conn.execute(text("SELECT COUNT(*) FROM admin_api_keys"))
        return int(result.scalar_one())

    async def count_live_keys(self, project_id: str) -> int:
        """How many unrevoked keys ``project_id`` has."""
        result = await self._conn.execute(
            text("SELECT COUNT(*) FROM admin_api_keys WHERE project_id = :p AND revoked = 0"),
            {"p": project_id},
        )
        return int(result.scalar_one())

    async def policy(self, kind: str, policy_id: str, message_type: type[M]) -> M | None:
        """The budget (``kind`` "budgets") or rate-limit policy ("rate_limits") ``policy_id``."""
        return await self._one(
            f"SELECT body FROM {_SUBJECT_TABLES[kind]} WHERE id = :id",
            {"id": policy_id},
            message_type,
        )

    async def policies(
        self,
        kind: str,
        subject: admin_pb2.PolicySubject | None,
        page: Page,
        message_type: type[M],
    ) -> list[M]:
        """Budgets or rate-limit policies ordered by id, optionally of one subject."""
        where = ""
        params: dict[str, object] = {"limit": page.limit, "offset": page.offset}
        if subject is not None:
            where = "WHERE subject_kind = :kind AND subject_id = :sid"
            params["kind"], params["sid"] = subject_columns(subject)
        return await self._many(
            f"SELECT body FROM {_SUBJECT_TABLES[kind]} {where}"
            " ORDER BY id LIMIT :limit OFFSET :offset",
            params,
            message_type,
        )

    async def snapshot(self) -> PolicySnapshot:
        """Everything the hot path needs, read revision first (so never newer than it says)."""
        revision = await self.revision()
        projects = await self._many("SELECT body FROM admin_projects", {}, admin_pb2.Project)
        result = await self._conn.execute(
            text("SELECT body, lookup, secret_hash FROM admin_api_keys")
        )
        keys = [
            StoredKey(from_json(row.body, admin_pb2.ApiKey), row.lookup, row.secret_hash)
            for row in result
        ]
        budgets = await self._many("SELECT body FROM admin_budgets", {}, admin_pb2.Budget)
        limits = await self._many(
            "SELECT body FROM admin_rate_limits", {}, admin_pb2.RateLimitPolicy
        )
        return records.snapshot_of(
            revision,
            projects,
            [(k.key, k.lookup, k.secret_hash) for k in keys],
            budgets,
            limits,
        )

    async def _one(self, sql: str, params: dict[str, object], message_type: type[M]) -> M | None:
        result = await self._conn.execute(text(sql), params)
        row = result.first()
        return None if row is None else from_json(row.body, message_type)

    async def _many(self, sql: str, params: dict[str, object], message_type: type[M]) -> list[M]:
        result = await self._conn.execute(text(sql), params)
        return [from_json(row.body, message_type) for row in result]


def _key_of(body: str, last_used_nanos: int | None) -> admin_pb2.ApiKey:
    key = from_json(body, admin_pb2.ApiKey)
    if last_used_nanos:
        key.last_used_time.FromNanoseconds(int(last_used_nanos))
    return key


class AdminWriter(AdminReader):
    """A write transaction holding the revision row: the reads plus inserts and updates."""

    async def insert_project(self, project: admin_pb2.Project) -> None:
        """Insert a new project."""
        await self._conn.execute(
            text("INSERT INTO admin_projects (id, body) VALUES (:id, :body)"),
            {"id": project.id, "body": to_json(project)},
        )

    async def update_project(self, project: admin_pb2.Project) -> None:
        """Replace a project."""
        await self._conn.execute(
            text("UPDATE admin_projects SET body = :body WHERE id = :id"),
            {"id": project.id, "body": to_json(project)},
        )

    async def delete_project(self, project_id: str) -> None:
        """Delete a project."""
        await self._conn.execute(
            text("DELETE FROM admin_projects WHERE id = :id"), {"id": project_id}
        )

    async def lookup_taken(self, lookup: str) -> bool:
        """Whether a key with ``lookup`` exists."""
        result = await self._conn.execute(
            text("SELECT 1 FROM admin_api_keys WHERE lookup = :lookup"), {"lookup": lookup}
        )
        return result.first() is not None

    async def insert_key(self, key: admin_pb2.ApiKey, lookup: str, secret_hash: str) -> None:
        """Insert a new API key with the hash of its secret."""
        await self._conn.execute(
            text(
                "INSERT INTO admin_api_keys"
                " (id, lookup, project_id, secret_hash, revoked, created_nanos, body)"
                " VALUES (:id, :lookup, :project, :hash, 0, :created, :body)"
            ),
            {
                "id": key.id,
                "lookup": lookup,
                "project": key.project_id,
                "hash": secret_hash,
                "created": key.create_time.ToNanoseconds(),
                "body": to_json(key),
            },
        )

    async def update_key(self, key: admin_pb2.ApiKey) -> None:
        """Replace an API key's body and revoked flag."""
        await self._conn.execute(
            text("UPDATE admin_api_keys SET body = :body, revoked = :revoked WHERE id = :id"),
            {"id": key.id, "body": to_json(key), "revoked": int(key.revoked)},
        )

    async def save_policy(self, kind: str, policy_id: str, policy: Message) -> None:
        """Insert or replace a budget or rate-limit policy (it has a ``subject`` field)."""
        table = _SUBJECT_TABLES[kind]
        subject_kind, subject_id = subject_columns(policy.subject)  # type: ignore[attr-defined]
        row = {"id": policy_id, "kind": subject_kind, "sid": subject_id, "body": to_json(policy)}
        result = await self._conn.execute(
            text(
                f"UPDATE {table} SET subject_kind = :kind, subject_id = :sid, body = :body"
                " WHERE id = :id"
            ),
            row,
        )
        if result.rowcount == 0:
            await self._conn.execute(
                text(
                    f"INSERT INTO {table} (id, subject_kind, subject_id, body)"
                    " VALUES (:id, :kind, :sid, :body)"
                ),
                row,
            )

    async def delete_policy(self, kind: str, policy_id: str) -> None:
        """Delete a budget or rate-limit policy."""
        await self._conn.execute(
            text(f"DELETE FROM {_SUBJECT_TABLES[kind]} WHERE id = :id"), {"id": policy_id}
        )

    async def delete_policies_of(self, subject_kind: str, subject_id: str) -> None:
        """Delete every budget and rate-limit policy of one subject."""
        for table in _SUBJECT_TABLES.values():
            await self._conn.execute(
                text(f"DELETE FROM {table} WHERE subject_kind = :kind AND subject_id = :sid"),
                {"kind": subject_kind, "sid": subject_id},
            )


class AdminStore:
    """The admin tables in one :class:`~services.kernel.sql.Database`; a
    :class:`~gateway.auth.cache.SnapshotStore`."""

    def __init__(self, database: Database) -> None:
        """Use ``database``, already migrated with :mod:`gateway.admin.schema`."""
        self._database = database

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AdminReader]:
        """A reader."""
        async with self._database.connection() as conn:
            yield AdminReader(conn)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AdminWriter]:
        """One write transaction; it increments the revision first (taking its row lock)."""
        async with self._database.transaction() as conn:
            await conn.execute(text("UPDATE admin_state SET revision = revision + 1 WHERE id = 1"))
            yield AdminWriter(conn)

    async def revision(self) -> int:
        """The revision committed so far."""
        async with self.read() as reader:
            return await reader.revision()

    async def mark_used(self, key_ids: Collection[str], at_nanos: int) -> None:
        """Record that ``key_ids`` were used at ``at_nanos``; moves no revision."""
        if not key_ids:
            return
        statement = text(
            "UPDATE admin_api_keys SET last_used_nanos = :at WHERE id IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        async with self._database.transaction() as conn:
            await conn.execute(statement, {"at": at_nanos, "ids": sorted(key_ids)})

    async def snapshot(self) -> PolicySnapshot:
        """Everything the hot path needs."""
        async with self.read() as reader:
            return await reader.snapshot()
