"""The registry's SQL schema, as the ``registry`` component's migrations.

Every resource table keeps the resource as protobuf JSON in ``body`` (the
contract is the proto message) next to the key and filter columns that SQL
needs for lookups, ordering and integrity:

- ``registry_state``: one row holding the registry revision; every write
  transaction locks it first, so writers are serialised and revisions are
  committed in order (a reader of ``registry_changes`` never sees a gap fill
  in later);
- ``registry_models``, ``registry_versions``, ``registry_aliases``,
  ``registry_groups``: the current resources;
- ``registry_alias_history``: every change of every alias, kept after the
  alias is deleted;
- ``registry_changes``: one row per revision with the ``RegistryChange`` and
  its ``AuditEntry``; the change feed of ``WatchRegistry`` and the outbox the
  event relay publishes from (``published`` marks what reached the bus).
"""

from __future__ import annotations

from services.kernel.migrations import Migration

COMPONENT = "registry"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create registry tables",
        (
            "CREATE TABLE registry_state (id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)",
            "INSERT INTO registry_state (id, revision) VALUES (1, 0)",
            "CREATE TABLE registry_models ("
            " name TEXT PRIMARY KEY,"
            " project_id TEXT NOT NULL,"
            " body TEXT NOT NULL,"
            " revision BIGINT NOT NULL)",
            "CREATE TABLE registry_versions ("
            " model TEXT NOT NULL REFERENCES registry_models (name),"
            " version TEXT NOT NULL,"
            " ordinal BIGINT NOT NULL,"
            " status INTEGER NOT NULL,"
            " body TEXT NOT NULL,"
            " revision BIGINT NOT NULL,"
            " PRIMARY KEY (model, version))",
            "CREATE TABLE registry_aliases ("
            " model TEXT NOT NULL,"
            " alias TEXT NOT NULL,"
            " version TEXT NOT NULL,"
            " split_version TEXT,"
            " body TEXT NOT NULL,"
            " revision BIGINT NOT NULL,"
            " PRIMARY KEY (model, alias),"
            " FOREIGN KEY (model, version) REFERENCES registry_versions (model, version),"
            " FOREIGN KEY (model, split_version) REFERENCES registry_versions (model, version))",
            "CREATE TABLE registry_alias_history ("
            " model TEXT NOT NULL,"
            " alias TEXT NOT NULL,"
            " sequence BIGINT NOT NULL,"
            " body TEXT NOT NULL,"
            " PRIMARY KEY (model, alias, sequence))",
            "CREATE TABLE registry_groups ("
            " name TEXT PRIMARY KEY,"
            " body TEXT NOT NULL,"
            " revision BIGINT NOT NULL)",
            "CREATE TABLE registry_changes ("
            " revision BIGINT PRIMARY KEY,"
            " resource TEXT NOT NULL,"
            " change TEXT NOT NULL,"
            " audit TEXT NOT NULL,"
            " published INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX registry_changes_unpublished ON registry_changes (published, revision)",
        ),
    ),
)
