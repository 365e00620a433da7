"""SQL access of the usage pipeline: applying event batches once, and the queries.

:meth:`UsageStore.apply` writes one batch in one transaction: it inserts the
event ids into ``usage_processed_events`` (ids already there are duplicates
and add nothing), adds the new usage facts to the minute, hour and day
rollups, and appends the new audit entries. Either all of it commits or none,
so a batch redelivered after a crash is counted exactly once.

Rollup rows are upserted in sorted key order, so replicas of the consumer
writing the same rows lock them in the same order (no deadlock on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.kernel.sql import Database
from services.usage.facts import COUNTERS, DIMENSIONS, AuditFact, Granularity, UsageFact

_CHUNK = 400
"""Rows per multi-row statement (keeps bind parameters well under driver limits)."""

TAG = "tag"
"""The grouping name of "the value of one tag" next to :data:`~services.usage.facts.DIMENSIONS`."""

RollupKey = tuple[int, int, str, str, str, str, str, str]

F = TypeVar("F")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What :meth:`UsageStore.apply` did.

    ``new`` are the claims (``UsageFact.claim``, ``AuditFact.claim``) applied by
    this call; ``duplicates`` maps each claim applied before to when (epoch seconds).
    """

    new: frozenset[str]
    duplicates: dict[str, int]


class MixedCurrencies(ValueError):
    """Costs in different currencies would have to be added up."""


@dataclass(slots=True)
class Totals:
    """Sums of :data:`~services.usage.facts.COUNTERS`; ``currency_code`` of the costs."""

    counters: list[int] = field(default_factory=lambda: [0] * len(COUNTERS))
    currency_code: str = ""

    def add(self, counters: Sequence[int], currency_code: str) -> None:
        """Add one row; raises :class:`MixedCurrencies` when the currencies differ."""
        if currency_code and self.currency_code and currency_code != self.currency_code:
            raise MixedCurrencies(
                f"costs in {self.currency_code} and {currency_code} cannot be summed"
            )
        self.currency_code = self.currency_code or currency_code
        for index, value in enumerate(counters):
            self.counters[index] += int(value)

    def value(self, name: str) -> int:
        """The sum of counter ``name``."""
        return self.counters[COUNTERS.index(name)]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which rollups to sum and how to group them.

    ``start`` and ``end`` are epoch seconds aligned to the minute (the range is
    ``[start, end)``); ``bucket`` None sums the whole range per group.
    ``group_by`` holds names of :data:`~services.usage.facts.DIMENSIONS` and
    :data:`TAG` (the value of ``tag_key``). The filters match any of their
    values; ``tags`` must all be present with these values.
    """

    start: int
    end: int
    bucket: Granularity | None = None
    group_by: tuple[str, ...] = ()
    tag_key: str = ""
    api_key_ids: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def storage_granularity(self) -> Granularity:
        """The coarsest stored granularity that covers the range and the buckets exactly."""
        widest = self.bucket or Granularity.DAY
        for granularity in sorted(Granularity, reverse=True):
            if granularity <= widest and self.start % granularity == self.end % granularity == 0:
                return granularity
        return Granularity.MINUTE


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group in one bucket; ``group`` holds the values of ``UsageQuery.group_by``."""

    bucket_start: int | None
    group: tuple[str, ...]
    totals: Totals


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the audit log; ``after`` is the (time, id) of the last entry seen."""

    start_micros: int
    end_micros: int
    actor_id: str = ""
    action: str = ""
    resource: str = ""
    project_id: str = ""
    limit: int = 100
    after: tuple[int, str] | None = None


class UsageStore:
    """The usage tables of one database (see :mod:`services.usage.schema`)."""

    def __init__(self, database: Database) -> None:
        """Use ``database``, already migrated."""
        self._database = database

    async def apply(
        self, usage: Sequence[UsageFact], audit: Sequence[AuditFact], now: int
    ) -> ApplyResult:
        """Apply the facts whose ids were never applied, in one transaction.

        Facts sharing a claim within the batch count once (the first).
        """
        ids = list(dict.fromkeys([*(f.claim for f in usage), *(f.claim for f in audit)]))
        async with self._database.transaction() as conn:
            new = await _claim(conn, ids, now)
            duplicates = await _processed_at(conn, [i for i in ids if i not in new])
            fresh_usage = _first_of_each(usage, new, lambda f: f.claim)
            fresh_audit = _first_of_each(audit, new, lambda f: f.claim)
            await _add_rollups(conn, fresh_usage)
            await _append_audit(conn, fresh_audit)
        return ApplyResult(frozenset(new), duplicates)

    async def forget_processed(self, before: int) -> int:
        """Delete the ids of events applied before ``before`` (epoch seconds); return how many.

        An event delivered again after its id was forgotten is counted again, so
        keep ids at least as long as the topics keep events.
        """
        async with self._database.transaction() as conn:
            result = await conn.execute(
                text("DELETE FROM usage_processed_events WHERE processed_at < :before"),
                {"before": before},
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def usage_rows(self, query: UsageQuery) -> list[UsageRow]:
        """The rows of ``query``, ordered by bucket then group.

        Raises :class:`MixedCurrencies` when one row would add up two currencies.
        """
        granularity = query.storage_granularity()
        dimensions = [d for d in query.group_by if d in DIMENSIONS]
        needs_tags = TAG in query.group_by or bool(query.tags)
        columns = ["bucket_start"] if query.bucket else []
        columns += dimensions
        if needs_tags:
            columns.append("tags")
        columns.append("currency_code")
        sums = ", ".join(f"SUM({name}) AS {name}" for name in COUNTERS)
        where = ["granularity = :granularity", "bucket_start >= :start", "bucket_start < :end"]
        params: dict[str, object] = {
            "granularity": int(granularity),
            "start": query.start,
            "end": query.end,
        }
        expanding: list[str] = []
        for column, values in (
            ("api_key_id", query.api_key_ids),
            ("project_id", query.project_ids),
            ("model", query.models),
            ("provider", query.providers),
        ):
            if values:
                where.append(f"{column} IN :{column}_in")
                params[f"{column}_in"] = list(values)
                expanding.append(f"{column}_in")
        statement = text(
            f"SELECT {', '.join(columns)}, {sums} FROM usage_rollups"
            f" WHERE {' AND '.join(where)} GROUP BY {', '.join(columns)}"
        ).bindparams(*(bindparam(name, expanding=True) for name in expanding))
        async with self._database.connection() as conn:
            result = await conn.execute(statement, params)
            fetched = result.mappings().all()
        wanted_tags = dict(query.tags)
        rows: dict[tuple[int | None, tuple[str, ...]], Totals] = {}
        for row in fetched:
            tag_value = ""
            if needs_tags:
                tags = json.loads(row["tags"])
                if any(tags.get(k) != v for k, v in wanted_tags.items()):
                    continue
                tag_value = str(tags.get(query.tag_key, ""))
            group = tuple(tag_value if d == TAG else str(row[d]) for d in query.group_by)
            bucket_start = query.bucket.floor(int(row["bucket_start"])) if query.bucket else None
            totals = rows.setdefault((bucket_start, group), Totals())
            totals.add([row[name] or 0 for name in COUNTERS], str(row["currency_code"]))
        return [
            UsageRow(bucket_start, group, totals)
            for (bucket_start, group), totals in sorted(
                rows.items(), key=lambda item: (item[0][0] or 0, item[0][1])
            )
        ]

    async def audit_entries(self, query: AuditQuery) -> list[tuple[int, str, str]]:
        """Up to ``query.limit`` entries as (time in µs, id, proto JSON), newest first."""
        where = ["time_micros >= :start", "time_micros < :end"]
        params: dict[str, object] = {
            "start": query.start_micros,
            "end": query.end_micros,
            "limit": query.limit,
        }
        if query.actor_id:
            where.append("actor_id = :actor_id")
            params["actor_id"] = query.actor_id
        if query.project_id:
            where.append("project_id = :project_id")
            params["project_id"] = query.project_id
        for column, value, separator in (
            ("action", query.action, "."),
            ("resource", query.resource, "/"),
        ):
            if value:
                prefix = value + separator
                where.append(
                    f"({column} = :{column} OR substr({column}, 1, :{column}_len) = :{column}_pre)"
                )
                params.update(
                    {column: value, f"{column}_len": len(prefix), f"{column}_pre": prefix}
                )
        if query.after is not None:
            where.append(
                "(time_micros < :after_time OR (time_micros = :after_time AND id < :after_id))"
            )
            params.update({"after_time": query.after[0], "after_id": query.after[1]})
        statement = text(
            "SELECT time_micros, id, body FROM audit_entries"
            f" WHERE {' AND '.join(where)} ORDER BY time_micros DESC, id DESC LIMIT :limit"
        )
        async with self._database.connection() as conn:
            result = await conn.execute(statement, params)
            return [(int(row[0]), str(row[1]), str(row[2])) for row in result]


async def _claim(conn: AsyncConnection, ids: Sequence[str], now: int) -> set[str]:
    """Record ``ids`` as processed at ``now``; return those that were not recorded yet."""
    claimed: set[str] = set()
    for chunk in _chunks(ids, _CHUNK):
        values = ", ".join(f"(:id{n}, :now)" for n in range(len(chunk)))
        params: dict[str, object] = {f"id{n}": event_id for n, event_id in enumerate(chunk)}
        params["now"] = now
        result = await conn.execute(
            text(
                f"INSERT INTO usage_processed_events (event_id, processed_at) VALUES {values}"
                " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            ),
            params,
        )
        claimed.update(str(row[0]) for row in result)
    return claimed


async def _processed_at(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(ids, _CHUNK):
        result = await conn.execute(
            text(
                "SELECT event_id, processed_at FROM usage_processed_events WHERE event_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": list(chunk)},
        )
        found.update((str(row[0]), int(row[1])) for row in result)
    return found


def _rollup_deltas(facts: Iterable[UsageFact]) -> dict[RollupKey, list[int]]:
    deltas: dict[RollupKey, list[int]] = {}
    for fact in facts:
        for granularity in Granularity:
            key: RollupKey = (
                int(granularity),
                granularity.floor(fact.at),
                fact.api_key_id,
                fact.project_id,
                fact.model,
                fact.provider,
                fact.tags,
                fact.currency_code,
            )
            sums = deltas.setdefault(key, [0] * len(COUNTERS))
            for index, value in enumerate(fact.counters):
                sums[index] += value
    return deltas


_KEY_COLUMNS = ("granularity", "bucket_start", *DIMENSIONS, "tags", "currency_code")
_UPSERT = text(
    f"INSERT INTO usage_rollups ({', '.join((*_KEY_COLUMNS, *COUNTERS))})"
    f" VALUES ({', '.join(f':{name}' for name in (*_KEY_COLUMNS, *COUNTERS))})"
    f" ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{name} = usage_rollups.{name} + excluded.{name}" for name in COUNTERS)
)


async def _add_rollups(conn: AsyncConnection, facts: Sequence[UsageFact]) -> None:
    deltas = _rollup_deltas(facts)
    if not deltas:
        return
    rows = [
        {**dict(zip(_KEY_COLUMNS, key, strict=True)), **dict(zip(COUNTERS, sums, strict=True))}
        for key, sums in sorted(deltas.items())
    ]
    await conn.execute(_UPSERT, rows)


async def _append_audit(conn: AsyncConnection, facts: Sequence[AuditFact]) -> None:
    if not facts:
        return
    await conn.execute(
        text(
            "INSERT INTO audit_entries"
            " (id, time_micros, actor_id, project_id, action, resource, body)"
            " VALUES (:id, :time_micros, :actor_id, :project_id, :action, :resource, :body)"
            " ON CONFLICT (id) DO NOTHING"
        ),
        [
            {
                "id": f.id,
                "time_micros": f.time_micros,
                "actor_id": f.actor_id,
                "project_id": f.project_id,
                "action": f.action,
                "resource": f.resource,
                "body": f.body,
            }
            for f in facts
        ],
    )


def _first_of_each(facts: Sequence[F], new: set[str], id_of: Callable[[F], str]) -> list[F]:
    seen: set[str] = set()
    chosen: list[F] = []
    for fact in facts:
        fact_id = id_of(fact)
        if fact_id in new and fact_id not in seen:
            seen.add(fact_id)
            chosen.append(fact)
    return chosen


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]
