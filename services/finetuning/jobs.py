"""Jobs: creation, the state machine, cancellation and the job runner.

States: VALIDATING_FILES -> QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
(CANCELLED and FAILED are also reachable from the earlier states). Every
transition, metric, checkpoint and message is a :class:`JobEvent` appended in
the same transaction as the job's new state (:mod:`.store`), so the event log
is the job's history, the ``WatchJob`` feed and the outbox of the relay.

The runner runs each unfinished job as a task; at most ``max_concurrent_jobs``
train at once (others wait in QUEUED). At start it resumes every job that was
not finished: jobs that had reached the backend are followed again from the
last step recorded, the others start over. Cancelling a job stops its task
and cancels it at the backend.

A request without ``backend`` uses the backend named like the base version's
provider (FAILED_PRECONDITION when there is none). On success the result
version id is the job id, in ``result_model`` (the
base model's when not given); the registry creates that version when it
consumes the SUCCEEDED event, so repeated delivery creates one version.

A job belongs to the project that created it, and its request id is unique
within that project. The API methods take a ``scope`` like
:class:`~.datasets.Datasets`: a project whose jobs and datasets alone exist
for the call (others answer NOT_FOUND), or ``""`` for every project.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from google.rpc import code_pb2, status_pb2
from prometheus_client import CollectorRegistry

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning import paging
from services.finetuning.backends.base import (
    Backend,
    BackendError,
    CancelledAtBackend,
    CheckpointSaved,
    Failed,
    Metrics,
    Note,
    Started,
    Succeeded,
    TrainingSpec,
)
from services.finetuning.datasets import Datasets, cost_of, new_id
from services.finetuning.metrics import JobMetrics
from services.finetuning.registry_client import RegistryClient
from services.finetuning.store import TERMINAL_STATES, FineTuningStore, StateConflict, StoredEvent
from services.kernel.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.kernel.plugins import PluginError

_log = logging.getLogger(__name__)

T = TypeVar("T")
JOBS_PAGE = "jobs"
MAX_SUFFIX = 40


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """Runner limits."""

    max_concurrent_jobs: int = 2


class Jobs:
    """Job operations and the runner; call :meth:`start` once and :meth:`stop` at the end."""

    def __init__(
        self,
        store: FineTuningStore,
        datasets: Datasets,
        registry: RegistryClient,
        backends: Callable[[str], Backend],
        config: JobsConfig,
        *,
        on_event: Callable[[], None] = lambda: None,
        metrics: JobMetrics | None = None,
    ) -> None:
        """Run jobs on the backends ``backends(name)`` returns (PluginError when unknown);
        ``on_event`` runs after every committed event."""
        self._store = store
        self._datasets = datasets
        self._registry = registry
        self._backends = backends
        self._config = config
        self._on_event = on_event
        self._metrics = metrics or JobMetrics(CollectorRegistry())
        self._slots = asyncio.Semaphore(config.max_concurrent_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- API ----------------------------------------------------------------

    async def create(
        self, request: ft.CreateJobRequest, project_id: str, scope: str = ""
    ) -> ft.Job:
        """Check the request, resolve the base model, store the job of ``project_id``
        and schedule it; its datasets must be in ``scope``."""
        problems: list[FieldViolation] = []
        if not request.base_model:
            problems.append(FieldViolation("base_model", "is required"))
        if len(request.suffix) > MAX_SUFFIX:
            problems.append(FieldViolation("suffix", f"must be at most {MAX_SUFFIX} characters"))
        problems.extend(_check_hyperparameters(request.hyperparameters))
        if not request.training_dataset_id:
            problems.append(FieldViolation("training_dataset_id", "is required"))
        if request.backend and not self._has_backend(request.backend):
            problems.append(
                FieldViolation(
                    "backend", f"no fine-tuning backend {request.backend!r}", "UNKNOWN_BACKEND"
                )
            )
        if problems:
            raise InvalidArgument("the job request is invalid", problems)
        base = await self._registry.resolve(request.base_model, "base_model")
        backend_name = request.backend or base.version.provider
        if not self._has_backend(backend_name):
            raise FailedPrecondition(
                f"no fine-tuning backend serves provider {backend_name!r} of"
                f" {request.base_model!r}; name one in backend",
                reason="NO_BACKEND_FOR_PROVIDER",
            )
        result_model = request.result_model or base.model
        if request.result_model:
            await self._registry.require_model(request.result_model, "result_model")
        training = await self._datasets.usable(
            request.training_dataset_id, "training_dataset_id", scope
        )
        if request.validation_dataset_id:
            await self._datasets.usable(
                request.validation_dataset_id, "validation_dataset_id", scope
            )
        if (
            base.version.context_window
            and training.max_example_tokens > base.version.context_window
        ):
            raise FailedPrecondition(
                f"an example of {training.id!r} has {training.max_example_tokens} tokens,"
                f" more than the context window of {request.base_model!r}",
                reason="EXAMPLE_TOO_LONG",
            )
        created = time.time_ns()
        job = ft.Job(
            id=new_id("ftjob"),
            project_id=project_id,
            base_model=request.base_model,
            base_model_name=base.model,
            base_model_version=base.version.version,
            training_dataset_id=request.training_dataset_id,
            validation_dataset_id=request.validation_dataset_id,
            hyperparameters=request.hyperparameters,
            suffix=request.suffix,
            result_model=result_model,
            alias_on_success=request.alias_on_success,
            backend=backend_name,
            state=ft.JOB_STATE_VALIDATING_FILES,
            labels=dict(request.labels),
            last_event_sequence=1,
        )
        if request.HasField("seed"):
            job.seed = request.seed
        job.create_time.FromNanoseconds(created)
        first = _state_event(ft.JOB_STATE_VALIDATING_FILES, "job created; validating files")
        first.sequence = 1
        first.id = f"{job.id}.1"
        first.job_id = job.id
        first.create_time.FromNanoseconds(created)
        stored = await self._store.insert_job(job, request.request_id, created, first)
        if stored.id == job.id:
            self._on_event()
            self._schedule(job)
        return stored

    def _has_backend(self, name: str) -> bool:
        try:
            self._backends(name)
        except PluginError:
            return False
        return True

    async def get(self, job_id: str, scope: str = "") -> ft.Job:
        """The job, in ``scope``; NOT_FOUND otherwise."""
        job = await self._store.job(job_id)
        if job is None or (scope and job.project_id != scope):
            raise NotFound("job", job_id, reason="JOB_NOT_FOUND")
        return job

    async def list(self, request: ft.ListJobsRequest, scope: str = "") -> tuple[list[ft.Job], str]:
        """A page of jobs in ``scope``, newest first, and the next page's token."""
        limit = paging.page_size_of(request.page_size)
        before = paging.decode_created(request.page_token, JOBS_PAGE)
        rows = await self._store.jobs(
            before, limit, list(request.states), request.base_model, scope
        )
        token = paging.encode(JOBS_PAGE, rows[-1][0], rows[-1][1].id) if len(rows) == limit else ""
        return [job for _, job in rows], token

    async def cancel(self, job_id: str, scope: str = "") -> ft.Job:
        """Cancel an unfinished job in ``scope``; FAILED_PRECONDITION when it has finished."""
        job = await self.get(job_id, scope)
        if job.state in TERMINAL_STATES:
            raise _finished(job)
        task = self._tasks.pop(job_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            stored = await self._transition(job_id, ft.JOB_STATE_CANCELLED, "cancelled by request")
        except StateConflict as conflict:
            raise _finished(conflict.job) from None
        if stored.job.backend_job_id:
            await self._backends(stored.job.backend).cancel(stored.job.backend_job_id)
        return stored.job

    # -- runner -------------------------------------------------------------

    async def start(self) -> None:
        """Resume every unfinished job."""
        for job in await self._store.unfinished_jobs():
            _log.info("resuming job", extra={"job_id": job.id})
            self._schedule(job)

    async def stop(self) -> None:
        """Stop every job task (the jobs stay unfinished and resume at the next start)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _schedule(self, job: ft.Job) -> None:
        task = asyncio.create_task(self._run(job.id), name=f"ft-job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda done: self._forget(job.id, done))

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]

    async def _run(self, job_id: str) -> None:
        try:
            await self._drive(job_id)
        except StateConflict:
            return
        except asyncio.CancelledError:
            raise
        except BackendError as exc:
            with contextlib.suppress(StateConflict):
                await self._fail(job_id, exc.code, exc.message)
        except Exception as exc:
            _log.exception("job failed", extra={"job_id": job_id})
            with contextlib.suppress(StateConflict):
                await self._fail(job_id, "INTERNAL", f"the job runner failed: {type(exc).__name__}")

    async def _drive(self, job_id: str) -> None:
        job = await self.get(job_id)
        if job.state == ft.JOB_STATE_VALIDATING_FILES:
            problem = await self._recheck_files(job)
            if problem is not None:
                await self._fail(job_id, "DATASET_UNUSABLE", problem)
                return
            job = (
                await self._transition(job_id, ft.JOB_STATE_QUEUED, "files validated; queued")
            ).job
        async with self._slots:
            job = await self.get(job_id)
            running = self._metrics.running.labels(job.backend)
            running.inc()
            try:
                await self._train(job)
            finally:
                running.dec()

    async def _train(self, job: ft.Job) -> None:
        job_id = job.id
        backend = self._backends(job.backend)
        spec = await self._spec(job)
        after_step = 0
        if not job.backend_job_id:
            backend_job_id = await backend.start(spec)

            def started(current: ft.Job) -> None:
                current.backend_job_id = backend_job_id

            await self._append(
                job_id,
                ft.JobEvent(
                    type=ft.JOB_EVENT_TYPE_MESSAGE,
                    level=ft.JOB_EVENT_LEVEL_INFO,
                    message=f"submitted to {job.backend} as {backend_job_id}",
                ),
                started,
            )
            job = await self.get(job_id)
        else:
            after_step = await self._last_step(job_id)
        if job.state != ft.JOB_STATE_RUNNING:
            job = (await self._transition(job_id, ft.JOB_STATE_RUNNING, "training started")).job
        async for update in backend.follow(job.backend_job_id, spec, after_step):
            if await self._apply(job_id, update, backend.price_per_million_tokens_nanos):
                return

    async def _apply(self, job_id: str, update: object, price: int) -> bool:
        """Record one backend update; True when it ended the job."""
        if isinstance(update, Started):
            resolved = update.resolved

            def set_resolved(job: ft.Job) -> None:
                job.resolved_hyperparameters.CopyFrom(resolved)

            await self._append(job_id, _message("hyperparameters resolved"), set_resolved)
        elif isinstance(update, Metrics):
            tokens = update.trained_tokens

            def count(job: ft.Job) -> None:
                job.trained_tokens = max(job.trained_tokens, tokens)
                job.cost.CopyFrom(cost_of(job.trained_tokens, price))

            event = ft.JobEvent(
                type=ft.JOB_EVENT_TYPE_METRICS,
                level=ft.JOB_EVENT_LEVEL_INFO,
                message=f"step {update.metrics.step}: loss {update.metrics.train_loss:.4f}",
                metrics=update.metrics,
            )
            await self._append(job_id, event, count)
        elif isinstance(update, CheckpointSaved):
            checkpoint = ft.Checkpoint(
                id=f"{job_id}.ckpt-{update.metrics.step}",
                job_id=job_id,
                step=update.metrics.step,
                metrics=update.metrics,
                provider_model_id=update.provider_model_id,
            )
            checkpoint.create_time.GetCurrentTime()
            if await _whole(self._store.add_checkpoint(checkpoint)):
                event = ft.JobEvent(
                    type=ft.JOB_EVENT_TYPE_CHECKPOINT_CREATED,
                    level=ft.JOB_EVENT_LEVEL_INFO,
                    message=f"checkpoint at step {checkpoint.step}",
                    checkpoint_id=checkpoint.id,
                )
                await self._append(job_id, event, lambda job: None)
        elif isinstance(update, Note):
            await self._append(
                job_id,
                ft.JobEvent(
                    type=ft.JOB_EVENT_TYPE_MESSAGE, level=update.level, message=update.message
                ),
                lambda job: None,
            )
        elif isinstance(update, Succeeded):
            result = update

            def succeed(job: ft.Job) -> None:
                job.result_provider_model_id = result.provider_model_id
                job.result_model_version = job.id
                job.trained_tokens = max(job.trained_tokens, result.trained_tokens)
                job.cost.CopyFrom(cost_of(job.trained_tokens, price))

            await self._transition(job_id, ft.JOB_STATE_SUCCEEDED, "training succeeded", succeed)
            return True
        elif isinstance(update, Failed):
            await self._fail(job_id, update.code, update.message)
            return True
        elif isinstance(update, CancelledAtBackend):
            await self._transition(job_id, ft.JOB_STATE_CANCELLED, "cancelled at the backend")
            return True
        return False

    async def _recheck_files(self, job: ft.Job) -> str | None:
        for field, dataset_id in (
            ("training_dataset_id", job.training_dataset_id),
            ("validation_dataset_id", job.validation_dataset_id),
        ):
            if not dataset_id:
                continue
            try:
                await self._datasets.usable(dataset_id, field)
            except (NotFound, FailedPrecondition) as exc:
                return exc.message
        return None

    async def _spec(self, job: ft.Job) -> TrainingSpec:
        training = await self._datasets.usable(job.training_dataset_id, "training_dataset_id")
        validation = None
        if job.validation_dataset_id:
            validation = await self._datasets.content(job.validation_dataset_id)
        base = await self._registry.resolve(
            f"{job.base_model_name}/versions/{job.base_model_version}", "base_model"
        )
        return TrainingSpec(
            job_id=job.id,
            base_provider_model_id=base.version.provider_model_id,
            training_file=await self._datasets.content(job.training_dataset_id),
            training_tokens=training.token_count,
            training_examples=training.line_count,
            hyperparameters=job.hyperparameters,
            suffix=job.suffix,
            seed=job.seed if job.HasField("seed") else None,
            validation_file=validation,
            training_file_name=training.display_name or "training.jsonl",
        )

    async def _last_step(self, job_id: str) -> int:
        last = 0
        after = 0
        while True:
            batch = await self._store.events(job_id, after, 500)
            for stored in batch:
                if stored.event.type == ft.JOB_EVENT_TYPE_METRICS:
                    last = stored.event.metrics.step
            if len(batch) < 500:
                return last
            after = batch[-1].event.sequence

    async def _fail(self, job_id: str, code: str, message: str) -> None:
        def failed(job: ft.Job) -> None:
            job.error.CopyFrom(
                status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=f"{code}: {message}")
            )

        await self._transition(
            job_id, ft.JOB_STATE_FAILED, message, failed, level=ft.JOB_EVENT_LEVEL_ERROR
        )

    async def _transition(
        self,
        job_id: str,
        state: ft.JobState.ValueType,
        message: str,
        update: Callable[[ft.Job], None] = lambda job: None,
        level: ft.JobEventLevel.ValueType = ft.JOB_EVENT_LEVEL_INFO,
    ) -> StoredEvent:
        def change(job: ft.Job) -> None:
            job.state = state
            if state == ft.JOB_STATE_RUNNING and not job.HasField("start_time"):
                job.start_time.GetCurrentTime()
            if state in TERMINAL_STATES:
                job.end_time.GetCurrentTime()
            update(job)

        event = _state_event(state, message)
        event.level = level
        stored = await self._append(job_id, event, change)
        if state in TERMINAL_STATES:
            self._metrics.job_finished(stored.job)
        return stored

    async def _append(
        self, job_id: str, event: ft.JobEvent, update: Callable[[ft.Job], None]
    ) -> StoredEvent:
        event.create_time.GetCurrentTime()
        stored = await _whole(self._store.append_event(job_id, event, update))
        self._on_event()
        return stored


async def _whole(write: Coroutine[Any, Any, T]) -> T:
    """Run a database write to its end even when the job task is cancelled meanwhile,
    so a transaction is never cut off halfway and its connection returns to the pool."""
    task = asyncio.ensure_future(write)
    task.add_done_callback(_consume)
    return await asyncio.shield(task)


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.debug("write of a cancelled job ended with %r", task.exception())


def _state_event(state: ft.JobState.ValueType, message: str) -> ft.JobEvent:
    return ft.JobEvent(
        type=ft.JOB_EVENT_TYPE_STATE_CHANGED,
        level=ft.JOB_EVENT_LEVEL_INFO,
        state=state,
        message=message,
    )


def _message(text: str) -> ft.JobEvent:
    return ft.JobEvent(type=ft.JOB_EVENT_TYPE_MESSAGE, level=ft.JOB_EVENT_LEVEL_INFO, message=text)


def _finished(job: ft.Job) -> FailedPrecondition:
    return FailedPrecondition(
        f"job {job.id!r} has finished ({ft.JobState.Name(job.state)}) and cannot be cancelled",
        reason="JOB_FINISHED",
    )


def _check_hyperparameters(hyperparameters: ft.Hyperparameters) -> list[FieldViolation]:
    problems = []
    for name in ("n_epochs", "batch_size"):
        setting = getattr(hyperparameters, name)
        if setting.WhichOneof("setting") == "value" and not 1 <= setting.value <= 1024:
            problems.append(FieldViolation(f"hyperparameters.{name}.value", "must be 1 to 1024"))
    rate = hyperparameters.learning_rate_multiplier
    if rate.WhichOneof("setting") == "value" and not 0 < rate.value <= 100:
        problems.append(
            FieldViolation(
                "hyperparameters.learning_rate_multiplier.value", "must be above 0 and at most 100"
            )
        )
    return problems
