"""The usage tables on SQLite and PostgreSQL: exactly-once apply, rollups and audit queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.kernel.migrations import migrate
from services.kernel.sql import Database, DatabaseConfig
from services.usage.facts import Granularity, UsageFact, audit_fact, usage_fact
from services.usage.schema import COMPONENT, MIGRATIONS
from services.usage.store import TAG, AuditQuery, MixedCurrencies, UsageQuery, UsageStore
from tests.integration.usage.support import BASE_TIME, audit_event, usage_event

pytestmark = pytest.mark.integration

EVENT_TIME = datetime.fromtimestamp(BASE_TIME, UTC)
DAY = 86400


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[UsageStore]:
    database = await Database.connect(DatabaseConfig(database_url))
    await migrate(database, COMPONENT, MIGRATIONS)
    try:
        yield UsageStore(database)
    finally:
        await database.close()


def fact(request_id: str, **fields: Any) -> UsageFact:
    return usage_fact(request_id, EVENT_TIME, usage_event(request_id, **fields))


async def test_an_event_is_applied_once_however_often_it_is_delivered(store: UsageStore) -> None:
    first = await store.apply([fact("r1"), fact("r2"), fact("r1")], [], now=100)
    assert first.new == {"r1", "r2"}
    again = await store.apply([fact("r2"), fact("r3")], [], now=200)
    assert again.new == {"r3"}
    assert again.duplicates == {"r2": 100}

    rows = await store.usage_rows(UsageQuery(start=BASE_TIME, end=BASE_TIME + DAY))
    assert len(rows) == 1
    totals = rows[0].totals
    assert totals.value("request_count") == 3
    assert totals.value("total_tokens") == 45
    assert totals.value("total_nanos") == 3000
    assert totals.currency_code == "USD"


async def test_rollups_group_by_every_dimension_and_bucket(store: UsageStore) -> None:
    facts = [
        fact("a1", api_key_id="key-a", model="m1", at=BASE_TIME + 10, tags={"team": "x"}),
        fact("a2", api_key_id="key-a", model="m2", at=BASE_TIME + 70, tags={"team": "y"}),
        fact("b1", api_key_id="key-b", project_id="proj-2", provider="openai", at=BASE_TIME + 3700),
        fact("b2", api_key_id="key-b", project_id="proj-2", cached=True, failed=True,
             at=BASE_TIME + DAY + 5, tags={"team": "x", "env": "prod"}),
    ]  # fmt: skip
    await store.apply(facts, [], now=1)

    by_key = await store.usage_rows(
        UsageQuery(start=BASE_TIME, end=BASE_TIME + 2 * DAY, group_by=("api_key_id",))
    )
    assert [(r.group, r.totals.value("request_count")) for r in by_key] == [
        (("key-a",), 2),
        (("key-b",), 2),
    ]
    by_minute = await store.usage_rows(
        UsageQuery(start=BASE_TIME, end=BASE_TIME + 3600, bucket=Granularity.MINUTE)
    )
    assert [(r.bucket_start, r.totals.value("request_count")) for r in by_minute] == [
        (BASE_TIME, 1),
        (BASE_TIME + 60, 1),
    ]
    by_day_and_provider = await store.usage_rows(
        UsageQuery(
            start=BASE_TIME,
            end=BASE_TIME + 2 * DAY,
            bucket=Granularity.DAY,
            group_by=("provider",),
        )
    )
    counted = by_day_and_provider
    assert [(r.bucket_start, r.group, r.totals.value("request_count")) for r in counted] == [
        (BASE_TIME, ("openai",), 1),
        (BASE_TIME, ("simulated",), 2),
        (BASE_TIME + DAY, ("simulated",), 1),
    ]  # fmt: skip
    by_tag = await store.usage_rows(
        UsageQuery(start=BASE_TIME, end=BASE_TIME + 2 * DAY, group_by=(TAG,), tag_key="team")
    )
    assert [(r.group, r.totals.value("request_count")) for r in by_tag] == [
        (("",), 1),
        (("x",), 2),
        (("y",), 1),
    ]
    tagged = await store.usage_rows(
        UsageQuery(
            start=BASE_TIME,
            end=BASE_TIME + 2 * DAY,
            tags=(("env", "prod"), ("team", "x")),
        )
    )
    assert len(tagged) == 1
    assert tagged[0].totals.value("cached_count") == 1
    assert tagged[0].totals.value("error_count") == 1
    filtered = await store.usage_rows(
        UsageQuery(
            start=BASE_TIME,
            end=BASE_TIME + 2 * DAY,
            group_by=("model",),
            api_key_ids=("key-a",),
            models=("m2", "m9"),
        )
    )
    assert [(r.group, r.totals.value("request_count")) for r in filtered] == [(("m2",), 1)]
    # A range that is not aligned to the hour is answered from the minute rollups.
    partial = await store.usage_rows(UsageQuery(start=BASE_TIME + 60, end=BASE_TIME + 3660))
    assert partial[0].totals.value("request_count") == 1


async def test_costs_in_two_currencies_are_not_added_up(store: UsageStore) -> None:
    await store.apply([fact("u1"), fact("e1", currency="EUR")], [], now=1)
    with pytest.raises(MixedCurrencies):
        await store.usage_rows(UsageQuery(start=BASE_TIME, end=BASE_TIME + DAY))


async def test_the_audit_log_is_filtered_and_paged_newest_first(store: UsageStore) -> None:
    micros = BASE_TIME * 1_000_000
    events = [
        audit_event("e1", action="models.aliases.update", at_micros=micros + 1),
        audit_event("e2", action="models.aliases", resource="models/bot", at_micros=micros + 2),
        audit_event("e3", action="models.aliasesx", at_micros=micros + 3),
        audit_event("e4", actor_id="bob", project_id="proj-2", action="admin.api_keys.create",
                    resource="projects/proj-2/keys/k", at_micros=micros + 4),
    ]  # fmt: skip
    facts = [audit_fact(e.metadata.id, EVENT_TIME, e) for e in events]
    result = await store.apply([], facts, now=1)
    assert result.new == {"audit:e1", "audit:e2", "audit:e3", "audit:e4"}
    assert (await store.apply([], facts[:1], now=2)).new == frozenset()

    everything = AuditQuery(start_micros=micros, end_micros=micros + 10)
    assert [e[1] for e in await store.audit_entries(everything)] == ["e4", "e3", "e2", "e1"]
    by_action = AuditQuery(start_micros=micros, end_micros=micros + 10, action="models.aliases")
    assert [e[1] for e in await store.audit_entries(by_action)] == ["e2", "e1"]
    by_resource = AuditQuery(start_micros=micros, end_micros=micros + 10, resource="models/bot")
    assert [e[1] for e in await store.audit_entries(by_resource)] == ["e3", "e2", "e1"]
    by_actor = AuditQuery(start_micros=micros, end_micros=micros + 10, actor_id="bob")
    assert [e[1] for e in await store.audit_entries(by_actor)] == ["e4"]
    by_project = AuditQuery(start_micros=micros, end_micros=micros + 10, project_id="proj-1")
    assert len(await store.audit_entries(by_project)) == 3
    in_range = AuditQuery(start_micros=micros + 2, end_micros=micros + 4)
    assert [e[1] for e in await store.audit_entries(in_range)] == ["e3", "e2"]
    after = AuditQuery(
        start_micros=micros, end_micros=micros + 10, limit=2, after=(micros + 3, "e3")
    )
    assert [e[1] for e in await store.audit_entries(after)] == ["e2", "e1"]


async def test_applied_ids_older_than_the_retention_are_forgotten(store: UsageStore) -> None:
    await store.apply([fact("old")], [], now=100)
    await store.apply([fact("recent")], [], now=500)
    assert await store.forget_processed(before=200) == 1
    again = await store.apply([fact("old"), fact("recent")], [], now=600)
    assert again.new == {"old"}
    assert again.duplicates == {"recent": 500}
