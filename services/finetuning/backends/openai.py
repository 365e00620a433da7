"""The ``openai`` backend: OpenAI's (or a compatible server's) files and fine_tuning/jobs API.

Start uploads the training (and validation) file with ``POST /files``
(``purpose=fine-tune``, multipart) and creates the job with
``POST /fine_tuning/jobs``. Follow polls, every ``poll_interval_seconds``,
``GET /fine_tuning/jobs/{id}`` (status, hyperparameters, result),
``GET /fine_tuning/jobs/{id}/events`` (newest first, paged with ``after``;
``metrics`` events carry ``data.step`` and the losses) and
``GET /fine_tuning/jobs/{id}/checkpoints``, and yields what is new. Cancel is
``POST /fine_tuning/jobs/{id}/cancel``.

A 4xx answer is a :class:`BackendError` (the job fails with OpenAI's message).
Connection errors, 429 and 5xx are retried: while starting up to
``start_attempts`` times, ``poll_interval_seconds`` apart, while following at
the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.backends.base import (
    Backend,
    BackendError,
    BackendPlugin,
    CancelledAtBackend,
    CheckpointSaved,
    Failed,
    Metrics,
    Note,
    Started,
    Succeeded,
    TrainingSpec,
    Update,
)
from services.finetuning.settings import FineTuningSection, OpenAIBackendSettings

_log = logging.getLogger(__name__)
_LEVELS = {
    "info": ft.JOB_EVENT_LEVEL_INFO,
    "warn": ft.JOB_EVENT_LEVEL_WARNING,
    "warning": ft.JOB_EVENT_LEVEL_WARNING,
    "error": ft.JOB_EVENT_LEVEL_ERROR,
}
_EVENTS_PAGE = 100
Json = dict[str, Any]


def _hyperparameter(setting: ft.IntegerHyperparameter | ft.NumberHyperparameter) -> object:
    return setting.value if setting.WhichOneof("setting") == "value" else "auto"


def job_body(spec: TrainingSpec, training_file: str, validation_file: str | None) -> Json:
    """The ``POST /fine_tuning/jobs`` body of ``spec``."""
    hyper = spec.hyperparameters
    body: Json = {
        "model": spec.base_provider_model_id,
        "training_file": training_file,
        "hyperparameters": {
            "n_epochs": _hyperparameter(hyper.n_epochs),
            "batch_size": _hyperparameter(hyper.batch_size),
            "learning_rate_multiplier": _hyperparameter(hyper.learning_rate_multiplier),
        },
    }
    if validation_file is not None:
        body["validation_file"] = validation_file
    if spec.suffix:
        body["suffix"] = spec.suffix
    if spec.seed is not None:
        body["seed"] = spec.seed
    return body


def metrics_of(data: Json, steps_per_epoch: int = 0) -> ft.TrainingMetrics:
    """TrainingMetrics from an event's ``data`` or a checkpoint's ``metrics``."""
    step = int(data.get("step") or 0)
    metrics = ft.TrainingMetrics(step=step, train_loss=float(data.get("train_loss") or 0.0))
    if steps_per_epoch:
        metrics.epoch = (step - 1) // steps_per_epoch + 1
    if data.get("train_mean_token_accuracy") is not None:
        metrics.train_accuracy = float(data["train_mean_token_accuracy"])
    if data.get("valid_loss") is not None:
        metrics.validation_loss = float(data["valid_loss"])
    if data.get("valid_mean_token_accuracy") is not None:
        metrics.validation_accuracy = float(data["valid_mean_token_accuracy"])
    return metrics


def resolved_of(job: Json) -> ft.Hyperparameters:
    """The job's hyperparameters, where the API reports numbers."""
    reported = job.get("hyperparameters") or {}
    resolved = ft.Hyperparameters()
    if isinstance(reported.get("n_epochs"), int):
        resolved.n_epochs.value = reported["n_epochs"]
    if isinstance(reported.get("batch_size"), int):
        resolved.batch_size.value = reported["batch_size"]
    if isinstance(reported.get("learning_rate_multiplier"), int | float):
        resolved.learning_rate_multiplier.value = float(reported["learning_rate_multiplier"])
    return resolved


class OpenAIBackend:
    """:class:`~services.finetuning.backends.base.Backend` over the OpenAI HTTP API."""

    def __init__(self, settings: OpenAIBackendSettings, api_key: str) -> None:
        """Call ``settings.base_url`` with ``api_key``."""
        self._settings = settings
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(60.0, connect=10.0),
        )

    @property
    def price_per_million_tokens_nanos(self) -> int:
        """The configured price."""
        return self._settings.price_per_million_tokens_nanos

    async def start(self, spec: TrainingSpec) -> str:
        """Upload the files and create the job."""
        training = await self._upload(spec.training_file_name, spec.training_file)
        validation = None
        if spec.validation_file is not None:
            validation = await self._upload(spec.validation_file_name, spec.validation_file)
        job = await self._retrying(
            "POST", "/fine_tuning/jobs", json=job_body(spec, training, validation)
        )
        return str(job["id"])

    async def follow(
        self, backend_job_id: str, spec: TrainingSpec, after_step: int
    ) -> AsyncIterator[Update]:
        """Poll until the job ends (module docstring)."""
        last_step = after_step
        last_checkpoint = after_step
        seen_messages: set[str] = set()
        started = after_step > 0
        path = f"/fine_tuning/jobs/{backend_job_id}"
        while True:
            try:
                job = await self._request("GET", path)
                events = await self._events(path)
                checkpoints = await self._request("GET", f"{path}/checkpoints")
            except _Transient as exc:
                _log.warning("polling fine-tuning job failed: %s", exc)
                await asyncio.sleep(self._settings.poll_interval_seconds)
                continue
            status = job.get("status")
            if not started and status in ("running", "succeeded", "failed", "cancelled"):
                started = True
                yield Started(resolved_of(job))
            for event in reversed(events):
                data = event.get("data") or {}
                if event.get("type") == "metrics" and int(data.get("step") or 0) > last_step:
                    last_step = int(data["step"])
                    yield Metrics(metrics_of(data))
                elif event.get("type") != "metrics" and event["id"] not in seen_messages:
                    seen_messages.add(event["id"])
                    level = _LEVELS.get(str(event.get("level")), ft.JOB_EVENT_LEVEL_INFO)
                    yield Note(str(event.get("message", "")), level)
            for checkpoint in sorted(checkpoints.get("data", []), key=lambda c: c["step_number"]):
                if checkpoint["step_number"] > last_checkpoint:
                    last_checkpoint = checkpoint["step_number"]
                    yield CheckpointSaved(
                        str(checkpoint["fine_tuned_model_checkpoint"]),
                        metrics_of(checkpoint.get("metrics") or {}),
                    )
            if status == "succeeded":
                yield Succeeded(str(job["fine_tuned_model"]), int(job.get("trained_tokens") or 0))
                return
            if status == "failed":
                error = job.get("error") or {}
                yield Failed(
                    str(error.get("message") or "failed"),
                    str(error.get("code") or "TRAINING_FAILED"),
                )
                return
            if status == "cancelled":
                yield CancelledAtBackend()
                return
            await asyncio.sleep(self._settings.poll_interval_seconds)

    async def cancel(self, backend_job_id: str) -> None:
        """Ask the API to cancel; a job that already ended is left as it is."""
        try:
            await self._request("POST", f"/fine_tuning/jobs/{backend_job_id}/cancel")
        except (BackendError, _Transient) as exc:
            _log.warning("cancelling fine-tuning job %s failed: %s", backend_job_id, exc)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _retrying(self, method: str, path: str, **kwargs: Any) -> Json:
        for _ in range(self._settings.start_attempts - 1):
            try:
                return await self._request(method, path, **kwargs)
            except _Transient as exc:
                _log.warning("%s; retrying", exc)
                await asyncio.sleep(self._settings.poll_interval_seconds)
        try:
            return await self._request(method, path, **kwargs)
        except _Transient as exc:
            raise BackendError(str(exc), "BACKEND_UNAVAILABLE") from exc

    async def _upload(self, name: str, content: bytes) -> str:
        answer = await self._retrying(
            "POST",
            "/files",
            data={"purpose": "fine-tune"},
            files={"file": (name, content, "application/jsonl")},
        )
        return str(answer["id"])

    async def _events(self, path: str) -> list[Json]:
        """Every event, newest first (pages of the API, followed with ``after``)."""
        events: list[Json] = []
        params: dict[str, str | int] = {"limit": _EVENTS_PAGE}
        while True:
            page = await self._request("GET", f"{path}/events", params=params)
            events.extend(page.get("data", []))
            if not page.get("has_more") or not page.get("data"):
                return events
            params = {"limit": _EVENTS_PAGE, "after": page["data"][-1]["id"]}

    async def _request(self, method: str, path: str, **kwargs: Any) -> Json:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _Transient(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"{method} {path}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = (body.get("error") or {}) if isinstance(body, dict) else {}
            raise BackendError(
                str(error.get("message") or f"HTTP {response.status_code}"),
                str(error.get("code") or "BACKEND_REJECTED").upper(),
            )
        if not isinstance(body, dict):
            raise _Transient(f"{method} {path}: not a JSON object")
        return body


class _Transient(Exception):
    """A failure worth retrying (connection, 429, 5xx, garbage)."""


def _create(section: FineTuningSection) -> Backend:
    settings = section.openai
    return OpenAIBackend(settings, os.environ.get(settings.api_key_env, ""))


plugin = BackendPlugin(name="openai", create=_create)
