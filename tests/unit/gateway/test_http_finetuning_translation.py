"""The HTTP edge's Files and Fine-tuning translations, checked against the ``openai`` types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2
from openai.types import FileDeleted, FileObject
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from gateway.http.finetuning import (
    check_purpose,
    checkpoint_object,
    event_object,
    file_deleted,
    file_object,
    job_object,
    limit_of,
    line_errors,
    list_body,
    page_after,
    parse_create_job,
)
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.kernel.errors import InvalidArgument

CREATED = timestamp_pb2.Timestamp(seconds=1_700_000_000)
ENDED = timestamp_pb2.Timestamp(seconds=1_700_000_600)


def _param(body: object) -> str:
    with pytest.raises(InvalidArgument) as refused:
        parse_create_job(body)
    return refused.value.violations[0].field


# Job creation ------------------------------------------------------------------------


def test_a_full_job_body_maps_to_a_create_job_request() -> None:
    request = parse_create_job(
        {
            "model": "helpdesk@production",
            "training_file": "ds_1",
            "validation_file": "ds_2",
            "hyperparameters": {
                "n_epochs": 3,
                "batch_size": "auto",
                "learning_rate_multiplier": 0.5,
            },
            "suffix": "tickets",
            "seed": 42,
            "metadata": {"team": "support"},
        }
    )
    assert (request.base_model, request.training_dataset_id, request.validation_dataset_id) == (
        "helpdesk@production",
        "ds_1",
        "ds_2",
    )
    assert request.hyperparameters.n_epochs.value == 3
    assert request.hyperparameters.batch_size.WhichOneof("setting") is None  # auto
    assert request.hyperparameters.learning_rate_multiplier.value == 0.5
    assert (request.suffix, request.seed, dict(request.labels)) == (
        "tickets",
        42,
        {"team": "support"},
    )


def test_hyperparameters_may_come_in_the_supervised_method() -> None:
    request = parse_create_job(
        {
            "model": "m",
            "training_file": "ds_1",
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        }
    )
    assert request.hyperparameters.n_epochs.value == 2
    assert not request.HasField("seed") and not request.validation_dataset_id


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], "body"),
        ({"training_file": "ds_1"}, "model"),
        ({"model": "m"}, "training_file"),
        ({"model": "m", "training_file": "ds", "colour": "red"}, "colour"),
        ({"model": "m", "training_file": "ds", "seed": "7"}, "seed"),
        ({"model": "m", "training_file": "ds", "metadata": {"a": 1}}, "metadata.a"),
        ({"model": "m", "training_file": "ds", "hyperparameters": []}, "hyperparameters"),
        (
            {"model": "m", "training_file": "ds", "hyperparameters": {"n_epochs": 1.5}},
            "hyperparameters.n_epochs",
        ),
        (
            {"model": "m", "training_file": "ds", "hyperparameters": {"warmup": 1}},
            "hyperparameters.warmup",
        ),
        (
            {
                "model": "m",
                "training_file": "ds",
                "hyperparameters": {"learning_rate_multiplier": "fast"},
            },
            "hyperparameters.learning_rate_multiplier",
        ),
        ({"model": "m", "training_file": "ds", "method": {"type": "dpo"}}, "method.type"),
    ],
)
def test_a_wrong_job_body_names_the_field(body: object, param: str) -> None:
    assert _param(body) == param


# Objects -----------------------------------------------------------------------------


def _job(state: ft.JobState.ValueType, **fields: Any) -> ft.Job:
    return ft.Job(
        id="ftjob_1",
        project_id="ops",
        base_model="helpdesk@production",
        base_model_name="helpdesk",
        training_dataset_id="ds_1",
        state=state,
        create_time=CREATED,
        **fields,
    )


def test_a_succeeded_job_is_a_fine_tuning_job_with_its_model_and_resolved_settings() -> None:
    requested = ft.Hyperparameters(n_epochs=ft.IntegerHyperparameter(value=2))
    resolved = ft.Hyperparameters(
        n_epochs=ft.IntegerHyperparameter(value=2),
        batch_size=ft.IntegerHyperparameter(value=8),
        learning_rate_multiplier=ft.NumberHyperparameter(value=1.0),
    )
    job = _job(
        ft.JOB_STATE_SUCCEEDED,
        hyperparameters=requested,
        resolved_hyperparameters=resolved,
        result_model_version="ftjob_1",
        trained_tokens=120,
        seed=7,
        end_time=ENDED,
        labels={"team": "support"},
    )
    parsed = FineTuningJob.model_validate(job_object(job))
    assert parsed.status == "succeeded"
    assert parsed.fine_tuned_model == "helpdesk/versions/ftjob_1"
    assert (parsed.created_at, parsed.finished_at) == (CREATED.seconds, ENDED.seconds)
    assert (parsed.seed, parsed.trained_tokens, parsed.organization_id) == (7, 120, "ops")
    hyper = parsed.hyperparameters
    assert (hyper.n_epochs, hyper.batch_size, hyper.learning_rate_multiplier) == (2, 8, 1.0)
    assert parsed.metadata == {"team": "support"} and parsed.validation_file is None


def test_a_running_job_shows_auto_settings_and_no_model() -> None:
    parsed = FineTuningJob.model_validate(
        job_object(_job(ft.JOB_STATE_RUNNING, estimated_end_time=ENDED))
    )
    assert parsed.status == "running" and parsed.fine_tuned_model is None
    assert parsed.hyperparameters.n_epochs == "auto"
    assert parsed.trained_tokens is None and parsed.finished_at is None
    assert parsed.estimated_finish == ENDED.seconds and parsed.error is None


def test_a_failed_job_carries_its_error() -> None:
    job = _job(ft.JOB_STATE_FAILED, error=status_pb2.Status(code=13, message="backend broke"))
    parsed = FineTuningJob.model_validate(job_object(job))
    assert parsed.status == "failed"
    assert parsed.error is not None and parsed.error.message == "backend broke"


def test_datasets_are_file_objects() -> None:
    ready = ft.Dataset(
        id="ds_1",
        display_name="tickets.jsonl",
        status=ft.DATASET_STATUS_READY,
        size_bytes=120,
        create_time=CREATED,
    )
    parsed = FileObject.model_validate(file_object(ready))
    assert (parsed.id, parsed.filename, parsed.bytes, parsed.status, parsed.purpose) == (
        "ds_1",
        "tickets.jsonl",
        120,
        "processed",
        "fine-tune",
    )
    assert parsed.status_details is None
    invalid = ft.Dataset(
        id="ds_2",
        status=ft.DATASET_STATUS_INVALID,
        error_count=1,
        errors=[ft.DatasetLineError(line=2, code="MISSING_MESSAGES", message="no messages")],
    )
    details = FileObject.model_validate(file_object(invalid))
    assert details.status == "error"
    assert details.status_details == "1 invalid line(s): line 2: MISSING_MESSAGES: no messages"
    assert FileDeleted.model_validate_json(file_deleted("ds_1")).deleted


def test_line_errors_name_the_first_lines_and_count_the_rest() -> None:
    dataset = ft.Dataset(
        error_count=9,
        errors=[
            ft.DatasetLineError(line=n, code="UNKNOWN_ROLE", field_path="messages[0].role")
            for n in range(1, 8)
        ],
    )
    text = line_errors(dataset)
    assert text.startswith("9 invalid line(s): line 1: UNKNOWN_ROLE at messages[0].role;")
    assert "line 5:" in text and "line 6:" not in text
    assert text.endswith("; and 4 more")


def test_events_and_checkpoints_are_their_openai_objects() -> None:
    metrics = ft.TrainingMetrics(step=4, epoch=1, train_loss=0.5, train_accuracy=0.75)
    event = ft.JobEvent(
        id="ev_1",
        job_id="ftjob_1",
        sequence=3,
        create_time=CREATED,
        type=ft.JOB_EVENT_TYPE_METRICS,
        level=ft.JOB_EVENT_LEVEL_WARNING,
        message="step 4",
        metrics=metrics,
    )
    parsed = FineTuningJobEvent.model_validate(event_object(event))
    assert (parsed.type, parsed.level, parsed.message) == ("metrics", "warn", "step 4")
    assert parsed.data == {
        "step": 4,
        "epoch": 1,
        "train_loss": 0.5,
        "train_mean_token_accuracy": 0.75,
        "valid_loss": None,
        "valid_mean_token_accuracy": None,
    }
    changed = ft.JobEvent(
        id="ev_2", type=ft.JOB_EVENT_TYPE_STATE_CHANGED, state=ft.JOB_STATE_SUCCEEDED
    )
    state = FineTuningJobEvent.model_validate(event_object(changed))
    assert (state.type, state.level, state.data) == ("message", "info", {"status": "succeeded"})

    checkpoint = ft.Checkpoint(
        id="ckpt_1",
        job_id="ftjob_1",
        step=4,
        metrics=metrics,
        provider_model_id="sim:ckpt-4",
        create_time=CREATED,
    )
    saved = FineTuningJobCheckpoint.model_validate(checkpoint_object(checkpoint))
    assert (saved.step_number, saved.fine_tuned_model_checkpoint) == (4, "sim:ckpt-4")
    assert (saved.metrics.train_loss, saved.metrics.valid_loss) == (0.5, None)


# Paging ------------------------------------------------------------------------------


class _Listing:
    """A service listing of ``ids`` whose page token is the next index."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self.asked: list[int] = []

    async def fetch(self, page_size: int, token: str) -> tuple[list[str], str]:
        self.asked.append(page_size)
        start = int(token or 0)
        end = start + page_size
        return self.ids[start:end], str(end) if end < len(self.ids) else ""


IDS = [f"id{n}" for n in range(250)]


async def test_a_page_without_after_is_the_first_items_and_says_if_more_follow() -> None:
    listing = _Listing(IDS)
    page = await page_after(listing.fetch, str, None, 20)
    assert page.items == IDS[:20] and page.has_more
    assert listing.asked == [21]
    last = await page_after(_Listing(IDS[:20]).fetch, str, None, 20)
    assert last.items == IDS[:20] and not last.has_more


async def test_a_page_after_an_id_walks_the_service_pages_to_it() -> None:
    page = await page_after(_Listing(IDS).fetch, str, "id149", 3)
    assert page.items == ["id150", "id151", "id152"] and page.has_more
    end = await page_after(_Listing(IDS).fetch, str, "id248", 3)
    assert end.items == ["id249"] and not end.has_more
    gone = await page_after(_Listing(IDS).fetch, str, "missing", 3)
    assert gone.items == [] and not gone.has_more


def test_limits_and_list_bodies() -> None:
    assert (limit_of(None), limit_of(""), limit_of("100")) == (20, 20, 100)
    for wrong in ("0", "101", "ten"):
        with pytest.raises(InvalidArgument) as refused:
            limit_of(wrong)
        assert refused.value.violations[0].field == "limit"
    assert orjson.loads(list_body([{"id": "a"}, {"id": "b"}], True)) == {
        "object": "list",
        "data": [{"id": "a"}, {"id": "b"}],
        "has_more": True,
        "first_id": "a",
        "last_id": "b",
    }
    check_purpose("fine-tune")
    with pytest.raises(InvalidArgument):
        check_purpose("assistants")
