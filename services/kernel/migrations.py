"""Versioned schema migrations, one ordered list per component.

A component (``"registry"``, ``"admin"``...) declares its schema history as a
tuple of :class:`Migration` and calls :func:`migrate` at start-up::

    REGISTRY = (
        Migration(1, "create models", ("CREATE TABLE models (...)",)),
        Migration(2, "add aliases", ("CREATE TABLE aliases (...)",)),
    )
    await migrate(database, "registry", REGISTRY)

Contract:

- Each pending migration runs in its own transaction together with the row
  recording it in ``schema_migrations(component, version, name, checksum,
  applied_at)``; a failing statement leaves neither the change nor the row.
- Running again is a no-op for versions already recorded.
- A recorded version whose name or statements changed since it was applied is
  refused with :class:`MigrationChecksumError`: history is append-only.
- A recorded version the code does not declare is tolerated only above the
  highest declared one (a newer release already ran); a hole below it is
  refused with :class:`UnknownMigrationError`.
- On PostgreSQL, concurrent runs (several replicas starting at once) are
  serialised with ``pg_advisory_xact_lock``; on SQLite the write lock taken by
  ``BEGIN IMMEDIATE`` does the same.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.kernel.sql import Database, Dialect

MIGRATIONS_TABLE = "schema_migrations"
_BOOTSTRAP_LOCK_NAME = "llmgw:schema_migrations"


class MigrationError(Exception):
    """The schema cannot be brought to the declared version; the message says why."""


class MigrationChecksumError(MigrationError):
    """An applied migration was edited after it ran."""


class UnknownMigrationError(MigrationError):
    """The database records a migration the code does not declare."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a component's schema history.

    ``statements`` run in order, each passed to the driver as is (no bind
    parameters, so ``::`` casts and ``:`` are safe). Keep one SQL statement
    per string: asyncpg refuses several in one.
    """

    version: int
    name: str
    statements: tuple[str, ...]

    def __post_init__(self) -> None:
        """Refuse versions below 1, blank names and empty statement lists."""
        if self.version < 1:
            raise ValueError(f"migration version must be >= 1, got {self.version}")
        if not self.name.strip():
            raise ValueError(f"migration {self.version} needs a name")
        if not self.statements or any(not s.strip() for s in self.statements):
            raise ValueError(f"migration {self.version} needs non-empty statements")

    @property
    def checksum(self) -> str:
        """SHA-256 of the name and statements, ignoring surrounding whitespace."""
        digest = hashlib.sha256()
        for part in (self.name.strip(), *(s.strip() for s in self.statements)):
            digest.update(part.encode("utf-8"))
            digest.update(b"\x00")
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What one :func:`migrate` call did.

    ``applied`` lists the versions this call ran, ``current`` is the highest
    version recorded afterwards (0 when none) and ``ahead`` lists recorded
    versions newer than anything the code declares.
    """

    component: str
    applied: tuple[int, ...]
    current: int
    ahead: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _AppliedRow:
    version: int
    name: str
    checksum: str


async def migrate(
    database: Database, component: str, migrations: Sequence[Migration]
) -> MigrationResult:
    """Bring ``component``'s schema up to the last of ``migrations``.

    ``migrations`` must be sorted by strictly increasing version. Raises
    :class:`MigrationError` (or a subclass) when the recorded history and the
    declared one disagree, and re-raises the database's error when a
    statement fails (that migration and later ones are then not recorded).
    """
    declared = _validated(component, migrations)
    await _ensure_table(database)
    async with database.transaction() as conn:
        await _lock(conn, database.dialect, component)
        recorded = await _recorded(conn, component)
    ahead = _check_history(component, declared, recorded)

    applied: list[int] = []
    for migration in declared:
        if migration.version in recorded:
            continue
        async with database.transaction() as conn:
            await _lock(conn, database.dialect, component)
            recorded = await _recorded(conn, component)
            if migration.version in recorded:
                _check_same(component, migration, recorded[migration.version])
                continue
            for statement in migration.statements:
                await conn.exec_driver_sql(statement)
            await conn.execute(
                text(
                    f"INSERT INTO {MIGRATIONS_TABLE} (component, version, name, checksum) "
                    "VALUES (:component, :version, :name, :checksum)"
                ),
                {
                    "component": component,
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
        applied.append(migration.version)

    async with database.connection() as conn:
        recorded = await _recorded(conn, component)
    return MigrationResult(
        component=component,
        applied=tuple(applied),
        current=max(recorded, default=0),
        ahead=ahead,
    )


async def applied_versions(database: Database, component: str) -> tuple[int, ...]:
    """The versions recorded for ``component``, ascending; empty before any migration."""
    await _ensure_table(database)
    async with database.connection() as conn:
        return tuple(sorted(await _recorded(conn, component)))


def _validated(component: str, migrations: Sequence[Migration]) -> tuple[Migration, ...]:
    if not component.strip():
        raise ValueError("component name must not be blank")
    versions = [m.version for m in migrations]
    if any(later <= earlier for earlier, later in itertools.pairwise(versions)):
        raise ValueError(f"{component}: migration versions must strictly increase: {versions}")
    return tuple(migrations)


async def _ensure_table(database: Database) -> None:
    async with database.transaction() as conn:
        await _lock(conn, database.dialect, _BOOTSTRAP_LOCK_NAME)
        await conn.exec_driver_sql(_create_table_sql(database.dialect))


def _create_table_sql(dialect: Dialect) -> str:
    """The bookkeeping table; ``applied_at`` is UTC (ISO 8601 text on SQLite)."""
    if dialect is Dialect.POSTGRESQL:
        applied_at = "applied_at TIMESTAMPTZ NOT NULL DEFAULT now()"
    else:
        applied_at = "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
    return (
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        " component TEXT NOT NULL,"
        " version INTEGER NOT NULL,"
        " name TEXT NOT NULL,"
        " checksum TEXT NOT NULL,"
        f" {applied_at},"
        " PRIMARY KEY (component, version))"
    )


async def _lock(conn: AsyncConnection, dialect: Dialect, name: str) -> None:
    """Hold a lock named ``name`` until the current transaction ends (PostgreSQL only)."""
    if dialect is Dialect.POSTGRESQL:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key derived from ``name``."""
    digest = hashlib.sha256(f"llmgw:migrations:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _recorded(conn: AsyncConnection, component: str) -> dict[int, _AppliedRow]:
    result = await conn.execute(
        text(f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} WHERE component = :c"),
        {"c": component},
    )
    return {
        int(row.version): _AppliedRow(int(row.version), str(row.name), str(row.checksum))
        for row in result
    }


def _check_history(
    component: str, declared: tuple[Migration, ...], recorded: dict[int, _AppliedRow]
) -> tuple[int, ...]:
    """Verify recorded rows against the declared list; return the versions ahead of it."""
    by_version = {m.version: m for m in declared}
    newest_declared = declared[-1].version if declared else 0
    ahead: list[int] = []
    for version in sorted(recorded):
        migration = by_version.get(version)
        if migration is not None:
            _check_same(component, migration, recorded[version])
        elif version > newest_declared:
            ahead.append(version)
        else:
            raise UnknownMigrationError(
                f"{component}: database records migration {version} "
                f"({recorded[version].name!r}) that the code does not declare"
            )
    return tuple(ahead)


def _check_same(component: str, migration: Migration, row: _AppliedRow) -> None:
    if row.checksum != migration.checksum:
        raise MigrationChecksumError(
            f"{component}: migration {migration.version} ({row.name!r}) was changed after "
            f"it was applied (recorded checksum {row.checksum[:12]}, "
            f"declared {migration.checksum[:12]}); add a new migration instead"
        )
