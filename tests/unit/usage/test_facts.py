"""Turning events into facts: the numbers they add and the events that are refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import timestamp_pb2

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from services.usage.facts import (
    COUNTERS,
    OVERSIZED_TAGS,
    Granularity,
    MalformedEvent,
    audit_fact,
    canonical_tags,
    usage_fact,
)

EVENT_TIME = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def event(**fields: object) -> events_pb2.UsageRecorded:
    message = events_pb2.UsageRecorded(
        api_key_id="k",
        project_id="p",
        requested_model="bot@prod",
        served_by=common_pb2.ServingInfo(provider="openai", model="bot"),
        usage=common_pb2.Usage(input_tokens=3, output_tokens=4, total_tokens=7),
        cost=common_pb2.Cost(currency_code="USD", total_nanos=9, output_nanos=9),
    )
    for name, value in fields.items():
        field = getattr(message, name)
        if hasattr(field, "CopyFrom"):
            field.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def test_a_usage_event_adds_one_request_with_its_tokens_and_cost() -> None:
    fact = usage_fact("r1", EVENT_TIME, event(cached=True))
    counters = dict(zip(COUNTERS, fact.counters, strict=True))
    assert counters["request_count"] == 1
    assert counters["cached_count"] == 1
    assert counters["error_count"] == 0
    assert counters["total_tokens"] == 7
    assert counters["total_nanos"] == fact.total_nanos == 9
    assert fact.dimensions == ("k", "p", "bot", "openai")
    assert fact.at == int(EVENT_TIME.timestamp())


def test_a_failed_request_without_a_deployment_counts_under_the_requested_model() -> None:
    message = event()
    message.ClearField("served_by")
    message.error.code = 14
    fact = usage_fact("r1", EVENT_TIME, message)
    assert fact.model == "bot@prod"
    assert fact.counters[COUNTERS.index("error_count")] == 1


def test_the_start_time_decides_the_bucket() -> None:
    message = event()
    message.start_time.FromSeconds(3_600 * 5 + 59)
    fact = usage_fact("r1", EVENT_TIME, message)
    assert Granularity.MINUTE.floor(fact.at) == 3_600 * 5
    assert Granularity.HOUR.floor(fact.at) == 3_600 * 5
    assert Granularity.DAY.floor(fact.at) == 0


def test_equal_tag_sets_give_equal_text() -> None:
    assert canonical_tags({"b": "2", "a": "1"}) == canonical_tags({"a": "1", "b": "2"})


@pytest.mark.parametrize(
    "broken",
    [
        event(usage=common_pb2.Usage(input_tokens=-1)),
        event(cost=common_pb2.Cost(currency_code="USD", total_nanos=-5)),
        event(cost=common_pb2.Cost(total_nanos=5)),
        event(cost=common_pb2.Cost(currency_code="dollars", total_nanos=5)),
    ],
)
def test_events_that_cannot_be_counted_are_refused(broken: events_pb2.UsageRecorded) -> None:
    with pytest.raises(MalformedEvent):
        usage_fact("r1", EVENT_TIME, broken)


def test_an_audit_entry_takes_the_event_id_and_time_when_it_has_none() -> None:
    fact = audit_fact(
        "e1",
        EVENT_TIME,
        events_pb2.AuditRecorded(entry=common_pb2.AuditEntry(action="admin.keys.create")),
    )
    assert fact.id == "e1"
    assert fact.time_micros == int(EVENT_TIME.timestamp()) * 1_000_000
    with pytest.raises(MalformedEvent):
        audit_fact("e2", EVENT_TIME, events_pb2.AuditRecorded())


@pytest.mark.parametrize(
    "fields",
    [
        {"start_time": timestamp_pb2.Timestamp(seconds=253402300800)},  # year 10000
        {"requested_model": "bot\x00", "served_by": common_pb2.ServingInfo()},
        {"api_key_id": "k" * 513},
        {"usage": common_pb2.Usage(input_tokens=10**15 + 1)},
        {"cost": common_pb2.Cost(currency_code="USD", total_nanos=2**62)},
    ],
)
def test_events_sql_could_not_store_are_malformed(fields: dict[str, object]) -> None:
    with pytest.raises(MalformedEvent):
        usage_fact("e1", EVENT_TIME, event(**fields))


def test_oversized_tags_count_under_one_tag_and_keep_the_cost() -> None:
    message = event()
    message.tags["note"] = "x" * 4000
    fact = usage_fact("e1", EVENT_TIME, message)
    assert fact.tags == OVERSIZED_TAGS
    assert fact.total_nanos == 9


def test_an_audit_entry_from_beyond_year_9999_is_malformed() -> None:
    entry = common_pb2.AuditEntry(
        id="a1", action="x.y", time=timestamp_pb2.Timestamp(seconds=253402300800)
    )
    with pytest.raises(MalformedEvent):
        audit_fact("a1", EVENT_TIME, events_pb2.AuditRecorded(entry=entry))
