"""SQL access for datasets, jobs, job events and checkpoints.

Resources travel as their proto messages (stored as proto JSON); this module
knows tables and columns, not rules (those live in :mod:`.datasets` and
:mod:`.jobs`). Every write is one transaction. Job events are appended with
:meth:`FineTuningStore.append_event`, which stores the new job body together
with the event, so the job and its event log never disagree; it locks the
job's row (SQLite: the database, ``BEGIN IMMEDIATE``; PostgreSQL:
``SELECT ... FOR UPDATE``), so concurrent writers of one job take turns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.kernel.sql import Database, Dialect

M = TypeVar("M", bound=Message)

TERMINAL_STATES = frozenset({ft.JOB_STATE_SUCCEEDED, ft.JOB_STATE_FAILED, ft.JOB_STATE_CANCELLED})


def to_json(message: Message) -> str:
    """The stored form of a message: compact proto JSON with proto field names."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, indent=None, sort_keys=True
    )


def from_json(body: str, message_type: type[M]) -> M:
    """Parse a stored body back into ``message_type``."""
    message = message_type()
    json_format.Parse(body, message)
    return message


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the job event log: the event and the job as of it."""

    event: ft.JobEvent
    job: ft.Job


class StateConflict(Exception):
    """The job is no longer in a state that allows the change (e.g. it finished)."""

    def __init__(self, job: ft.Job) -> None:
        super().__init__(f"job {job.id} is {ft.JobState.Name(job.state)}")
        self.job = job


class FineTuningStore:
    """Queries and transactions over one database."""

    def __init__(self, database: Database) -> None:
        """Store in ``database`` (migrated to :mod:`.schema`)."""
        self._database = database

    # -- datasets -----------------------------------------------------------

    async def insert_dataset(self, dataset: ft.Dataset, created: int) -> None:
        """Store a new dataset; ``created`` orders listings (nanoseconds)."""
        async with self._database.transaction() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ft_datasets (id, project_id, created, body)"
                    " VALUES (:id, :project, :created, :body)"
                ),
                {
                    "id": dataset.id,
                    "project": dataset.project_id,
                    "created": created,
                    "body": to_json(dataset),
                },
            )

    async def dataset(self, dataset_id: str) -> tuple[ft.Dataset, bool] | None:
        """The dataset and whether it was deleted, if it ever existed."""
        async with self._database.connection() as conn:
            row = (
                await conn.execute(
                    text("SELECT body, deleted FROM ft_datasets WHERE id = :id"),
                    {"id": dataset_id},
                )
            ).first()
        if row is None:
            return None
        return from_json(row[0], ft.Dataset), bool(row[1])

    async def datasets(
        self, before: tuple[int, str] | None, limit: int, project_id: str = ""
    ) -> list[tuple[int, ft.Dataset]]:
        """Datasets not deleted, newest first, strictly after the cursor ``before``;
        only those of ``project_id`` when it is given."""
        where, params = _before_clause(before)
        if project_id:
            where += " AND project_id = :project"
            params["project"] = project_id
        async with self._database.connection() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT created, body FROM ft_datasets WHERE deleted = 0 {where}"
                    " ORDER BY created DESC, id DESC LIMIT :limit"
                ),
                {**params, "limit": limit},
            )
            return [(int(r[0]), from_json(r[1], ft.Dataset)) for r in rows]

    async def mark_dataset_deleted(self, dataset_id: str) -> bool:
        """Mark a dataset deleted unless a job that has not finished uses it.

        Returns False when such a job exists (nothing changed).
        """
        async with self._database.transaction() as conn:
            rows = await conn.execute(
                text("SELECT body FROM ft_jobs WHERE state IN :states").bindparams(
                    bindparam("states", expanding=True)
                ),
                {
                    "states": [
                        ft.JOB_STATE_VALIDATING_FILES,
                        ft.JOB_STATE_QUEUED,
                        ft.JOB_STATE_RUNNING,
                    ]
                },
            )
            for row in rows:
                job = from_json(row[0], ft.Job)
                if dataset_id in (job.training_dataset_id, job.validation_dataset_id):
                    return False
            await conn.execute(
                text("UPDATE ft_datasets SET deleted = 1 WHERE id = :id"), {"id": dataset_id}
            )
            return True

    # -- jobs ---------------------------------------------------------------

    async def insert_job(
        self, job: ft.Job, request_id: str, created: int, event: ft.JobEvent
    ) -> ft.Job:
        """Store a new job with its first event; returns the job of the same project
        stored under ``request_id`` instead when one exists already.

        Concurrent calls with one request id insert one job: the unique index on
        (project_id, request_key) lets one insert through and the others read
        that job back.
        """
        async with self._database.transaction() as conn:
            inserted = await conn.execute(
                text(
                    "INSERT INTO ft_jobs"
                    " (id, project_id, request_key, state, base_model, created, body)"
                    " VALUES (:id, :project, :request, :state, :base, :created, :body)"
                    " ON CONFLICT (project_id, request_key) DO NOTHING"
                ),
                {
                    "id": job.id,
                    "project": job.project_id,
                    "request": request_id or None,
                    "state": job.state,
                    "base": job.base_model,
                    "created": created,
                    "body": to_json(job),
                },
            )
            if inserted.rowcount == 0:
                found = await _job_by_request(conn, job.project_id, request_id)
                if found is None:
                    raise RuntimeError(f"job of request {request_id!r} not found after conflict")
                return found
            await _insert_event(conn, event, job)
        return job

    async def fill_job_projects(self) -> int:
        """Copy the project of jobs stored before jobs had a project column from their
        body into it; returns how many jobs changed."""
        async with self._database.transaction() as conn:
            rows = (
                await conn.execute(text("SELECT body FROM ft_jobs WHERE project_id = ''"))
            ).all()
            changed = 0
            for row in rows:
                job = from_json(row[0], ft.Job)
                if job.project_id:
                    await conn.execute(
                        text("UPDATE ft_jobs SET project_id = :project WHERE id = :id"),
                        {"project": job.project_id, "id": job.id},
                    )
                    changed += 1
            return changed

    async def job(self, job_id: str) -> ft.Job | None:
        """The job, if any."""
        async with self._database.connection() as conn:
            row = (
                await conn.execute(text("SELECT body FROM ft_jobs WHERE id = :id"), {"id": job_id})
            ).first()
        return None if row is None else from_json(row[0], ft.Job)

    async def jobs(
        self,
        before: tuple[int, str] | None,
        limit: int,
        states: Sequence[int] = (),
        base_model: str = "",
        project_id: str = "",
    ) -> list[tuple[int, ft.Job]]:
        """Jobs newest first after the cursor, optionally filtered."""
        where, params = _before_clause(before)
        statement = f"SELECT created, body FROM ft_jobs WHERE 1 = 1 {where}"
        if project_id:
            statement += " AND project_id = :project"
            params["project"] = project_id
        if states:
            statement += " AND state IN :states"
            params["states"] = list(states)
        if base_model:
            statement += " AND base_model = :base"
            params["base"] = base_model
        query = text(statement + " ORDER BY created DESC, id DESC LIMIT :limit")
        if states:
            query = query.bindparams(bindparam("states", expanding=True))
        async with self._database.connection() as conn:
            rows = await conn.execute(query, {**params, "limit": limit})
            return [(int(r[0]), from_json(r[1], ft.Job)) for r in rows]

    async def unfinished_jobs(self) -> list[ft.Job]:
        """Jobs not in a terminal state, oldest first (to resume after a restart)."""
        async with self._database.connection() as conn:
            rows = await conn.execute(
                text("SELECT body FROM ft_jobs WHERE state IN :states ORDER BY created").bindparams(
                    bindparam("states", expanding=True)
                ),
                {
                    "states": [
                        ft.JOB_STATE_VALIDATING_FILES,
                        ft.JOB_STATE_QUEUED,
                        ft.JOB_STATE_RUNNING,
                    ]
                },
            )
            return [from_json(r[0], ft.Job) for r in rows]

    async def append_event(
        self,
        job_id: str,
        event: ft.JobEvent,
        update: Callable[[ft.Job], None],
        *,
        allow_terminal: bool = False,
    ) -> StoredEvent:
        """Apply ``update(job)`` and append ``event`` (its sequence and job id are set here).

        Raises :class:`StateConflict` when the job is terminal already (unless
        ``allow_terminal``) or when ``update`` raises it.
        """
        lock = " FOR UPDATE" if self._database.dialect is Dialect.POSTGRESQL else ""
        async with self._database.transaction() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT body FROM ft_jobs WHERE id = :id{lock}"), {"id": job_id}
                )
            ).first()
            if row is None:
                raise KeyError(job_id)
            job = from_json(row[0], ft.Job)
            if job.state in TERMINAL_STATES and not allow_terminal:
                raise StateConflict(job)
            update(job)
            job.last_event_sequence += 1
            event.job_id = job.id
            event.sequence = job.last_event_sequence
            event.id = f"{job.id}.{event.sequence}"
            await conn.execute(
                text("UPDATE ft_jobs SET state = :state, body = :body WHERE id = :id"),
                {"state": job.state, "body": to_json(job), "id": job.id},
            )
            await _insert_event(conn, event, job)
        return StoredEvent(event, job)

    # -- events -------------------------------------------------------------

    async def events(self, job_id: str, after: int, limit: int) -> list[StoredEvent]:
        """Events of a job with a larger sequence than ``after``, oldest first."""
        async with self._database.connection() as conn:
            rows = await conn.execute(
                text(
                    "SELECT body, job FROM ft_job_events WHERE job_id = :job AND sequence > :after"
                    " ORDER BY sequence LIMIT :limit"
                ),
                {"job": job_id, "after": after, "limit": limit},
            )
            return [
                StoredEvent(from_json(r[0], ft.JobEvent), from_json(r[1], ft.Job)) for r in rows
            ]

    async def unpublished(self, limit: int) -> list[StoredEvent]:
        """Events not yet marked published, in the order they were appended per job."""
        async with self._database.connection() as conn:
            rows = await conn.execute(
                text(
                    "SELECT body, job FROM ft_job_events WHERE published = 0"
                    " ORDER BY job_id, sequence LIMIT :limit"
                ),
                {"limit": limit},
            )
            return [
                StoredEvent(from_json(r[0], ft.JobEvent), from_json(r[1], ft.Job)) for r in rows
            ]

    async def mark_published(self, events: Sequence[ft.JobEvent]) -> None:
        """Mark ``events`` published."""
        if not events:
            return
        async with self._database.transaction() as conn:
            for event in events:
                await conn.execute(
                    text(
                        "UPDATE ft_job_events SET published = 1"
                        " WHERE job_id = :job AND sequence = :sequence"
                    ),
                    {"job": event.job_id, "sequence": event.sequence},
                )

    # -- checkpoints --------------------------------------------------------

    async def add_checkpoint(self, checkpoint: ft.Checkpoint) -> bool:
        """Store a checkpoint; False (nothing stored) when its step exists already."""
        async with self._database.transaction() as conn:
            exists = (
                await conn.execute(
                    text("SELECT 1 FROM ft_checkpoints WHERE job_id = :job AND step = :step"),
                    {"job": checkpoint.job_id, "step": checkpoint.step},
                )
            ).first()
            if exists is not None:
                return False
            await conn.execute(
                text("INSERT INTO ft_checkpoints (job_id, step, body) VALUES (:job, :step, :body)"),
                {"job": checkpoint.job_id, "step": checkpoint.step, "body": to_json(checkpoint)},
            )
            return True

    async def checkpoints(self, job_id: str, after_step: int, limit: int) -> list[ft.Checkpoint]:
        """Checkpoints of a job after ``after_step``, oldest first."""
        async with self._database.connection() as conn:
            rows = await conn.execute(
                text(
                    "SELECT body FROM ft_checkpoints WHERE job_id = :job AND step > :after"
                    " ORDER BY step LIMIT :limit"
                ),
                {"job": job_id, "after": after_step, "limit": limit},
            )
            return [from_json(r[0], ft.Checkpoint) for r in rows]


def _before_clause(before: tuple[int, str] | None) -> tuple[str, dict[str, Any]]:
    if before is None:
        return "", {}
    return (
        "AND (created < :bc OR (created = :bc AND id < :bid))",
        {"bc": before[0], "bid": before[1]},
    )


async def _job_by_request(conn: AsyncConnection, project_id: str, request_id: str) -> ft.Job | None:
    row = (
        await conn.execute(
            text("SELECT body FROM ft_jobs WHERE project_id = :project AND request_key = :request"),
            {"project": project_id, "request": request_id},
        )
    ).first()
    return None if row is None else from_json(row[0], ft.Job)


async def _insert_event(conn: AsyncConnection, event: ft.JobEvent, job: ft.Job) -> None:
    await conn.execute(
        text(
            "INSERT INTO ft_job_events (job_id, sequence, body, job)"
            " VALUES (:job_id, :sequence, :body, :job)"
        ),
        {
            "job_id": job.id,
            "sequence": event.sequence,
            "body": to_json(event),
            "job": to_json(job),
        },
    )
