"""The spend ledger on a real Redis: periods, idempotent records, one-trip reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as redis

from services.kernel.spend import (
    BudgetPeriod,
    SpendLedger,
    SpendSubject,
    SubjectKind,
    counter_key,
    period_window,
)

pytestmark = pytest.mark.integration

KEY = SpendSubject(SubjectKind.API_KEY, "key_a")
PROJECT = SpendSubject(SubjectKind.PROJECT, "proj-a")
AT = datetime(2026, 11, 25, 13, 30, tzinfo=UTC)  # a Wednesday


@pytest.fixture
async def ledger(redis_url: str, redis_prefix: str) -> AsyncIterator[SpendLedger]:
    client = redis.Redis.from_url(redis_url)
    yield SpendLedger(client, namespace=f"{redis_prefix}llmgw")
    await client.aclose()


def test_periods_start_at_utc_midnight_monday_and_the_first() -> None:
    assert period_window(BudgetPeriod.DAY, AT) == (
        datetime(2026, 11, 25, tzinfo=UTC),
        datetime(2026, 11, 26, tzinfo=UTC),
    )
    assert period_window(BudgetPeriod.WEEK, AT) == (
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
    )
    assert period_window(BudgetPeriod.MONTH, datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_counter_keys_share_one_hash_tag() -> None:
    day = counter_key("USD", KEY, BudgetPeriod.DAY, AT)
    month = counter_key("USD", PROJECT, BudgetPeriod.MONTH, AT)
    assert day == "llmgw:spend:{llmgw-spend}:USD:key:key_a:day:20261125"
    assert month.startswith("llmgw:spend:{llmgw-spend}:USD:project:proj-a:month:20261101")


async def test_record_adds_to_every_period_of_every_subject(ledger: SpendLedger) -> None:
    assert await ledger.record("req-1", "USD", [KEY, PROJECT], 1500, AT)
    assert await ledger.record("req-2", "USD", [PROJECT], 500, AT)
    queries = [(subject, period) for subject in (KEY, PROJECT) for period in BudgetPeriod]
    assert await ledger.spent("USD", queries, AT) == [1500, 1500, 1500, 2000, 2000, 2000]


async def test_a_replayed_event_counts_once(ledger: SpendLedger) -> None:
    records = await asyncio.gather(
        *(ledger.record("req-dup", "USD", [KEY], 700, AT) for _ in range(10))
    )
    assert sorted(records) == [False] * 9 + [True]
    assert await ledger.spent("USD", [(KEY, BudgetPeriod.DAY)], AT) == [700]


async def test_a_new_period_starts_from_zero(ledger: SpendLedger) -> None:
    await ledger.record("req-old", "USD", [KEY], 900, AT)
    next_day = datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC)
    assert await ledger.spent(
        "USD", [(KEY, BudgetPeriod.DAY), (KEY, BudgetPeriod.WEEK)], next_day
    ) == [0, 900]
    assert await ledger.spent("EUR", [(KEY, BudgetPeriod.DAY)], AT) == [0]


async def test_spend_of_a_long_gone_period_makes_no_counter(
    ledger: SpendLedger, redis_url: str, redis_prefix: str
) -> None:
    long_ago = datetime(2020, 1, 15, tzinfo=UTC)
    assert await ledger.record("req-late", "USD", [KEY], 500, long_ago)
    client = redis.Redis.from_url(redis_url)
    try:
        assert [key async for key in client.scan_iter(match=f"{redis_prefix}*:key:*")] == []
    finally:
        await client.aclose()
