"""Page tokens: forged ones are INVALID_ARGUMENT, never a number SQL cannot hold."""

from __future__ import annotations

import pytest

from services.finetuning import paging
from services.kernel.errors import InvalidArgument

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def test_cursor_numbers_at_the_int64_bounds_round_trip() -> None:
    for number in (INT64_MIN, 0, INT64_MAX):
        assert paging.decode_int(paging.encode("events", number), "events") == number
        created = paging.decode_created(paging.encode("jobs", number, "ftjob_1"), "jobs")
        assert created == (number, "ftjob_1")


@pytest.mark.parametrize("number", [INT64_MAX + 1, INT64_MIN - 1, 1 << 200, -(1 << 200)])
def test_cursor_numbers_beyond_int64_are_invalid_argument(number: int) -> None:
    with pytest.raises(InvalidArgument):
        paging.decode_int(paging.encode("events", number), "events")
    with pytest.raises(InvalidArgument):
        paging.decode_created(paging.encode("jobs", number, "ftjob_1"), "jobs")


def test_a_cursor_that_is_not_a_number_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        paging.decode_int(paging.encode("events", "x"), "events")
    with pytest.raises(InvalidArgument):
        paging.decode_int(paging.encode("events", "9" * 5000), "events")
