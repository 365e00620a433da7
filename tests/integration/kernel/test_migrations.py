"""Versioned migrations on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.kernel.migrations import (
    MIGRATIONS_TABLE,
    Migration,
    MigrationChecksumError,
    UnknownMigrationError,
    applied_versions,
    migrate,
)
from services.kernel.sql import Database, DatabaseConfig

pytestmark = pytest.mark.integration

REGISTRY = (
    Migration(1, "create models", ("CREATE TABLE models (id TEXT PRIMARY KEY, name TEXT)",)),
    Migration(
        2,
        "create versions",
        (
            "CREATE TABLE versions (model_id TEXT NOT NULL REFERENCES models(id), n INTEGER)",
            "CREATE INDEX versions_model ON versions (model_id)",
        ),
    ),
)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(DatabaseConfig(database_url))
    yield db
    await db.close()


async def table_exists(db: Database, table: str) -> bool:
    async with db.connection() as conn:
        try:
            await conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))
        except DBAPIError:
            return False
    return True


async def test_applies_in_order_and_records_each(database: Database) -> None:
    result = await migrate(database, "registry", REGISTRY)

    assert result.applied == (1, 2)
    assert result.current == 2
    assert await table_exists(database, "versions")
    async with database.connection() as conn:
        rows = (
            await conn.execute(
                text(f"SELECT version, name, applied_at FROM {MIGRATIONS_TABLE} ORDER BY version")
            )
        ).all()
    assert [(r.version, r.name) for r in rows] == [(1, "create models"), (2, "create versions")]
    assert all(r.applied_at is not None for r in rows)


async def test_running_again_changes_nothing(database: Database) -> None:
    await migrate(database, "registry", REGISTRY)
    again = await migrate(database, "registry", REGISTRY)

    assert again.applied == ()
    assert again.current == 2


async def test_new_migrations_are_applied_on_top(database: Database) -> None:
    await migrate(database, "registry", REGISTRY[:1])
    result = await migrate(database, "registry", REGISTRY)

    assert result.applied == (2,)


async def test_edited_migration_is_refused(database: Database) -> None:
    await migrate(database, "registry", REGISTRY)
    edited = (
        REGISTRY[0],
        Migration(2, "create versions", ("CREATE TABLE versions (model_id TEXT)",)),
    )

    with pytest.raises(MigrationChecksumError, match="migration 2"):
        await migrate(database, "registry", edited)


async def test_failing_migration_is_not_recorded_and_leaves_no_trace(database: Database) -> None:
    broken = (
        *REGISTRY,
        Migration(3, "half done", ("CREATE TABLE aliases (id TEXT)", "THIS IS NOT SQL")),
    )

    with pytest.raises(DBAPIError):
        await migrate(database, "registry", broken)

    assert await applied_versions(database, "registry") == (1, 2)
    assert not await table_exists(database, "aliases")


async def test_history_hole_is_refused_but_newer_versions_are_tolerated(
    database: Database,
) -> None:
    await migrate(database, "registry", REGISTRY)

    with pytest.raises(UnknownMigrationError, match="migration 1"):
        await migrate(database, "registry", REGISTRY[1:])
    older_release = await migrate(database, "registry", REGISTRY[:1])
    assert older_release.ahead == (2,)
    assert older_release.applied == ()


async def test_components_are_independent(database: Database) -> None:
    await migrate(database, "registry", REGISTRY)
    admin = (Migration(1, "create keys", ("CREATE TABLE api_keys (id TEXT PRIMARY KEY)",)),)

    result = await migrate(database, "admin", admin)

    assert result.applied == (1,)
    assert await applied_versions(database, "registry") == (1, 2)


async def test_concurrent_runs_apply_each_migration_once(database_url: str) -> None:
    replicas = [await Database.connect(DatabaseConfig(database_url)) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(db, "registry", REGISTRY) for db in replicas))
    finally:
        for db in replicas:
            await db.close()

    applied = sorted(v for r in results for v in r.applied)
    assert applied == [1, 2]
    assert all(r.current == 2 for r in results)
