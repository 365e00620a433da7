"""Database URLs are normalised to their async drivers."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from services.kernel.sql import normalise_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/llmgw.db", "sqlite+aiosqlite:///data/llmgw.db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("postgresql://u:p@db:5432/llmgw", "postgresql+asyncpg://u:p@db:5432/llmgw"),
        ("postgres://u@db/llmgw", "postgresql+asyncpg://u@db/llmgw"),
        ("postgresql+asyncpg://u@db/llmgw", "postgresql+asyncpg://u@db/llmgw"),
    ],
)
def test_normalise_url(given: str, expected: str) -> None:
    assert normalise_url(given) == make_url(expected)


@pytest.mark.parametrize(
    "url", ["mysql://u@db/x", "postgresql+psycopg2://u@db/x", "sqlite+pysqlite:///x.db"]
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        normalise_url(url)
