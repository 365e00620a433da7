"""Jobs on the simulated backend: lifecycle, watch, events, checkpoints, registration."""

from __future__ import annotations

from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.models.v1 import models_pb2
from tests.integration.finetuning.conftest import (
    ACTOR,
    BASE_MODEL,
    Pair,
    chat_dataset,
    eventually,
    upload,
    watch_to_end,
)

TERMINAL = {ft.JOB_STATE_SUCCEEDED, ft.JOB_STATE_FAILED, ft.JOB_STATE_CANCELLED}


async def create(pair: Pair, dataset_id: str, **fields: object) -> ft.Job:
    request = ft.CreateJobRequest(
        base_model=f"{BASE_MODEL}@production", training_dataset_id=dataset_id, suffix="tickets"
    )
    for name, value in fields.items():
        setattr(request, name, value)
    response = await pair.finetuning.CreateJob(request, metadata=ACTOR)
    return response.job


async def test_a_job_runs_to_success_and_becomes_a_version_under_the_alias(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, chat_dataset())
    job = await create(pair, dataset.id, alias_on_success="staging")
    assert job.state == ft.JOB_STATE_VALIDATING_FILES
    assert job.base_model_name == BASE_MODEL and job.base_model_version == "1"

    messages = await watch_to_end(pair.finetuning, job.id)

    sequences = [m.event.sequence for m in messages]
    assert sequences == list(range(1, len(messages) + 1))
    states = [m.event.state for m in messages if m.event.type == ft.JOB_EVENT_TYPE_STATE_CHANGED]
    assert states == [
        ft.JOB_STATE_VALIDATING_FILES,
        ft.JOB_STATE_QUEUED,
        ft.JOB_STATE_RUNNING,
        ft.JOB_STATE_SUCCEEDED,
    ]
    metrics = [m.event.metrics for m in messages if m.event.type == ft.JOB_EVENT_TYPE_METRICS]
    assert [m.step for m in metrics] == list(range(1, 10))
    assert metrics[-1].train_loss < metrics[0].train_loss
    final = messages[-1].job
    assert final.state == ft.JOB_STATE_SUCCEEDED
    assert final.result_model_version == job.id
    assert final.result_provider_model_id == f"ft:sim-small:tickets:{job.id}"
    assert final.trained_tokens > 0 and final.cost.amount_nanos > 0
    assert final.resolved_hyperparameters.n_epochs.value == 3

    checkpoints = await pair.finetuning.ListJobCheckpoints(
        ft.ListJobCheckpointsRequest(job_id=job.id)
    )
    assert [c.step for c in checkpoints.checkpoints] == [3, 6]

    async def aliased() -> bool:
        try:
            alias = await pair.models.GetAlias(
                models_pb2.GetAliasRequest(model=BASE_MODEL, alias="staging")
            )
        except Exception:
            return False
        return alias.alias.version == job.id

    await eventually(aliased)
    version = await pair.models.GetModelVersion(
        models_pb2.GetModelVersionRequest(model=BASE_MODEL, version=job.id)
    )
    assert version.version.origin.type == models_pb2.VERSION_ORIGIN_TYPE_FINE_TUNE
    assert version.version.origin.fine_tune_job_id == job.id
    assert version.version.provider == "simulated"
    assert version.version.provider_model_id == final.result_provider_model_id
    assert version.version.context_window == 512

    async def relayed() -> bool:
        return len(pair.events.of_topic("llmgw.usage.v1")) == 1

    await eventually(relayed)
    published = pair.events.of_topic("llmgw.finetuning.v1")
    assert [e.metadata.id for e in published] == [m.event.id for m in messages]  # type: ignore[attr-defined]
    usage = pair.events.of_topic("llmgw.usage.v1")
    assert len(usage) == 1
    assert isinstance(usage[0], events_pb2.UsageRecorded)
    assert usage[0].operation == events_pb2.INFERENCE_OPERATION_FINE_TUNE
    assert usage[0].usage.input_tokens == final.trained_tokens
    assert usage[0].cost.total_nanos == final.cost.amount_nanos
    assert usage[0].metadata.id == job.id and usage[0].project_id == "support"
    labels = {"backend": "simulated", "state": "succeeded"}
    assert pair.metrics.get_sample_value("llmgw_finetuning_jobs_finished_total", labels) == 1
    assert pair.metrics.get_sample_value(
        "llmgw_finetuning_trained_tokens_total", {"backend": "simulated"}
    ) == float(final.trained_tokens)
    assert (
        pair.metrics.get_sample_value("llmgw_finetuning_jobs_running", {"backend": "simulated"})
        == 0.0
    )
