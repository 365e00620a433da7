"""Every rejection of the job API, with its status code and reason."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.models.v1 import models_pb2
from services.finetuning.settings import SimulatedBackendSettings
from tests.integration.finetuning.conftest import (
    ACTOR,
    BASE_MODEL,
    CHAT_LINE,
    Pair,
    chat_dataset,
    serving_pair,
    upload,
    watch_to_end,
)
from tests.integration.models.rpc_errors import failure, reason, violations


def job_request(dataset_id: str, **fields: object) -> ft.CreateJobRequest:
    message = ft.CreateJobRequest(
        base_model=f"{BASE_MODEL}@production", training_dataset_id=dataset_id
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return message


async def test_an_unknown_base_model_is_not_found(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, chat_dataset())
    error = await failure(
        pair.finetuning.CreateJob(job_request(dataset.id, base_model="nobody@production"))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert reason(error) == "MODEL_NOT_FOUND"


async def test_an_unknown_result_model_is_not_found(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, chat_dataset())
    error = await failure(
        pair.finetuning.CreateJob(job_request(dataset.id, result_model="elsewhere"))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_a_dataset_with_errors_fails_the_precondition(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, (CHAT_LINE + "\n{oops\n").encode())
    assert dataset.status == ft.DATASET_STATUS_INVALID
    error = await failure(pair.finetuning.CreateJob(job_request(dataset.id)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "DATASET_INVALID"


async def test_a_deleted_dataset_is_not_found(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, chat_dataset())
    await pair.finetuning.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=dataset.id))
    for request in (
        job_request(dataset.id),
        job_request("ds_unknown"),
        job_request(dataset.id, training_dataset_id="ds_unknown"),
    ):
        error = await failure(pair.finetuning.CreateJob(request))
        assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await failure(pair.finetuning.CreateJob(job_request(dataset.id)))
    assert reason(error) == "DATASET_DELETED"


async def test_a_dataset_used_by_an_unfinished_job_cannot_be_deleted(
    database_url: str, tmp_path: Path
) -> None:
    slow = SimulatedBackendSettings(step_seconds=0.2, steps_per_epoch=100)
    async with serving_pair(database_url, tmp_path / "blobs", slow) as pair:
        dataset = await upload(pair.finetuning, chat_dataset())
        job = (await pair.finetuning.CreateJob(job_request(dataset.id), metadata=ACTOR)).job
        error = await failure(
            pair.finetuning.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=dataset.id))
        )
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert reason(error) == "DATASET_IN_USE"
        await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=job.id))
        await pair.finetuning.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=dataset.id))


async def test_cancelling_a_finished_job_fails_the_precondition(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, chat_dataset())
    job = (await pair.finetuning.CreateJob(job_request(dataset.id), metadata=ACTOR)).job
    await watch_to_end(pair.finetuning, job.id)
    error = await failure(pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=job.id)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "JOB_FINISHED"


@pytest.mark.parametrize(
    "call",
    ["GetJob", "CancelJob", "WatchJob", "ListJobEvents", "ListJobCheckpoints"],
)
async def test_an_unknown_job_is_not_found(pair: Pair, call: str) -> None:
    requests = {
        "GetJob": ft.GetJobRequest(job_id="ftjob_nope"),
        "CancelJob": ft.CancelJobRequest(job_id="ftjob_nope"),
        "WatchJob": ft.WatchJobRequest(job_id="ftjob_nope"),
        "ListJobEvents": ft.ListJobEventsRequest(job_id="ftjob_nope"),
        "ListJobCheckpoints": ft.ListJobCheckpointsRequest(job_id="ftjob_nope"),
    }
    method = getattr(pair.finetuning, call)
    if call == "WatchJob":
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in method(requests[call]):
                pass
        error = caught.value
    else:
        error = await failure(method(requests[call]))
    assert error.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"base_model": ""}, "base_model"),
        ({"training_dataset_id": ""}, "training_dataset_id"),
        ({"suffix": "x" * 41}, "suffix"),
        ({"backend": "nowhere"}, "backend"),
        (
            {"hyperparameters": ft.Hyperparameters(n_epochs=ft.IntegerHyperparameter(value=0))},
            "hyperparameters.n_epochs.value",
        ),
        (
            {
                "hyperparameters": ft.Hyperparameters(
                    learning_rate_multiplier=ft.NumberHyperparameter(value=-1.0)
                )
            },
            "hyperparameters.learning_rate_multiplier.value",
        ),
    ],
)
async def test_a_malformed_job_request_is_invalid_argument(
    pair: Pair, fields: dict[str, object], field: str
) -> None:
    dataset = await upload(pair.finetuning, chat_dataset())
    request = job_request(dataset.id)
    for name, value in fields.items():
        if isinstance(value, ft.Hyperparameters):
            request.hyperparameters.CopyFrom(value)
        else:
            setattr(request, name, value)
    error = await failure(pair.finetuning.CreateJob(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(error)


async def test_a_base_model_whose_provider_has_no_backend_fails_the_precondition(
    pair: Pair,
) -> None:
    await pair.models.CreateModel(
        models_pb2.CreateModelRequest(model=models_pb2.Model(name="local")), metadata=ACTOR
    )
    await pair.models.CreateModelVersion(
        models_pb2.CreateModelVersionRequest(
            version=models_pb2.ModelVersion(
                model="local", version="1", provider="ollama", provider_model_id="llama3"
            )
        ),
        metadata=ACTOR,
    )
    dataset = await upload(pair.finetuning, chat_dataset())
    error = await failure(
        pair.finetuning.CreateJob(job_request(dataset.id, base_model="local/versions/1"))
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "NO_BACKEND_FOR_PROVIDER"
