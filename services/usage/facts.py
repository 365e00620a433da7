"""What the pipeline keeps of an event: flat, validated facts ready for SQL.

A ``UsageRecorded`` becomes a :class:`UsageFact` (its dimensions, the time it
counts at, and the numbers it adds), an ``AuditRecorded`` an
:class:`AuditFact`. An event that cannot be counted correctly (negative
counts or amounts, a cost without a currency, an audit entry without id or
action) or that SQL could not store (a time outside years 1970 to 9999, a text
with a NUL or longer than :data:`MAX_TEXT`, a count or amount over
:data:`MAX_VALUE`) raises :class:`MalformedEvent`; the pipeline dead-letters it,
so one bad event never holds up the others. Tags longer than :data:`MAX_TAGS`
bytes are counted as :data:`OVERSIZED_TAGS`, so the request's usage and cost
are kept.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import datetime

from google.protobuf import json_format

from llmgw.events.v1 import events_pb2

COUNTERS: tuple[str, ...] = (
    "request_count",
    "error_count",
    "cached_count",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "total_tokens",
    "input_nanos",
    "output_nanos",
    "cached_input_nanos",
    "cache_creation_input_nanos",
    "total_nanos",
)
"""The summed columns of a usage rollup, in this order everywhere."""

DIMENSIONS: tuple[str, ...] = ("api_key_id", "project_id", "model", "provider")
"""The plain grouping columns of a usage rollup (tags are kept apart)."""

_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_TEXT = 512
"""Longest id, model, provider, actor, action or resource kept, in characters."""
MAX_TAGS = 2048
"""Longest tag set kept, in bytes of its canonical JSON (rollup rows are keyed by it)."""
OVERSIZED_TAGS = '{"llmgw.tags":"oversized"}'
"""The tags a request with oversized tags is counted under."""
MAX_VALUE = 10**15
"""Largest token count or amount (nanos: a million units of currency) one event may add,
so that sums of a bucket stay far inside a 64-bit integer."""
MAX_EPOCH_SECONDS = 253402300799
"""The last second of the year 9999."""


class Granularity(enum.IntEnum):
    """Width of a stored time bucket, in seconds; buckets are aligned to the UTC epoch."""

    MINUTE = 60
    HOUR = 3600
    DAY = 86400

    def floor(self, epoch_seconds: int) -> int:
        """Start of the bucket holding ``epoch_seconds``."""
        return epoch_seconds - epoch_seconds % self.value


class MalformedEvent(ValueError):
    """An event that decodes but cannot be counted; the message says why."""


@dataclass(frozen=True, slots=True)
class UsageFact:
    """One request's contribution to the rollups.

    ``at`` is the epoch second the request counts at (its start time, else the
    event time); ``tags`` is the canonical JSON of the request tags (sorted keys).
    """

    event_id: str
    at: int
    api_key_id: str
    project_id: str
    model: str
    provider: str
    tags: str
    currency_code: str
    counters: tuple[int, ...]

    @property
    def claim(self) -> str:
        """The key this fact is de-duplicated by: the event id."""
        return self.event_id

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The values of :data:`DIMENSIONS`, in order."""
        return (self.api_key_id, self.project_id, self.model, self.provider)

    @property
    def total_nanos(self) -> int:
        """What the request cost, in nanos of ``currency_code``."""
        return self.counters[COUNTERS.index("total_nanos")]


@dataclass(frozen=True, slots=True)
class AuditFact:
    """One audit entry with the columns its queries filter on; ``body`` is its proto JSON."""

    id: str
    time_micros: int
    actor_id: str
    project_id: str
    action: str
    resource: str
    body: str

    @property
    def claim(self) -> str:
        """The key this fact is de-duplicated by: the entry id, apart from usage event ids."""
        return f"audit:{self.id}"


def canonical_tags(tags: dict[str, str]) -> str:
    """The tags as compact JSON with sorted keys: equal tag sets give equal text."""
    return json.dumps(tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def usage_fact(event_id: str, event_time: datetime, event: events_pb2.UsageRecorded) -> UsageFact:
    """The fact of ``event`` delivered with id ``event_id``; raises :class:`MalformedEvent`."""
    usage, cost = event.usage, event.cost
    tokens = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_creation_input_tokens,
        usage.reasoning_tokens,
        usage.total_tokens,
    )
    amounts = (
        cost.input_nanos,
        cost.output_nanos,
        cost.cached_input_nanos,
        cost.cache_creation_input_nanos,
        cost.total_nanos,
    )
    if any(value < 0 for value in (*tokens, *amounts)):
        raise MalformedEvent(f"usage event {event_id} has a negative token count or amount")
    if any(value > MAX_VALUE for value in (*tokens, *amounts)):
        raise MalformedEvent(f"usage event {event_id} has a count or amount over {MAX_VALUE}")
    currency = cost.currency_code
    if currency and not _CURRENCY.match(currency):
        raise MalformedEvent(f"usage event {event_id} has currency {currency!r}, not ISO 4217")
    if any(amounts) and not currency:
        raise MalformedEvent(f"usage event {event_id} has a cost without a currency")
    has_start = event.HasField("start_time")
    at = event.start_time.seconds if has_start else int(event_time.timestamp())
    _check_time(event_id, at)
    failed = event.HasField("error") and event.error.code != 0
    fact = UsageFact(
        event_id=event_id,
        at=at,
        api_key_id=event.api_key_id,
        project_id=event.project_id,
        model=event.served_by.model or event.requested_model,
        provider=event.served_by.provider,
        tags=_bounded_tags(dict(event.tags)),
        currency_code=currency,
        counters=(1, int(failed), int(event.cached), *tokens, *amounts),
    )
    _check_texts(event_id, fact.event_id, *fact.dimensions)
    return fact


def _bounded_tags(tags: dict[str, str]) -> str:
    """The canonical tags, or :data:`OVERSIZED_TAGS` when they are too long to key rows by
    (the request still counts, under that one tag)."""
    text = canonical_tags(tags)
    return text if len(text.encode()) <= MAX_TAGS else OVERSIZED_TAGS


def _check_time(event_id: str, epoch_seconds: int) -> None:
    if not 0 <= epoch_seconds <= MAX_EPOCH_SECONDS:
        raise MalformedEvent(f"event {event_id} has a time outside the years 1970 to 9999")


def _check_texts(event_id: str, *texts: str) -> None:
    if any(len(text) > MAX_TEXT or "\x00" in text for text in texts):
        raise MalformedEvent(f"event {event_id} has a text over {MAX_TEXT} characters or a NUL")


def audit_fact(event_id: str, event_time: datetime, event: events_pb2.AuditRecorded) -> AuditFact:
    """The fact of ``event``; raises :class:`MalformedEvent` without entry id or action.

    The entry's id defaults to ``event_id`` and its time to ``event_time``.
    """
    entry = type(event.entry)()
    entry.CopyFrom(event.entry)
    if not entry.id:
        entry.id = event_id
    if not entry.action:
        raise MalformedEvent(f"audit event {event_id} has no action")
    if not entry.HasField("time"):
        entry.time.FromDatetime(event_time)
    _check_time(event_id, entry.time.seconds)
    _check_texts(
        event_id, entry.id, entry.actor.id, entry.actor.project_id, entry.action, entry.resource
    )
    return AuditFact(
        id=entry.id,
        time_micros=entry.time.ToMicroseconds(),
        actor_id=entry.actor.id,
        project_id=entry.actor.project_id,
        action=entry.action,
        resource=entry.resource,
        body=json_format.MessageToJson(entry, indent=None),
    )
