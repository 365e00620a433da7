"""The usage pipeline's SQL schema, as the ``usage`` component's migrations.

- ``usage_processed_events``: the id of every event the pipeline applied and
  when (epoch seconds); written in the same transaction as the rollups, so an
  event is counted at most once whatever Kafka redelivers;
- ``usage_rollups``: sums per time bucket (``granularity`` 60, 3600 or 86400
  seconds, ``bucket_start`` in epoch seconds), API key, project, model,
  provider, tag set (canonical JSON) and currency;
- ``audit_entries``: the audit log, append-only, one row per entry with its
  proto JSON in ``body`` and the columns its queries filter on.
"""

from __future__ import annotations

from services.kernel.migrations import Migration
from services.usage.facts import COUNTERS

COMPONENT = "usage"

_COUNTER_COLUMNS = "".join(f" {name} BIGINT NOT NULL DEFAULT 0," for name in COUNTERS)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create usage rollups and audit log",
        (
            "CREATE TABLE usage_processed_events ("
            " event_id TEXT PRIMARY KEY,"
            " processed_at BIGINT NOT NULL)",
            "CREATE TABLE usage_rollups ("
            " granularity INTEGER NOT NULL,"
            " bucket_start BIGINT NOT NULL,"
            " api_key_id TEXT NOT NULL,"
            " project_id TEXT NOT NULL,"
            " model TEXT NOT NULL,"
            " provider TEXT NOT NULL,"
            " tags TEXT NOT NULL,"
            " currency_code TEXT NOT NULL,"
            f"{_COUNTER_COLUMNS}"
            " PRIMARY KEY (granularity, bucket_start, api_key_id, project_id, model, provider,"
            " tags, currency_code))",
            "CREATE TABLE audit_entries ("
            " id TEXT PRIMARY KEY,"
            " time_micros BIGINT NOT NULL,"
            " actor_id TEXT NOT NULL,"
            " project_id TEXT NOT NULL,"
            " action TEXT NOT NULL,"
            " resource TEXT NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE INDEX audit_entries_by_time ON audit_entries (time_micros, id)",
            "CREATE INDEX audit_entries_by_actor ON audit_entries (actor_id, time_micros)",
        ),
    ),
)
