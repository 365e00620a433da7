"""Fixtures for real servers and per-test isolation.

Session fixtures (synchronous, so they need no event loop) yield a server's
URL, taking it from the environment or starting one from a pip package the
first time a test asks; servers nobody asks for never start:

- ``redis_url``        ``REDIS_URL`` or Valkey;
- ``kafka_bootstrap``  ``KAFKA_BOOTSTRAP_SERVERS`` or Tansu;
- ``postgres_url``     ``DATABASE_URL`` or embedded PostgreSQL (an admin URL).

Per-test fixtures isolate tests from each other:

- ``sqlite_url``       a fresh SQLite file;
- ``postgres_database_url``  a fresh PostgreSQL database, dropped afterwards;
- ``database_url``     parametrised over both of the above (ids ``sqlite``, ``postgresql``);
- ``redis_prefix``     a unique key prefix whose keys are deleted afterwards;
- ``unique_name``      a factory of unique topic and group names.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.kernel.sql import normalise_url
from tests.harness.kafka_broker import kafka_broker
from tests.harness.postgres_server import postgres_server
from tests.harness.redis_server import redis_server
from tests.harness.server import ServerInfo

_STARTED_SERVERS = pytest.StashKey[list[ServerInfo]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``integration`` marker (also declared in pyproject)."""
    config.addinivalue_line(
        "markers", "integration: talks to a real Redis, Kafka-protocol broker or PostgreSQL"
    )
    config.stash[_STARTED_SERVERS] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which servers this run used and how long those started here took."""
    servers = terminalreporter.config.stash.get(_STARTED_SERVERS, [])
    if not servers:
        return
    terminalreporter.section("test servers")
    for info in servers:
        origin = (
            f"started in {info.startup_seconds:.2f}s"
            if info.startup_seconds is not None
            else "from environment"
        )
        terminalreporter.write_line(f"{info.name}: {info.url} ({origin})")


def _remember(request: pytest.FixtureRequest, info: ServerInfo) -> str:
    request.config.stash[_STARTED_SERVERS].append(info)
    return info.url


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis URL for the whole session."""
    with redis_server() as info:
        yield _remember(request, info)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap servers (``host:port[,...]``) of a Kafka-protocol broker."""
    with kafka_broker() as info:
        yield _remember(request, info)


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL whose user may create databases; tests use ``postgres_database_url``."""
    with postgres_server() as info:
        yield _remember(request, info)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for this test."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
async def postgres_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped (forcefully) afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(normalise_url(postgres_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """This test's fresh database, once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_database_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("orders")`` -> ``orders.<test>.<random>``, for topics and groups."""
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]

    def make(kind: str) -> str:
        return f"{kind}.{test}.{uuid.uuid4().hex[:8]}"

    return make
