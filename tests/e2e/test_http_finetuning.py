"""OpenAI's Files and Fine-tuning APIs on the HTTP edge, judged by the official ``openai`` package.

Real ``models``, ``finetuning`` and ``inference`` processes (over loopback gRPC and a
real Kafka-protocol broker, as in :mod:`tests.e2e.test_finetuning`) stand behind a
gateway in this process whose HTTP edge serves ``/v1/files`` and
``/v1/fine_tuning/jobs``. The simulated backend trains in a few steps, so a job is
watched to success by polling ``retrieve``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass

import aiohttp
import openai
import pytest
import pytest_asyncio
from grpc import aio
from openai.types.fine_tuning import FineTuningJob, job_create_params

from llmgw.models.v1 import models_pb2_grpc
from services.kernel.health_client import wait_until_serving
from tests.e2e.http_stack import Edge, start_edge
from tests.e2e.test_finetuning import DATASET, _seed, _serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

FINETUNING = "llmgw.finetuning.v1.FineTuningService"
GOOD = DATASET.encode().splitlines(keepends=True)[0]
BASE_MODEL = "helpdesk@production"
TERMINAL = ("succeeded", "failed", "cancelled")
WAIT_SECONDS = 60.0


@dataclass
class Stack:
    edge: Edge

    def sync_client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.edge.base_url, api_key="unused", max_retries=0)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.edge.base_url, api_key="unused", max_retries=0)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("http-finetuning")
    run = uuid.uuid4().hex[:8]

    def unique_name(kind: str) -> str:
        return f"{kind}.http-finetuning.{run}"

    topic = unique_name("finetuning")
    kafka = {"bootstrap_servers": kafka_bootstrap}
    with ExitStack() as processes:
        registry = processes.enter_context(
            _serve(
                "models",
                {
                    "database_url": f"sqlite+aiosqlite:///{folder / 'models.db'}",
                    "kafka": kafka,
                    "registry": {
                        "providers": ["simulated"],
                        "finetuning_topic": topic,
                        "models_topic": unique_name("models"),
                        "audit_topic": unique_name("audit"),
                    },
                },
                folder,
            )
        )
        assert await wait_until_serving(registry, timeout=30)
        async with aio.insecure_channel(registry) as channel:
            await _seed(models_pb2_grpc.ModelRegistryServiceStub(channel))
        finetuning = processes.enter_context(
            _serve(
                "finetuning",
                {
                    "database_url": f"sqlite+aiosqlite:///{folder / 'finetuning.db'}",
                    "kafka": kafka,
                    "finetuning": {
                        "registry_address": registry,
                        "blob_dir": str(folder / "blobs"),
                        "topic": topic,
                        "usage_topic": unique_name("usage"),
                        "relay_poll_interval_seconds": 0.2,
                        "simulated": {"step_seconds": 0.01, "steps_per_epoch": 4},
                    },
                },
                folder,
            )
        )
        inference = processes.enter_context(
            _serve(
                "inference",
                {
                    "routing": {"registry_address": registry},
                    "usage": {"spool_dir": str(folder / "spool")},
                },
                folder,
            )
        )
        assert await wait_until_serving(finetuning, timeout=30)
        assert await wait_until_serving(inference, timeout=30)
        edge = await start_edge(
            inference, folder / "access.log", upstreams={FINETUNING: finetuning}
        )
        try:
            yield Stack(edge)
        finally:
            await edge.stop()


async def _until_finished(client: openai.AsyncOpenAI, job_id: str) -> FineTuningJob:
    """Poll ``retrieve`` until the job is in a terminal state."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        job = await client.fine_tuning.jobs.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id} is still {job.status}"
        await asyncio.sleep(0.1)


# Files -------------------------------------------------------------------------------


async def test_upload_list_retrieve_and_delete_a_file(stack: Stack) -> None:
    await asyncio.to_thread(_upload_list_retrieve_and_delete_a_file, stack)


def _upload_list_retrieve_and_delete_a_file(stack: Stack) -> None:
    client = stack.sync_client()
    uploaded = client.files.create(file=("tickets.jsonl", GOOD), purpose="fine-tune")
    assert uploaded.object == "file" and uploaded.id
    assert (uploaded.filename, uploaded.bytes, uploaded.purpose, uploaded.status) == (
        "tickets.jsonl",
        len(GOOD),
        "fine-tune",
        "processed",
    )
    assert client.files.retrieve(uploaded.id) == uploaded
    assert uploaded.id in [file.id for file in client.files.list()]

    deleted = client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (uploaded.id, True, "file")
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.retrieve(uploaded.id)
    assert missing.value.status_code == 404
    assert uploaded.id not in [file.id for file in client.files.list()]


async def test_files_are_listed_newest_first_in_pages(stack: Stack) -> None:
    client = stack.async_client()
    ids = [
        (await client.files.create(file=(f"f{i}.jsonl", GOOD), purpose="fine-tune")).id
        for i in range(3)
    ]
    first = await client.files.list(limit=2)
    assert [file.id for file in first.data] == ids[::-1][:2]
    assert first.has_more
    second = await client.files.list(limit=2, after=first.data[-1].id)
    assert second.data[0].id == ids[0]
    listed = [file.id async for file in client.files.list(limit=1)]
    assert listed[:3] == ids[::-1]


async def test_a_file_with_bad_lines_is_a_bad_request_naming_them(stack: Stack) -> None:
    await asyncio.to_thread(_a_file_with_bad_lines_is_a_bad_request_naming_them, stack)


def _a_file_with_bad_lines_is_a_bad_request_naming_them(stack: Stack) -> None:
    client = stack.sync_client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", DATASET.encode()), purpose="fine-tune")
    assert refused.value.status_code == 400
    assert "line 2: MISSING_MESSAGES" in refused.value.message
    body = refused.value.body
    assert isinstance(body, dict)
    assert (body["param"], body["code"]) == ("file", "invalid_file")
    assert "bad.jsonl" not in [file.filename for file in client.files.list()]


async def test_a_file_of_another_purpose_is_refused(stack: Stack) -> None:
    await asyncio.to_thread(_a_file_of_another_purpose_is_refused, stack)


def _a_file_of_another_purpose_is_refused(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        stack.sync_client().files.create(file=("b.jsonl", GOOD), purpose="batch")
    assert refused.value.status_code == 400
    assert isinstance(refused.value.body, dict) and refused.value.body["param"] == "purpose"


async def test_an_upload_that_is_not_multipart_or_has_no_file_is_refused(stack: Stack) -> None:
    url = f"{stack.edge.base_url}/files"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"purpose": "fine-tune"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "body"
        form = aiohttp.MultipartWriter("form-data")
        form.append("fine-tune").set_content_disposition("form-data", name="purpose")
        async with session.post(url, data=form) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "file"
        late = aiohttp.FormData()
        late.add_field("file", GOOD, filename="late.jsonl")
        late.add_field("purpose", "fine-tune")
        async with session.post(url, data=late) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "purpose"


async def test_an_unknown_file_is_not_found(stack: Stack) -> None:
    await asyncio.to_thread(_an_unknown_file_is_not_found, stack)


def _an_unknown_file_is_not_found(stack: Stack) -> None:
    client = stack.sync_client()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("ds_missing")
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.delete("ds_missing")
    assert missing.value.status_code == 404


# Jobs --------------------------------------------------------------------------------


async def test_a_job_is_trained_to_success_and_its_model_answers(stack: Stack) -> None:
    client = stack.async_client()
    training = await client.files.create(file=("tickets.jsonl", GOOD), purpose="fine-tune")
    created = await client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training.id,
        hyperparameters={"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"},
        suffix="tickets",
        seed=7,
        metadata={"team": "support"},
    )
    assert created.object == "fine_tuning.job"
    assert created.status in ("validating_files", "queued", "running")
    assert (created.model, created.training_file, created.seed) == (BASE_MODEL, training.id, 7)
    assert created.metadata == {"team": "support"}
    assert created.fine_tuned_model is None

    job = await _until_finished(client, created.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"helpdesk/versions/{job.id}"
    assert job.hyperparameters.n_epochs == 2
    assert isinstance(job.hyperparameters.batch_size, int)
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.finished_at is not None and job.finished_at >= job.created_at

    events = [event async for event in client.fine_tuning.jobs.list_events(job.id, limit=5)]
    assert all(event.object == "fine_tuning.job.event" for event in events)
    assert len({event.id for event in events}) == len(events)
    metrics = [event for event in events if event.type == "metrics"]
    assert metrics and isinstance(metrics[0].data, dict) and "train_loss" in metrics[0].data
    statuses = [
        event.data["status"]
        for event in events
        if isinstance(event.data, dict) and "status" in event.data
    ]
    assert statuses[-1] == "succeeded"

    checkpoints = await client.fine_tuning.jobs.checkpoints.list(job.id)
    assert checkpoints.data, "the simulated backend saves a checkpoint per epoch"
    first = checkpoints.data[0]
    assert (first.object, first.fine_tuning_job_id) == ("fine_tuning.job.checkpoint", job.id)
    assert first.step_number > 0 and first.fine_tuned_model_checkpoint
    assert first.metrics.train_loss is not None

    listed = await client.fine_tuning.jobs.list(limit=100)
    assert job.id in [item.id for item in listed.data]

    model = job.fine_tuned_model
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:  # the registry registers the version when it consumes the success event
        try:
            answer = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "I forgot my password"}]
            )
            break
        except openai.NotFoundError:
            assert asyncio.get_running_loop().time() < deadline, f"{model} is never served"
            await asyncio.sleep(0.1)
    assert answer.model == model and answer.choices[0].message.content


async def test_jobs_are_listed_in_pages_and_cancelled(stack: Stack) -> None:
    await asyncio.to_thread(_jobs_are_listed_in_pages_and_cancelled, stack)


def _jobs_are_listed_in_pages_and_cancelled(stack: Stack) -> None:
    client = stack.sync_client()
    training = client.files.create(file=("t.jsonl", GOOD), purpose="fine-tune")
    long: job_create_params.Hyperparameters = {
        "n_epochs": 1024
    }  # thousands of steps: still running when cancelled
    ids = [
        client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=training.id, hyperparameters=long
        ).id
        for _ in range(2)
    ]
    for job_id in ids:
        cancelled = client.fine_tuning.jobs.cancel(job_id)
        assert (cancelled.id, cancelled.status) == (job_id, "cancelled")
        assert client.fine_tuning.jobs.retrieve(job_id).status == "cancelled"

    first = client.fine_tuning.jobs.list(limit=1)
    assert [job.id for job in first.data] == ids[1:] and first.has_more
    second = client.fine_tuning.jobs.list(limit=1, after=ids[1])
    assert [job.id for job in second.data] == ids[:1]

    events = list(client.fine_tuning.jobs.list_events(ids[0], limit=2))
    statuses = [e.data["status"] for e in events if isinstance(e.data, dict) and "status" in e.data]
    assert statuses[-1] == "cancelled"
    checkpoints = client.fine_tuning.jobs.checkpoints.list(ids[0])
    assert all(c.fine_tuning_job_id == ids[0] for c in checkpoints.data)

    with pytest.raises(openai.BadRequestError) as finished:
        client.fine_tuning.jobs.cancel(ids[0])
    assert finished.value.status_code == 400
    assert isinstance(finished.value.body, dict) and finished.value.body["code"] == "job_finished"


async def test_an_unknown_job_is_not_found(stack: Stack) -> None:
    await asyncio.to_thread(_an_unknown_job_is_not_found, stack)


def _an_unknown_job_is_not_found(stack: Stack) -> None:
    client = stack.sync_client()
    for call in (
        lambda: client.fine_tuning.jobs.retrieve("ftjob_missing"),
        lambda: client.fine_tuning.jobs.cancel("ftjob_missing"),
        lambda: client.fine_tuning.jobs.list_events("ftjob_missing"),
        lambda: client.fine_tuning.jobs.checkpoints.list("ftjob_missing"),
    ):
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert missing.value.status_code == 404


async def test_a_wrong_job_request_is_a_bad_request(stack: Stack) -> None:
    client = stack.async_client()
    training = await client.files.create(file=("t.jsonl", GOOD), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as out_of_range:
        await client.fine_tuning.jobs.create(
            model=BASE_MODEL, training_file=training.id, hyperparameters={"n_epochs": 0}
        )
    assert isinstance(out_of_range.value.body, dict)
    assert out_of_range.value.body["param"] == "hyperparameters.n_epochs.value"
    with pytest.raises(openai.BadRequestError) as wrong_type:
        await client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=training.id,
            hyperparameters={"batch_size": "large"},  # type: ignore[arg-type]
        )
    assert isinstance(wrong_type.value.body, dict)
    assert wrong_type.value.body["param"] == "hyperparameters.batch_size"
    with pytest.raises(openai.APIStatusError) as no_file:
        await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file="ds_missing")
    assert no_file.value.status_code in (400, 404)
    with pytest.raises(openai.BadRequestError) as bad_limit:
        await client.fine_tuning.jobs.list(limit=0)
    assert isinstance(bad_limit.value.body, dict) and bad_limit.value.body["param"] == "limit"
