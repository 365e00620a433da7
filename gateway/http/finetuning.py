"""OpenAI Files and Fine-tuning bodies <-> ``llmgw.finetuning.v1`` messages.

A file of purpose ``fine-tune`` is a :class:`Dataset` (``status`` ``processed`` when
READY, ``error`` when INVALID, ``uploaded`` while processing); a ``fine_tuning.job`` is
a :class:`Job`, its events and checkpoints the job's. Hyperparameters left out or
``"auto"`` are auto. ``fine_tuned_model`` is the registry reference of the result
version (``<model>/versions/<version>``), which the inference API serves.

OpenAI pages with ``after`` (the id of the last item seen) and ``limit``; the service
with opaque tokens, so :func:`page_after` walks the service's pages to the item after
``after`` (see :class:`Page`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from google.protobuf import timestamp_pb2

from gateway.http.fields import Json, as_integer, as_number, as_object, as_string, bad
from llmgw.finetuning.v1 import finetuning_pb2 as ft

FINE_TUNE_PURPOSE = "fine-tune"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
SCAN_PAGE_SIZE = 100
"""Items asked of the service per page while looking for the item after ``after``."""
MAX_SCAN_PAGES = 1000
VERSIONS_SEPARATOR = "/versions/"
LINE_ERRORS_SHOWN = 5
"""How many of an invalid file's line errors the 400 message names."""

_FILE_STATUS = {
    ft.DATASET_STATUS_PROCESSING: "uploaded",
    ft.DATASET_STATUS_READY: "processed",
    ft.DATASET_STATUS_INVALID: "error",
}
_JOB_STATUS = {
    ft.JOB_STATE_VALIDATING_FILES: "validating_files",
    ft.JOB_STATE_QUEUED: "queued",
    ft.JOB_STATE_RUNNING: "running",
    ft.JOB_STATE_SUCCEEDED: "succeeded",
    ft.JOB_STATE_FAILED: "failed",
    ft.JOB_STATE_CANCELLED: "cancelled",
}
_LEVELS = {
    ft.JOB_EVENT_LEVEL_WARNING: "warn",
    ft.JOB_EVENT_LEVEL_ERROR: "error",
}
_CREATE_FIELDS = frozenset(
    {
        "model",
        "training_file",
        "validation_file",
        "hyperparameters",
        "method",
        "suffix",
        "seed",
        "metadata",
        "integrations",
    }
)
_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")

T = TypeVar("T")


def _seconds(timestamp: timestamp_pb2.Timestamp) -> int:
    return int(timestamp.seconds)


def _optional_seconds(message: Any, field: str) -> int | None:
    return int(getattr(message, field).seconds) if message.HasField(field) else None


# Files -------------------------------------------------------------------------------


def file_object(dataset: ft.Dataset) -> Json:
    """One ``file`` object."""
    return {
        "id": dataset.id,
        "object": "file",
        "bytes": dataset.size_bytes,
        "created_at": _seconds(dataset.create_time),
        "filename": dataset.display_name,
        "purpose": FINE_TUNE_PURPOSE,
        "status": _FILE_STATUS.get(dataset.status, "uploaded"),
        "status_details": line_errors(dataset) if dataset.errors else None,
        "expires_at": None,
    }


def line_errors(dataset: ft.Dataset) -> str:
    """What is wrong with an invalid dataset, naming its first bad lines."""
    shown = "; ".join(
        f"line {error.line}: {error.code}"
        + (f" at {error.field_path}" if error.field_path else "")
        + (f": {error.message}" if error.message else "")
        for error in dataset.errors[:LINE_ERRORS_SHOWN]
    )
    more = dataset.error_count - min(len(dataset.errors), LINE_ERRORS_SHOWN)
    return f"{dataset.error_count} invalid line(s): {shown}" + (
        f"; and {more} more" if more > 0 else ""
    )


def file_deleted(file_id: str) -> bytes:
    """The body answering a deletion."""
    return orjson.dumps({"id": file_id, "object": "file", "deleted": True})


def check_purpose(purpose: str) -> None:
    """Only ``fine-tune`` files are kept; InvalidArgument for any other purpose."""
    if purpose != FINE_TUNE_PURPOSE:
        raise bad("purpose", f"must be {FINE_TUNE_PURPOSE!r} (the only purpose served)")


# Jobs --------------------------------------------------------------------------------


def parse_create_job(body: object) -> ft.CreateJobRequest:
    """The ``CreateJob`` request a job creation body asks for; InvalidArgument when wrong.

    Only the JSON types are checked here; ranges are the service's to check.

    Hyperparameters come from ``hyperparameters`` or, as OpenAI's newer shape puts them,
    ``method.supervised.hyperparameters`` (only the ``supervised`` method is served).
    """
    body = as_object(body, "body")
    unknown = sorted(set(body) - _CREATE_FIELDS)
    if unknown:
        raise bad(unknown[0], "is not a known field")
    request = ft.CreateJobRequest(
        base_model=as_string(body.get("model"), "model"),
        training_dataset_id=as_string(body.get("training_file"), "training_file"),
    )
    if body.get("validation_file") is not None:
        request.validation_dataset_id = as_string(body["validation_file"], "validation_file")
    if body.get("suffix") is not None:
        request.suffix = as_string(body["suffix"], "suffix")
    if body.get("seed") is not None:
        request.seed = as_integer(body["seed"], "seed")
    if body.get("metadata") is not None:
        metadata = as_object(body["metadata"], "metadata")
        for key, value in metadata.items():
            request.labels[key] = as_string(value, f"metadata.{key}")
    hyper: object = body.get("hyperparameters")
    field = "hyperparameters"
    if body.get("method") is not None:
        method = as_object(body["method"], "method")
        if method.get("type", "supervised") != "supervised":
            raise bad("method.type", "only supervised fine-tuning is served")
        supervised = as_object(method.get("supervised") or {}, "method.supervised")
        if supervised.get("hyperparameters") is not None:
            hyper, field = supervised["hyperparameters"], "method.supervised.hyperparameters"
    if hyper is not None:
        _hyperparameters(as_object(hyper, field), field, request.hyperparameters)
    return request


def _hyperparameters(values: Json, field: str, into: ft.Hyperparameters) -> None:
    for name in sorted(set(values) - set(_HYPERPARAMETERS)):
        raise bad(f"{field}.{name}", "is not a known hyperparameter")
    for name in ("n_epochs", "batch_size"):
        value = values.get(name)
        if value is None or value == "auto":
            continue
        getattr(into, name).value = as_integer(value, f"{field}.{name}")
    rate = values.get("learning_rate_multiplier")
    if rate is not None and rate != "auto":
        multiplier = as_number(rate, f"{field}.learning_rate_multiplier")
        into.learning_rate_multiplier.value = multiplier


def _setting(setting: ft.IntegerHyperparameter | ft.NumberHyperparameter) -> int | float | str:
    return setting.value if setting.WhichOneof("setting") == "value" else "auto"


def job_object(job: ft.Job) -> Json:
    """One ``fine_tuning.job`` object (the resolved hyperparameters once known)."""
    hyper = (
        job.resolved_hyperparameters
        if job.HasField("resolved_hyperparameters")
        else job.hyperparameters
    )
    hyperparameters = {
        "n_epochs": _setting(hyper.n_epochs),
        "batch_size": _setting(hyper.batch_size),
        "learning_rate_multiplier": _setting(hyper.learning_rate_multiplier),
    }
    succeeded = job.state == ft.JOB_STATE_SUCCEEDED
    result_model = job.result_model or job.base_model_name
    error = None
    if job.state == ft.JOB_STATE_FAILED:
        error = {
            "code": "job_failed",
            "message": job.error.message or "the job failed",
            "param": None,
        }
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": _seconds(job.create_time),
        "error": error,
        "fine_tuned_model": (
            f"{result_model}{VERSIONS_SEPARATOR}{job.result_model_version}"
            if succeeded and job.result_model_version and result_model
            else None
        ),
        "finished_at": _optional_seconds(job, "end_time"),
        "hyperparameters": hyperparameters,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        "model": job.base_model,
        "organization_id": job.project_id,
        "result_files": [],
        "seed": job.seed if job.HasField("seed") else 0,
        "status": _JOB_STATUS.get(job.state, "validating_files"),
        "trained_tokens": job.trained_tokens if succeeded else None,
        "training_file": job.training_dataset_id,
        "validation_file": job.validation_dataset_id or None,
        "estimated_finish": _optional_seconds(job, "estimated_end_time"),
        "integrations": None,
        "metadata": dict(job.labels) or None,
        "suffix": job.suffix or None,
    }


def _metrics(metrics: ft.TrainingMetrics) -> Json:
    has = metrics.HasField
    return {
        "step": metrics.step,
        "train_loss": metrics.train_loss,
        "train_mean_token_accuracy": (metrics.train_accuracy if has("train_accuracy") else None),
        "valid_loss": metrics.validation_loss if has("validation_loss") else None,
        "valid_mean_token_accuracy": (
            metrics.validation_accuracy if has("validation_accuracy") else None
        ),
    }


def event_object(event: ft.JobEvent) -> Json:
    """One ``fine_tuning.job.event`` object; a metrics event carries its metrics as ``data``."""
    is_metrics = event.type == ft.JOB_EVENT_TYPE_METRICS
    data: Json | None = None
    if is_metrics:
        data = {**_metrics(event.metrics), "epoch": event.metrics.epoch}
    elif event.type == ft.JOB_EVENT_TYPE_STATE_CHANGED:
        data = {"status": _JOB_STATUS.get(event.state)}
    elif event.type == ft.JOB_EVENT_TYPE_CHECKPOINT_CREATED:
        data = {"checkpoint_id": event.checkpoint_id}
    return {
        "id": event.id,
        "object": "fine_tuning.job.event",
        "created_at": _seconds(event.create_time),
        "level": _LEVELS.get(event.level, "info"),
        "message": event.message,
        "type": "metrics" if is_metrics else "message",
        "data": data,
    }


def checkpoint_object(checkpoint: ft.Checkpoint) -> Json:
    """One ``fine_tuning.job.checkpoint`` object."""
    return {
        "id": checkpoint.id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": _seconds(checkpoint.create_time),
        "fine_tuned_model_checkpoint": checkpoint.provider_model_id,
        "fine_tuning_job_id": checkpoint.job_id,
        "metrics": {
            **_metrics(checkpoint.metrics),
            "full_valid_loss": None,
            "full_valid_mean_token_accuracy": None,
        },
        "step_number": checkpoint.step,
    }


# Paging ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Up to ``limit`` items after ``after``, and whether more follow."""

    items: list[T]
    has_more: bool


def limit_of(value: str | None) -> int:
    """The ``limit`` query parameter: 1 to 100, 20 when absent."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise bad("limit", "must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


async def page_after(
    fetch: Callable[[int, str], Awaitable[tuple[Sequence[T], str]]],
    id_of: Callable[[T], str],
    after: str | None,
    limit: int,
) -> Page[T]:
    """The items after the one with id ``after`` (from the first without it).

    ``fetch(page_size, page_token)`` returns one page of the service's listing and the
    next token (empty on the last). An ``after`` that is not listed gives an empty page.
    """
    found = not after
    items: list[T] = []
    token = ""
    for _ in range(MAX_SCAN_PAGES):
        page_size = limit + 1 if found else SCAN_PAGE_SIZE
        listed, token = await fetch(page_size, token)
        for item in listed:
            if found:
                items.append(item)
            elif id_of(item) == after:
                found = True
        if len(items) > limit or not token:
            break
    return Page(items[:limit], len(items) > limit)


def list_body(objects: list[Json], has_more: bool) -> bytes:
    """OpenAI's cursor list: ``data``, ``has_more`` and the first and last ids."""
    return orjson.dumps(
        {
            "object": "list",
            "data": objects,
            "has_more": has_more,
            "first_id": objects[0]["id"] if objects else None,
            "last_id": objects[-1]["id"] if objects else None,
        }
    )
