"""The SQL client: one async engine over SQLite (aiosqlite) or PostgreSQL (asyncpg).

Services keep their state (registry, jobs, keys, usage) in SQL through this
module. It accepts the URLs people write and picks the async driver itself:

=====================================  =====================================
given                                  used
=====================================  =====================================
``sqlite:///path/to.db``               ``sqlite+aiosqlite:///path/to.db``
``sqlite+aiosqlite:///path/to.db``     unchanged
``postgresql://user@host/db``          ``postgresql+asyncpg://user@host/db``
``postgres://user@host/db``            ``postgresql+asyncpg://user@host/db``
``postgresql+asyncpg://...``           unchanged
=====================================  =====================================

Any other scheme or driver is refused with :class:`ValueError`.

SQLite connections run in WAL mode with foreign keys enforced and a busy
timeout, and their transactions start with a real ``BEGIN`` (the Python
driver's implicit transactions would otherwise commit DDL early), so
``transaction()`` behaves the same on both databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_SQLITE_BEGIN_OPTION = "llmgw_sqlite_begin"


class Dialect(Enum):
    """The database families the kernel supports."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """How to reach and pool one database.

    ``pool_size`` and ``max_overflow`` apply to PostgreSQL only; SQLite uses
    SQLAlchemy's default pool for file databases.
    """

    url: str
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    sqlite_busy_timeout_ms: int = 5000
    echo: bool = False


def normalise_url(url: str) -> URL:
    """Return ``url`` with its async driver made explicit (see the module table).

    Raises :class:`ValueError` for an unsupported scheme or driver.
    """
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    wanted = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}.get(backend)
    if wanted is None:
        raise ValueError(f"unsupported database scheme {parsed.drivername!r}")
    if driver not in ("", wanted):
        raise ValueError(f"unsupported driver {driver!r} for {backend}; use {wanted}")
    return parsed.set(drivername=f"{backend}+{wanted}")


class Database:
    """An open database: a pooled async engine plus transaction helpers.

    Build one with :meth:`connect`, share it for the life of the process and
    :meth:`close` it at shutdown. All methods are safe to use concurrently.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine made by :meth:`connect`; prefer that constructor."""
        self._engine = engine
        self._dialect = Dialect(engine.dialect.name)

    @classmethod
    async def connect(cls, config: DatabaseConfig) -> Database:
        """Create the engine for ``config`` and prove it works with ``SELECT 1``.

        Raises :class:`ValueError` for an unsupported URL and the driver's
        error (wrapped by SQLAlchemy) when the database does not answer.
        """
        engine = _create_engine(config)
        database = cls(engine)
        try:
            async with database.connection() as conn:
                await conn.execute(text("SELECT 1"))
        except BaseException:
            await engine.dispose()
            raise
        return database

    @property
    def engine(self) -> AsyncEngine:
        """The underlying SQLAlchemy engine, for code that needs it directly."""
        return self._engine

    @property
    def dialect(self) -> Dialect:
        """Which database family this is."""
        return self._dialect

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Run a block in one write transaction.

        Commits when the block exits normally, rolls back when it raises (and
        re-raises). On SQLite the write lock is taken at the start
        (``BEGIN IMMEDIATE``), so a read-then-write block never fails halfway
        on lock upgrade; other writers wait up to the busy timeout.
        """
        async with self._engine.connect() as conn:
            if self._dialect is Dialect.SQLITE:
                await conn.execution_options(**{_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            async with conn.begin():
                yield conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """Lend a connection for reads; its implicit transaction is rolled back at exit.

        Call ``await conn.commit()`` inside the block to keep writes.
        """
        async with self._engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        """Close every pooled connection. The object is unusable afterwards."""
        await self._engine.dispose()


def _create_engine(config: DatabaseConfig) -> AsyncEngine:
    url = normalise_url(config.url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url,
            echo=config.echo,
            connect_args={"timeout": config.sqlite_busy_timeout_ms / 1000},
        )
        _install_sqlite_hooks(engine, config.sqlite_busy_timeout_ms)
        return engine
    return create_async_engine(
        url,
        echo=config.echo,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout_seconds,
        pool_pre_ping=True,
        connect_args={"timeout": config.connect_timeout_seconds},
    )


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """Give every SQLite connection WAL, foreign keys and explicit ``BEGIN``."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level; SQLAlchemy's begin hook below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
