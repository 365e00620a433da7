"""The admin API's SQL schema, as the ``admin`` component's migrations.

Resources are stored as protobuf JSON in ``body`` beside the columns SQL needs
for lookups and ordering. ``admin_state`` holds one revision number that every
write transaction increments; gateway replicas poll it to know when to reload
(see :mod:`gateway.auth.cache`). API keys keep only the SHA-256 of their secret,
and ``last_used_nanos`` beside the body: it changes often and is not a change
the replicas need, so writing it moves no revision.
"""

from __future__ import annotations

from services.kernel.migrations import Migration

COMPONENT = "admin"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create admin tables",
        (
            "CREATE TABLE admin_state (id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)",
            "INSERT INTO admin_state (id, revision) VALUES (1, 0)",
            "CREATE TABLE admin_projects (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
            "CREATE TABLE admin_api_keys ("
            " id TEXT PRIMARY KEY,"
            " lookup TEXT NOT NULL UNIQUE,"
            " project_id TEXT NOT NULL,"
            " secret_hash TEXT NOT NULL,"
            " revoked INTEGER NOT NULL DEFAULT 0,"
            " created_nanos BIGINT NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE INDEX admin_api_keys_project ON admin_api_keys (project_id, created_nanos)",
            "CREATE TABLE admin_budgets ("
            " id TEXT PRIMARY KEY,"
            " subject_kind TEXT NOT NULL,"
            " subject_id TEXT NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE TABLE admin_rate_limits ("
            " id TEXT PRIMARY KEY,"
            " subject_kind TEXT NOT NULL,"
            " subject_id TEXT NOT NULL,"
            " body TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "remember when each api key was last used",
        ("ALTER TABLE admin_api_keys ADD COLUMN last_used_nanos BIGINT",),
    ),
)
