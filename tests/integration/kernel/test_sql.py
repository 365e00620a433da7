"""The SQL client on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from services.kernel.sql import Database, DatabaseConfig, Dialect

pytestmark = pytest.mark.integration

SCHEMA = (
    "CREATE TABLE projects (id TEXT PRIMARY KEY)",
    "CREATE TABLE keys (id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id))",
)


class Boom(Exception):
    pass


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(DatabaseConfig(database_url))
    async with db.transaction() as conn:
        for statement in SCHEMA:
            await conn.exec_driver_sql(statement)
    yield db
    await db.close()


async def count(db: Database, table: str) -> int:
    async with db.connection() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_dialect_matches_the_url(database: Database, database_url: str) -> None:
    expected = Dialect.SQLITE if database_url.startswith("sqlite") else Dialect.POSTGRESQL
    assert database.dialect is expected


async def test_failed_transaction_leaves_nothing(database: Database) -> None:
    with pytest.raises(Boom):
        async with database.transaction() as conn:
            await conn.execute(text("INSERT INTO projects (id) VALUES ('p1')"))
            await conn.execute(text("INSERT INTO keys (id, project_id) VALUES ('k1', 'p1')"))
            raise Boom

    assert await count(database, "projects") == 0
    assert await count(database, "keys") == 0


async def test_committed_transaction_is_visible_to_another_pool(
    database: Database, database_url: str
) -> None:
    async with database.transaction() as conn:
        await conn.execute(text("INSERT INTO projects (id) VALUES ('p1')"))

    other = await Database.connect(DatabaseConfig(database_url))
    try:
        assert await count(other, "projects") == 1
    finally:
        await other.close()


async def test_uncommitted_writes_are_invisible_to_other_connections(
    database: Database, database_url: str
) -> None:
    other = await Database.connect(DatabaseConfig(database_url))
    try:
        async with database.transaction() as conn:
            await conn.execute(text("INSERT INTO projects (id) VALUES ('p1')"))
            assert await count(other, "projects") == 0
        assert await count(other, "projects") == 1
    finally:
        await other.close()


async def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.transaction() as conn:
            await conn.execute(text("INSERT INTO keys (id, project_id) VALUES ('k1', 'nope')"))


async def test_ddl_rolls_back_with_the_transaction(database: Database) -> None:
    with pytest.raises(Boom):
        async with database.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE scratch (id INTEGER)")
            raise Boom

    async with database.transaction() as conn:
        await conn.exec_driver_sql("CREATE TABLE scratch (id INTEGER)")


async def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    db = await Database.connect(DatabaseConfig(sqlite_url))
    try:
        async with db.connection() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
        assert (mode, foreign_keys) == ("wal", 1)
    finally:
        await db.close()


async def test_plain_urls_are_accepted(sqlite_url: str) -> None:
    db = await Database.connect(DatabaseConfig(sqlite_url.replace("+aiosqlite", "")))
    await db.close()
