"""Projects: an API key sees and acts on its own project's datasets and jobs only,
request ids are unique per project, and forged input answers INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest
from grpc import aio

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.settings import SimulatedBackendSettings
from tests.integration.finetuning.conftest import (
    BASE_MODEL,
    chat_dataset,
    serving_pair,
    upload,
)
from tests.integration.models.rpc_errors import reason

SLOW = SimulatedBackendSettings(step_seconds=0.2, steps_per_epoch=100)
"""A run that lasts minutes: tests cancel it, never wait for its end."""


def api_key(key_id: str, project: str) -> tuple[tuple[str, str], ...]:
    """The identity metadata the gateway forwards for an API key of ``project``."""
    return (
        ("llmgw-actor-type", "api_key"),
        ("llmgw-actor-id", key_id),
        ("llmgw-project-id", project),
    )


ALPHA = api_key("key-alpha", "alpha")
BETA = api_key("key-beta", "beta")


def request(dataset_id: str, request_id: str = "") -> ft.CreateJobRequest:
    return ft.CreateJobRequest(
        base_model=f"{BASE_MODEL}@production",
        training_dataset_id=dataset_id,
        request_id=request_id,
    )


async def not_found(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND, caught.value.details()
    return caught.value


async def test_an_api_key_sees_and_deletes_only_its_projects_datasets(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs") as pair:
        stub = pair.finetuning
        alpha = await upload(stub, chat_dataset(), actor=ALPHA)
        beta = await upload(stub, chat_dataset(), actor=BETA)
        assert (alpha.project_id, beta.project_id) == ("alpha", "beta")

        error = await not_found(
            stub.GetDataset(ft.GetDatasetRequest(dataset_id=alpha.id), metadata=BETA)
        )
        assert reason(error) == "DATASET_NOT_FOUND"
        await not_found(
            stub.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=alpha.id), metadata=BETA)
        )
        listed = await stub.ListDatasets(ft.ListDatasetsRequest(), metadata=BETA)
        assert [d.id for d in listed.datasets] == [beta.id]

        own = await stub.GetDataset(ft.GetDatasetRequest(dataset_id=alpha.id), metadata=ALPHA)
        assert own.dataset == alpha
        everything = await stub.ListDatasets(ft.ListDatasetsRequest())
        assert {d.id for d in everything.datasets} == {alpha.id, beta.id}
        await stub.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=alpha.id), metadata=ALPHA)


async def test_an_api_key_sees_and_acts_only_on_its_projects_jobs(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        stub = pair.finetuning
        dataset = await upload(stub, chat_dataset(), actor=ALPHA)
        job = (await stub.CreateJob(request(dataset.id), metadata=ALPHA)).job
        assert job.project_id == "alpha"

        error = await not_found(stub.GetJob(ft.GetJobRequest(job_id=job.id), metadata=BETA))
        assert reason(error) == "JOB_NOT_FOUND"
        await not_found(stub.CancelJob(ft.CancelJobRequest(job_id=job.id), metadata=BETA))
        await not_found(stub.ListJobEvents(ft.ListJobEventsRequest(job_id=job.id), metadata=BETA))
        await not_found(
            stub.ListJobCheckpoints(ft.ListJobCheckpointsRequest(job_id=job.id), metadata=BETA)
        )
        with pytest.raises(aio.AioRpcError) as caught:
            async for _ in stub.WatchJob(
                ft.WatchJobRequest(job_id=job.id), metadata=BETA, timeout=10
            ):
                pass
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
        assert (await stub.ListJobs(ft.ListJobsRequest(), metadata=BETA)).jobs == []

        mine = await stub.ListJobs(ft.ListJobsRequest(), metadata=ALPHA)
        assert [j.id for j in mine.jobs] == [job.id]
        assert (await stub.GetJob(ft.GetJobRequest(job_id=job.id))).job.id == job.id
        cancelled = await stub.CancelJob(ft.CancelJobRequest(job_id=job.id), metadata=ALPHA)
        assert cancelled.job.state == ft.JOB_STATE_CANCELLED


async def test_create_job_refuses_a_dataset_of_another_project(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        stub = pair.finetuning
        alpha = await upload(stub, chat_dataset(), actor=ALPHA)
        beta = await upload(stub, chat_dataset(), actor=BETA)

        error = await not_found(stub.CreateJob(request(alpha.id), metadata=BETA))
        assert reason(error) == "DATASET_NOT_FOUND"
        with_validation = request(beta.id)
        with_validation.validation_dataset_id = alpha.id
        error = await not_found(stub.CreateJob(with_validation, metadata=BETA))
        assert reason(error) == "DATASET_NOT_FOUND"
        assert (await stub.ListJobs(ft.ListJobsRequest())).jobs == []


async def test_request_ids_are_unique_per_project(database_url: str, tmp_path: Path) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        stub = pair.finetuning
        alpha = await upload(stub, chat_dataset(), actor=ALPHA)
        beta = await upload(stub, chat_dataset(), actor=BETA)

        first = (await stub.CreateJob(request(alpha.id, "nightly"), metadata=ALPHA)).job
        other = (await stub.CreateJob(request(beta.id, "nightly"), metadata=BETA)).job
        again = (await stub.CreateJob(request(alpha.id, "nightly"), metadata=ALPHA)).job

        assert other.id != first.id and other.project_id == "beta"
        assert again.id == first.id
        for job in (first, other):
            await stub.CancelJob(ft.CancelJobRequest(job_id=job.id))


async def test_concurrent_create_job_with_one_request_id_creates_one_job(
    database_url: str, tmp_path: Path
) -> None:
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        stub = pair.finetuning
        dataset = await upload(stub, chat_dataset(), actor=ALPHA)

        responses = await asyncio.gather(
            *(stub.CreateJob(request(dataset.id, "burst"), metadata=ALPHA) for _ in range(12))
        )

        assert len({response.job.id for response in responses}) == 1
        listed = await stub.ListJobs(ft.ListJobsRequest())
        assert [job.id for job in listed.jobs] == [responses[0].job.id]
        await stub.CancelJob(ft.CancelJobRequest(job_id=responses[0].job.id))


def token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


async def test_page_tokens_with_numbers_beyond_64_bits_are_invalid_argument(
    database_url: str, tmp_path: Path
) -> None:
    huge = str(1 << 70)
    async with serving_pair(database_url, tmp_path / "blobs", SLOW) as pair:
        stub = pair.finetuning
        dataset = await upload(stub, chat_dataset())
        job = (await stub.CreateJob(request(dataset.id))).job
        calls: list[Awaitable[object]] = [
            stub.ListJobEvents(
                ft.ListJobEventsRequest(job_id=job.id, page_token=token(f"events:{huge}"))
            ),
            stub.ListJobCheckpoints(
                ft.ListJobCheckpointsRequest(job_id=job.id, page_token=token(f"ckpt:-{huge}"))
            ),
            stub.ListJobs(ft.ListJobsRequest(page_token=token(f"jobs:{huge}:ftjob_x"))),
            stub.ListDatasets(ft.ListDatasetsRequest(page_token=token(f"ds:-{huge}:ds_x"))),
        ]
        for call in calls:
            with pytest.raises(aio.AioRpcError) as caught:
                await call
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        await stub.CancelJob(ft.CancelJobRequest(job_id=job.id))
