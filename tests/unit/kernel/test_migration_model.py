"""Migration declarations are validated and fingerprinted."""

from __future__ import annotations

import pytest

from services.kernel.migrations import Migration


def test_checksum_ignores_surrounding_whitespace_only() -> None:
    base = Migration(1, "create t", ("CREATE TABLE t (id INTEGER)",))
    spaced = Migration(1, " create t ", ("\n  CREATE TABLE t (id INTEGER)\n",))
    changed = Migration(1, "create t", ("CREATE TABLE t (id BIGINT)",))
    renamed = Migration(1, "make t", ("CREATE TABLE t (id INTEGER)",))

    assert base.checksum == spaced.checksum
    assert base.checksum != changed.checksum
    assert base.checksum != renamed.checksum


def test_statement_boundaries_are_part_of_the_checksum() -> None:
    one = Migration(1, "m", ("SELECT 1; SELECT 2",))
    two = Migration(1, "m", ("SELECT 1;", "SELECT 2"))
    assert one.checksum != two.checksum


@pytest.mark.parametrize(
    ("version", "name", "statements"),
    [(0, "m", ("SELECT 1",)), (1, " ", ("SELECT 1",)), (1, "m", ()), (1, "m", ("  ",))],
)
def test_invalid_migrations_are_refused(
    version: int, name: str, statements: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError, match="migration"):
        Migration(version, name, statements)
