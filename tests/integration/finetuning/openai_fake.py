"""A stateful fake of OpenAI's files and fine_tuning/jobs HTTP API, on a real loopback server.

Shapes follow OpenAI's public API reference: ``POST /v1/files`` (multipart,
``purpose`` and ``file``) answers a ``file`` object; ``POST /v1/fine_tuning/jobs``
a ``fine_tuning.job`` in ``validating_files``; every ``GET`` of the job moves
it one tick on (validating_files -> queued -> running, then one training step
per tick, each adding a ``metrics`` event, checkpoints at the given steps,
then ``succeeded`` with ``fine_tuned_model`` and ``trained_tokens``). Events
are listed newest first and paged with ``after``/``limit``; checkpoints are
``fine_tuning.job.checkpoint`` objects. ``POST .../cancel`` cancels. Errors use
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` body.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from provider_adapters.conformance.fake_server import FakeServer, RecordedRequest, ScriptedResponse

API_KEY = "sk-fake-finetuning"
CREATED_AT = 1_721_764_800
_JOB_PATH = re.compile(r"^/v1/fine_tuning/jobs/([^/]+)(/events|/checkpoints|/cancel)?$")


@dataclass
class FakeJob:
    """The fake's state of one job."""

    body: dict[str, Any]
    steps: int
    checkpoint_steps: tuple[int, ...]
    step: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UploadedFile:
    """A file received by ``POST /v1/files``."""

    id: str
    filename: str
    purpose: str
    content: bytes


class FakeOpenAIFineTuning:
    """The fake; ``async with FakeOpenAIFineTuning() as fake:`` and point a client at
    :attr:`base_url`. ``hold_at_step`` keeps running jobs from passing that step."""

    def __init__(
        self,
        steps: int = 6,
        checkpoint_steps: tuple[int, ...] = (2, 4),
        unavailable_models: frozenset[str] = frozenset(),
        hold_at_step: int | None = None,
    ) -> None:
        self.server = FakeServer(self.respond)
        self.files: dict[str, UploadedFile] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.cancelled: list[str] = []
        self._steps = steps
        self._checkpoint_steps = checkpoint_steps
        self._unavailable = unavailable_models
        self.hold_at_step = hold_at_step
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """The API root, ``http://127.0.0.1:<port>/v1``."""
        return f"{self.server.base_url}/v1"

    async def __aenter__(self) -> FakeOpenAIFineTuning:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    def respond(self, request: RecordedRequest) -> ScriptedResponse:
        """Answer one request from the fake's state."""
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if request.method == "POST" and request.path == "/v1/files":
            return self._upload(request)
        if request.method == "POST" and request.path == "/v1/fine_tuning/jobs":
            return self._create(request.json())
        return self._job_route(request)

    def _job_route(self, request: RecordedRequest) -> ScriptedResponse:
        match = _JOB_PATH.match(request.path)
        if match is None or match.group(1) not in self.jobs:
            return _error(404, f"No such resource: {request.path}", None)
        job = self.jobs[match.group(1)]
        routes: dict[tuple[str, str | None], Callable[[], ScriptedResponse]] = {
            ("GET", None): lambda: self._get(job),
            ("GET", "/events"): lambda: _json(_page(job.events, request, "event")),
            ("GET", "/checkpoints"): lambda: _json(_page(job.checkpoints, request, "checkpoint")),
            ("POST", "/cancel"): lambda: self._cancel(job),
        }
        route = routes.get((request.method, match.group(2)))
        return route() if route is not None else _error(405, "Method not allowed", None)

    def _get(self, job: FakeJob) -> ScriptedResponse:
        self._tick(job)
        return _json(job.body)

    def _upload(self, request: RecordedRequest) -> ScriptedResponse:
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = email.message_from_bytes(head + request.body, policy=email.policy.HTTP)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(name, str) and isinstance(payload, bytes)
            fields[name] = (part.get_filename(), payload)
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        if purpose != "fine-tune":
            return _error(400, f"Invalid purpose {purpose!r}", "invalid_purpose")
        uploaded = UploadedFile(f"file-{next(self._ids):06d}", filename or "", purpose, content)
        self.files[uploaded.id] = uploaded
        return _json(
            {
                "id": uploaded.id,
                "object": "file",
                "bytes": len(content),
                "created_at": CREATED_AT,
                "filename": uploaded.filename,
                "purpose": purpose,
            }
        )

    def _create(self, body: dict[str, Any]) -> ScriptedResponse:
        if body.get("training_file") not in self.files:
            return _error(
                400, "invalid training_file", "invalid_training_file", param="training_file"
            )
        if body["model"] in self._unavailable:
            return _error(
                400,
                f"Model {body['model']} is not available for fine-tuning or does not exist.",
                "model_not_available",
                param="model",
            )
        job_id = f"ftjob-{next(self._ids):06d}"
        self.jobs[job_id] = FakeJob(
            body={
                "object": "fine_tuning.job",
                "id": job_id,
                "model": body["model"],
                "created_at": CREATED_AT,
                "finished_at": None,
                "fine_tuned_model": None,
                "organization_id": "org-fake",
                "result_files": [],
                "status": "validating_files",
                "validation_file": body.get("validation_file"),
                "training_file": body["training_file"],
                "hyperparameters": dict(body.get("hyperparameters") or {}),
                "trained_tokens": None,
                "error": None,
                "user_provided_suffix": body.get("suffix"),
                "seed": body.get("seed", 42),
                "estimated_finish": None,
                "integrations": [],
            },
            steps=self._steps,
            checkpoint_steps=self._checkpoint_steps,
        )
        self._event(
            self.jobs[job_id], "message", f"Validating training file: {body['training_file']}"
        )
        return _json(self.jobs[job_id].body)

    def _tick(self, job: FakeJob) -> None:
        status = job.body["status"]
        if status == "validating_files":
            job.body["status"] = "queued"
            self._event(job, "message", "Files validated, moving job to queued state")
        elif status == "queued":
            job.body["status"] = "running"
            hyper = job.body["hyperparameters"]
            for name, auto in (
                ("n_epochs", 3),
                ("batch_size", 1),
                ("learning_rate_multiplier", 1.8),
            ):
                if hyper.get(name, "auto") == "auto":
                    hyper[name] = auto
            self._event(job, "message", "Fine-tuning job started")
        elif status == "running":
            if self.hold_at_step is not None and job.step >= self.hold_at_step:
                return
            if job.step < job.steps:
                job.step += 1
                metrics = {
                    "step": job.step,
                    "train_loss": round(2.0 / job.step, 4),
                    "train_mean_token_accuracy": round(1 - 0.5 / job.step, 4),
                }
                self._event(
                    job,
                    "metrics",
                    f"Step {job.step}/{job.steps}: training loss={metrics['train_loss']}",
                    data=metrics,
                )
                if job.step in job.checkpoint_steps:
                    job.checkpoints.insert(0, self._checkpoint(job, metrics))
            else:
                suffix = job.body["user_provided_suffix"] or ""
                job.body["status"] = "succeeded"
                job.body["fine_tuned_model"] = (
                    f"ft:{job.body['model']}:org-fake:{suffix}:{job.body['id'][6:]}"
                )
                job.body["trained_tokens"] = 1234
                job.body["finished_at"] = CREATED_AT + 600
                self._event(job, "message", "The job has successfully completed")

    def _cancel(self, job: FakeJob) -> ScriptedResponse:
        if job.body["status"] in ("succeeded", "failed", "cancelled"):
            return _error(400, "Job has already completed.", None, "invalid_request_error")
        job.body["status"] = "cancelled"
        self.cancelled.append(job.body["id"])
        self._event(job, "message", "Fine-tuning job cancelled")
        return _json(job.body)

    def _checkpoint(self, job: FakeJob, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt_{job.body['id'][6:]}{job.step:03d}",
            "created_at": CREATED_AT + job.step,
            "fine_tuned_model_checkpoint": (
                f"ft:{job.body['model']}:org-fake::{job.body['id'][6:]}:ckpt-step-{job.step}"
            ),
            "fine_tuning_job_id": job.body["id"],
            "metrics": {**metrics, "valid_loss": None, "full_valid_loss": None},
            "step_number": job.step,
        }

    def _event(
        self, job: FakeJob, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> None:
        job.events.insert(
            0,
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{next(self._ids):06d}",
                "created_at": CREATED_AT + len(job.events),
                "level": "info",
                "message": message,
                "data": data or {},
                "type": kind,
            },
        )


def _page(items: list[dict[str, Any]], request: RecordedRequest, kind: str) -> dict[str, Any]:
    """Newest first; ``after`` starts after that id, ``limit`` cuts (default 20)."""
    start = 0
    after = request.query_value("after")
    if after is not None:
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), len(items))
    limit = int(request.query_value("limit") or 20)
    data = items[start : start + limit]
    page: dict[str, Any] = {"object": "list", "data": data, "has_more": start + limit < len(items)}
    if kind == "checkpoint":
        page["first_id"] = data[0]["id"] if data else None
        page["last_id"] = data[-1]["id"] if data else None
    return page


def _json(body: dict[str, Any], status: int = 200) -> ScriptedResponse:
    return ScriptedResponse(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-request-id": "req_fake"},
    )


def _error(
    status: int,
    message: str,
    code: str | None,
    kind: str = "invalid_request_error",
    param: str | None = None,
) -> ScriptedResponse:
    return _json(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status
    )
