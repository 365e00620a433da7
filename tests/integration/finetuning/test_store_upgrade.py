"""Jobs stored by schema version 1 keep their project and request id after the upgrade."""

from __future__ import annotations

from sqlalchemy import text

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.schema import COMPONENT, MIGRATIONS
from services.finetuning.store import FineTuningStore, to_json
from services.kernel.migrations import migrate
from services.kernel.sql import Database, DatabaseConfig


def job(job_id: str, project: str) -> ft.Job:
    return ft.Job(
        id=job_id,
        project_id=project,
        base_model="support-bot@production",
        state=ft.JOB_STATE_QUEUED,
        last_event_sequence=1,
    )


def first_event(job_id: str) -> ft.JobEvent:
    return ft.JobEvent(
        id=f"{job_id}.1", job_id=job_id, sequence=1, type=ft.JOB_EVENT_TYPE_STATE_CHANGED
    )


async def test_jobs_of_version_1_keep_project_and_request_id(database_url: str) -> None:
    database = await Database.connect(DatabaseConfig(database_url))
    try:
        await migrate(database, COMPONENT, MIGRATIONS[:1])
        old = job("ftjob_old", "alpha")
        async with database.transaction() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ft_jobs (id, request_id, state, base_model, created, body)"
                    " VALUES (:id, 'nightly', :state, :base, 1, :body)"
                ),
                {"id": old.id, "state": old.state, "base": old.base_model, "body": to_json(old)},
            )
        await migrate(database, COMPONENT, MIGRATIONS)
        store = FineTuningStore(database)

        assert await store.fill_job_projects() == 1
        assert await store.fill_job_projects() == 0
        assert [j.id for _, j in await store.jobs(None, 10, project_id="alpha")] == [old.id]
        assert await store.jobs(None, 10, project_id="beta") == []

        same = await store.insert_job(job("ftjob_new", "alpha"), "nightly", 2, first_event("x"))
        assert same.id == old.id
        other = job("ftjob_beta", "beta")
        stored = await store.insert_job(other, "nightly", 3, first_event(other.id))
        assert stored.id == other.id
        assert [j.id for _, j in await store.jobs(None, 10)] == [other.id, old.id]
    finally:
        await database.close()
