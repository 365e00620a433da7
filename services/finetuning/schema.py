"""The fine-tuning service's SQL schema, as the ``finetuning`` component's migrations.

Rows keep the resource as protobuf JSON in ``body`` next to the columns SQL
needs for lookups, ordering and integrity:

- ``ft_datasets``: uploaded datasets, with their project (``deleted`` marks a
  removed one, kept so a job naming it gets a clear error);
- ``ft_jobs``: jobs, with their project; ``request_key`` (the request id of
  CreateJob, unique per project) makes CreateJob idempotent. The column
  ``request_id`` of version 1 was unique over all projects; version 2 moved
  its values to ``request_key`` and it stays empty;
- ``ft_job_events``: every event of every job, numbered per job from 1; the
  ``WatchJob`` feed and the outbox the relay publishes from (``published``);
- ``ft_checkpoints``: checkpoints of jobs, by step.
"""

from __future__ import annotations

from services.kernel.migrations import Migration

COMPONENT = "finetuning"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create fine-tuning tables",
        (
            "CREATE TABLE ft_datasets ("
            " id TEXT PRIMARY KEY,"
            " project_id TEXT NOT NULL,"
            " created BIGINT NOT NULL,"
            " deleted INTEGER NOT NULL DEFAULT 0,"
            " body TEXT NOT NULL)",
            "CREATE INDEX ft_datasets_created ON ft_datasets (deleted, created)",
            "CREATE TABLE ft_jobs ("
            " id TEXT PRIMARY KEY,"
            " request_id TEXT UNIQUE,"
            " state INTEGER NOT NULL,"
            " base_model TEXT NOT NULL,"
            " created BIGINT NOT NULL,"
            " body TEXT NOT NULL)",
            "CREATE INDEX ft_jobs_created ON ft_jobs (created)",
            "CREATE INDEX ft_jobs_state ON ft_jobs (state)",
            "CREATE TABLE ft_job_events ("
            " job_id TEXT NOT NULL REFERENCES ft_jobs (id),"
            " sequence BIGINT NOT NULL,"
            " published INTEGER NOT NULL DEFAULT 0,"
            " body TEXT NOT NULL,"
            " job TEXT NOT NULL,"
            " PRIMARY KEY (job_id, sequence))",
            "CREATE INDEX ft_job_events_unpublished ON ft_job_events (published)",
            "CREATE TABLE ft_checkpoints ("
            " job_id TEXT NOT NULL REFERENCES ft_jobs (id),"
            " step BIGINT NOT NULL,"
            " body TEXT NOT NULL,"
            " PRIMARY KEY (job_id, step))",
        ),
    ),
    Migration(
        2,
        "scope jobs and their request ids by project",
        (
            "ALTER TABLE ft_jobs ADD COLUMN project_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE ft_jobs ADD COLUMN request_key TEXT",
            "UPDATE ft_jobs SET request_key = request_id, request_id = NULL"
            " WHERE request_id IS NOT NULL",
            "CREATE UNIQUE INDEX ft_jobs_project_request ON ft_jobs (project_id, request_key)",
            "CREATE INDEX ft_jobs_project_created ON ft_jobs (project_id, created)",
            "CREATE INDEX ft_datasets_project_created"
            " ON ft_datasets (project_id, deleted, created)",
        ),
    ),
)
