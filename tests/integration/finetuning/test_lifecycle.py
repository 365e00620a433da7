"""Job lifecycle beyond the happy path: cancel, failure, restart, watch resume, paging, limits."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from grpc import aio

from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.finetuning.v1 import finetuning_pb2_grpc
from services.finetuning.settings import SimulatedBackendSettings
from services.kernel.events import EventTypeRegistry, InProcessEventBus
from tests.integration.finetuning.conftest import (
    ACTOR,
    BASE_MODEL,
    Recorder,
    chat_dataset,
    eventually,
    section,
    serving_finetuning,
    serving_pair,
    serving_registry,
    upload,
    watch_to_end,
)

SLOW = SimulatedBackendSettings(step_seconds=0.2, steps_per_epoch=100)
"""A run that lasts minutes: tests stop or cancel it, never wait for its end."""


def request(dataset_id: str, **fields: object) -> ft.CreateJobRequest:
    message = ft.CreateJobRequest(
        base_model=f"{BASE_MODEL}@production", training_dataset_id=dataset_id
    )
    for name, value in fields.items():
        if isinstance(value, Message):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


async def events_until(
    stub: finetuning_pb2_grpc.FineTuningServiceAsyncStub, job_id: str, step: int
) -> list[ft.WatchJobResponse]:
    """Watch messages until one with metrics at ``step``."""
    seen: list[ft.WatchJobResponse] = []
    call = stub.WatchJob(ft.WatchJobRequest(job_id=job_id), timeout=60)
    async for message in call:
        seen.append(message)
        if message.event.metrics.step >= step:
            call.cancel()
            break
    return seen


async def test_cancelling_a_running_job_ends_it_and_its_watch(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        dataset = await upload(pair.finetuning, chat_dataset())
        job = (await pair.finetuning.CreateJob(request(dataset.id), metadata=ACTOR)).job
        await events_until(pair.finetuning, job.id, 2)

        cancelled = await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=job.id))

        assert cancelled.job.state == ft.JOB_STATE_CANCELLED
        assert cancelled.job.HasField("end_time")
        messages = await watch_to_end(pair.finetuning, job.id)
        assert messages[-1].event.state == ft.JOB_STATE_CANCELLED
        with pytest.raises(aio.AioRpcError) as caught:
            await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=job.id))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_backend_failure_fails_the_job_with_an_error(
    database_url: str, tmp_path: Path
) -> None:
    failing = SimulatedBackendSettings(step_seconds=0.0, steps_per_epoch=3, fail_at_step=4)
    async with serving_pair(database_url, tmp_path / "blobs", failing) as pair:
        dataset = await upload(pair.finetuning, chat_dataset())
        job = (await pair.finetuning.CreateJob(request(dataset.id), metadata=ACTOR)).job

        messages = await watch_to_end(pair.finetuning, job.id)

        final = messages[-1]
        assert final.event.state == ft.JOB_STATE_FAILED
        assert final.event.level == ft.JOB_EVENT_LEVEL_ERROR
        assert "SIMULATED_FAILURE" in final.job.error.message
        assert final.job.trained_tokens > 0

        async def published() -> bool:
            return bool(pair.events.of_topic("llmgw.usage.v1"))

        await eventually(published)
        usage = pair.events.of_topic("llmgw.usage.v1")
        assert len(usage) == 1 and isinstance(usage[0], events_pb2.UsageRecorded)
        assert usage[0].error.message == final.job.error.message


async def test_a_running_job_resumes_after_a_restart_without_repeating_steps(
    database_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        bus = InProcessEventBus(EventTypeRegistry.from_module(events_pb2), "//tests")
        stack.push_async_callback(bus.close)
        recorder = Recorder(bus)
        _, address = await stack.enter_async_context(serving_registry(database_url, bus, stack))
        blobs = tmp_path / "blobs"
        async with serving_finetuning(
            database_url, section(blobs, address, SLOW), recorder
        ) as first:
            dataset = await upload(first, chat_dataset())
            one_epoch = ft.Hyperparameters(n_epochs=ft.IntegerHyperparameter(value=1))
            job = (
                await first.CreateJob(
                    request(dataset.id, hyperparameters=one_epoch), metadata=ACTOR
                )
            ).job
            await events_until(first, job.id, 3)
        fast = SimulatedBackendSettings(step_seconds=0.0, steps_per_epoch=100)
        async with serving_finetuning(
            database_url, section(blobs, address, fast), recorder
        ) as second:
            messages = await watch_to_end(second, job.id)

    steps = [m.event.metrics.step for m in messages if m.event.type == ft.JOB_EVENT_TYPE_METRICS]
    assert steps == list(range(1, 101))
    assert [m.event.sequence for m in messages] == list(range(1, len(messages) + 1))
    states = [m.event.state for m in messages if m.event.type == ft.JOB_EVENT_TYPE_STATE_CHANGED]
    assert states[-1] == ft.JOB_STATE_SUCCEEDED
    assert states.count(ft.JOB_STATE_RUNNING) == 1


async def test_watch_resumes_after_a_given_sequence_and_events_page_by_cursor(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs") as pair:
        dataset = await upload(pair.finetuning, chat_dataset())
        job = (await pair.finetuning.CreateJob(request(dataset.id), metadata=ACTOR)).job
        everything = await watch_to_end(pair.finetuning, job.id)

        tail = await watch_to_end(pair.finetuning, job.id, after=5)
        assert [m.event.id for m in tail] == [m.event.id for m in everything[5:]]

        paged: list[ft.JobEvent] = []
        token = ""
        while True:
            page = await pair.finetuning.ListJobEvents(
                ft.ListJobEventsRequest(job_id=job.id, page_size=4, page_token=token)
            )
            paged.extend(page.events)
            token = page.next_page_token
            if not token:
                break
        assert [e.id for e in paged] == [m.event.id for m in everything]
        first = await pair.finetuning.ListJobCheckpoints(
            ft.ListJobCheckpointsRequest(job_id=job.id, page_size=1)
        )
        second = await pair.finetuning.ListJobCheckpoints(
            ft.ListJobCheckpointsRequest(
                job_id=job.id, page_size=1, page_token=first.next_page_token
            )
        )
        assert [c.step for c in [*first.checkpoints, *second.checkpoints]] == [3, 6]


async def test_at_most_the_configured_number_of_jobs_run_at_once(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW, 1) as pair:
        dataset = await upload(pair.finetuning, chat_dataset())
        first = (await pair.finetuning.CreateJob(request(dataset.id), metadata=ACTOR)).job
        await events_until(pair.finetuning, first.id, 1)
        second = (await pair.finetuning.CreateJob(request(dataset.id), metadata=ACTOR)).job
        queued = await _until_state(pair.finetuning, second.id, ft.JOB_STATE_QUEUED)
        assert queued
        running = await pair.finetuning.GetJob(ft.GetJobRequest(job_id=first.id))
        assert running.job.state == ft.JOB_STATE_RUNNING

        await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=first.id))
        await events_until(pair.finetuning, second.id, 1)
        await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=second.id))


async def _until_state(
    stub: finetuning_pb2_grpc.FineTuningServiceAsyncStub, job_id: str, state: int
) -> bool:
    call = stub.WatchJob(ft.WatchJobRequest(job_id=job_id), timeout=60)
    async for message in call:
        if message.event.state == state:
            call.cancel()
            return True
    return False


async def test_create_job_with_a_request_id_is_idempotent(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        dataset = await upload(pair.finetuning, chat_dataset())
        once = await pair.finetuning.CreateJob(
            request(dataset.id, request_id="nightly-42"), metadata=ACTOR
        )
        again = await pair.finetuning.CreateJob(
            request(dataset.id, request_id="nightly-42"), metadata=ACTOR
        )
        assert again.job.id == once.job.id
        listed = await pair.finetuning.ListJobs(ft.ListJobsRequest())
        assert [job.id for job in listed.jobs] == [once.job.id]
        await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=once.job.id))
