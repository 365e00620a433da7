"""The ``openai`` backend against a wire-accurate fake of OpenAI's fine-tuning API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.models.v1 import models_pb2
from provider_adapters.conformance.fake_server import ScriptedResponse
from services.finetuning.settings import OpenAIBackendSettings
from tests.integration.finetuning.conftest import (
    ACTOR,
    BASE_MODEL,
    Pair,
    chat_dataset,
    eventually,
    serving_pair,
    upload,
    watch_to_end,
)
from tests.integration.finetuning.openai_fake import API_KEY, FakeOpenAIFineTuning

KEY_ENV = "LLMGW_TEST_OPENAI_FINETUNING_KEY"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIFineTuning]:
    async with FakeOpenAIFineTuning() as server:
        yield server


@pytest.fixture
async def pair(
    database_url: str, tmp_path: Path, fake: FakeOpenAIFineTuning, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Pair]:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    openai = OpenAIBackendSettings(
        base_url=fake.base_url, api_key_env=KEY_ENV, poll_interval_seconds=0.01
    )
    async with serving_pair(database_url, tmp_path / "blobs", openai=openai) as running:
        yield running


def openai_job(training: str, **fields: object) -> ft.CreateJobRequest:
    request = ft.CreateJobRequest(
        base_model=f"{BASE_MODEL}@production",
        training_dataset_id=training,
        backend="openai",
        suffix="tickets",
        alias_on_success="candidate",
    )
    for name, value in fields.items():
        setattr(request, name, value)
    return request


async def test_a_job_uploads_files_trains_and_registers_the_fine_tuned_model(
    pair: Pair, fake: FakeOpenAIFineTuning
) -> None:
    content = chat_dataset(3)
    training = await upload(pair.finetuning, content)
    validation = await upload(pair.finetuning, chat_dataset(1))
    request = openai_job(training.id, validation_dataset_id=validation.id, seed=7)
    request.hyperparameters.n_epochs.value = 2
    job = (await pair.finetuning.CreateJob(request, metadata=ACTOR)).job

    messages = await watch_to_end(pair.finetuning, job.id)

    final = messages[-1].job
    assert final.state == ft.JOB_STATE_SUCCEEDED, final.error
    backend_job = fake.jobs[final.backend_job_id].body
    assert final.result_provider_model_id == backend_job["fine_tuned_model"]
    assert final.trained_tokens == 1234
    assert final.resolved_hyperparameters.n_epochs.value == 2
    assert final.resolved_hyperparameters.batch_size.value == 1
    uploaded = sorted(fake.files.values(), key=lambda f: f.id)
    assert [(f.purpose, f.content) for f in uploaded] == [
        ("fine-tune", content),
        ("fine-tune", chat_dataset(1)),
    ]
    create = next(r for r in fake.server.requests if r.path == "/v1/fine_tuning/jobs")
    assert create.json() == {
        "model": "sim-small",
        "training_file": uploaded[0].id,
        "validation_file": uploaded[1].id,
        "hyperparameters": {
            "n_epochs": 2,
            "batch_size": "auto",
            "learning_rate_multiplier": "auto",
        },
        "suffix": "tickets",
        "seed": 7,
    }
    steps = [m.event.metrics.step for m in messages if m.event.type == ft.JOB_EVENT_TYPE_METRICS]
    assert steps == [1, 2, 3, 4, 5, 6]
    notes = [m.event.message for m in messages if m.event.type == ft.JOB_EVENT_TYPE_MESSAGE]
    assert "Fine-tuning job started" in notes
    checkpoints = await pair.finetuning.ListJobCheckpoints(
        ft.ListJobCheckpointsRequest(job_id=job.id)
    )
    assert [(c.step, c.provider_model_id) for c in checkpoints.checkpoints] == [
        (2, f"ft:sim-small:org-fake::{final.backend_job_id[6:]}:ckpt-step-2"),
        (4, f"ft:sim-small:org-fake::{final.backend_job_id[6:]}:ckpt-step-4"),
    ]

    async def registered() -> bool:
        try:
            alias = await pair.models.GetAlias(
                models_pb2.GetAliasRequest(model=BASE_MODEL, alias="candidate")
            )
        except Exception:
            return False
        return alias.alias.version == job.id

    await eventually(registered)


async def test_cancel_reaches_the_backend(pair: Pair, fake: FakeOpenAIFineTuning) -> None:
    fake.hold_at_step = 2
    training = await upload(pair.finetuning, chat_dataset())
    job = (await pair.finetuning.CreateJob(openai_job(training.id), metadata=ACTOR)).job
    call = pair.finetuning.WatchJob(ft.WatchJobRequest(job_id=job.id), timeout=60)
    async for message in call:
        if message.event.metrics.step == 2:
            call.cancel()
            break

    cancelled = await pair.finetuning.CancelJob(ft.CancelJobRequest(job_id=job.id))

    assert cancelled.job.state == ft.JOB_STATE_CANCELLED
    assert fake.cancelled == [cancelled.job.backend_job_id]


async def test_a_refused_job_fails_with_the_apis_message(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    async with FakeOpenAIFineTuning(unavailable_models=frozenset({"sim-small"})) as refusing:
        openai = OpenAIBackendSettings(
            base_url=refusing.base_url, api_key_env=KEY_ENV, poll_interval_seconds=0.01
        )
        async with serving_pair(database_url, tmp_path / "blobs", openai=openai) as pair:
            training = await upload(pair.finetuning, chat_dataset())
            job = (await pair.finetuning.CreateJob(openai_job(training.id), metadata=ACTOR)).job
            messages = await watch_to_end(pair.finetuning, job.id)

    final = messages[-1].job
    assert final.state == ft.JOB_STATE_FAILED
    assert "MODEL_NOT_AVAILABLE" in final.error.message
    assert "not available for fine-tuning" in final.error.message


async def test_a_wrong_api_key_fails_the_job(
    database_url: str, tmp_path: Path, fake: FakeOpenAIFineTuning, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    openai = OpenAIBackendSettings(
        base_url=fake.base_url, api_key_env=KEY_ENV, poll_interval_seconds=0.01
    )
    async with serving_pair(database_url, tmp_path / "blobs", openai=openai) as pair:
        training = await upload(pair.finetuning, chat_dataset())
        job = (await pair.finetuning.CreateJob(openai_job(training.id), metadata=ACTOR)).job
        messages = await watch_to_end(pair.finetuning, job.id)

    assert messages[-1].job.state == ft.JOB_STATE_FAILED
    assert "INVALID_API_KEY" in messages[-1].job.error.message


async def test_a_server_error_while_starting_is_retried(
    pair: Pair, fake: FakeOpenAIFineTuning
) -> None:
    fake.server.enqueue(ScriptedResponse(status=503, body=b"upstream connect error"))
    training = await upload(pair.finetuning, chat_dataset())
    job = (await pair.finetuning.CreateJob(openai_job(training.id), metadata=ACTOR)).job

    messages = await watch_to_end(pair.finetuning, job.id)

    assert messages[-1].job.state == ft.JOB_STATE_SUCCEEDED
    uploads = [r.path for r in fake.server.requests if r.path == "/v1/files"]
    assert uploads == ["/v1/files", "/v1/files"]
