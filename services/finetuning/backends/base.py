"""The fine-tuning backend plugin interface.

A backend trains a model on a provider. The job runner gives it a frozen
:class:`TrainingSpec`; :meth:`Backend.start` submits the job and returns the
backend's job id (persisted before training is followed), :meth:`Backend.follow`
yields :data:`Update` values until the job ends, and :meth:`Backend.cancel`
stops it at the provider. A refusal (bad file, unknown model, no quota) is raised as
:class:`BackendError` and fails the job; transient trouble (timeouts, 5xx,
rate limits) is the backend's to retry. ``follow`` must be resumable: after a restart the
runner calls it again with the same backend job id and the last step it
recorded, and the backend yields only what comes after.

Backends are found by name in the ``llmgw.finetuning_backends`` entry-point
group; a :class:`BackendPlugin` builds one from the service settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.settings import FineTuningSection
from services.kernel.plugins import PluginGroup, PluginRegistry, PluginSpec

BACKEND_API_VERSION = 1


@dataclass(frozen=True, slots=True)
class TrainingSpec:
    """Everything a backend needs to train one job."""

    job_id: str
    base_provider_model_id: str
    training_file: bytes
    training_tokens: int
    training_examples: int
    hyperparameters: ft.Hyperparameters
    suffix: str = ""
    seed: int | None = None
    validation_file: bytes | None = None
    training_file_name: str = "training.jsonl"
    validation_file_name: str = "validation.jsonl"


@dataclass(frozen=True, slots=True)
class Metrics:
    """Metrics at one step; ``trained_tokens`` is the running total."""

    metrics: ft.TrainingMetrics
    trained_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    """A checkpoint at ``metrics.step`` that can be served as ``provider_model_id``."""

    provider_model_id: str
    metrics: ft.TrainingMetrics


@dataclass(frozen=True, slots=True)
class Note:
    """A log message of the backend."""

    message: str
    level: ft.JobEventLevel.ValueType = ft.JOB_EVENT_LEVEL_INFO


@dataclass(frozen=True, slots=True)
class Started:
    """Training began, with the hyperparameters the backend chose."""

    resolved: ft.Hyperparameters = field(default_factory=ft.Hyperparameters)


@dataclass(frozen=True, slots=True)
class Succeeded:
    """Training finished; the result is served as ``provider_model_id``."""

    provider_model_id: str
    trained_tokens: int


@dataclass(frozen=True, slots=True)
class Failed:
    """Training failed at the backend."""

    message: str
    code: str = "TRAINING_FAILED"


@dataclass(frozen=True, slots=True)
class CancelledAtBackend:
    """The backend reports the job cancelled (e.g. by someone else)."""


class BackendError(Exception):
    """The backend refused or lost the job; the job fails with ``code`` and ``message``."""

    def __init__(self, message: str, code: str = "BACKEND_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


Update = Started | Metrics | CheckpointSaved | Note | Succeeded | Failed | CancelledAtBackend


class Backend(Protocol):
    """One backend instance, built once per process."""

    @property
    def price_per_million_tokens_nanos(self) -> int:
        """What one million trained tokens cost, in USD nanos."""
        ...

    async def start(self, spec: TrainingSpec) -> str:
        """Submit the job; return the backend's job id."""
        ...

    def follow(
        self, backend_job_id: str, spec: TrainingSpec, after_step: int
    ) -> AsyncIterator[Update]:
        """Updates after ``after_step`` until (and including) the terminal one."""
        ...

    async def cancel(self, backend_job_id: str) -> None:
        """Stop the job at the backend; no error when it already ended."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class BackendPlugin:
    """What the entry point names: a backend and how to build it."""

    name: str
    create: Callable[[FineTuningSection], Backend]
    plugin_api_version: int = BACKEND_API_VERSION


BACKENDS = PluginSpec(PluginGroup.FINETUNING_BACKENDS.value, BackendPlugin, BACKEND_API_VERSION)


def backend_registry() -> PluginRegistry[BackendPlugin]:
    """The installed fine-tuning backends, by name."""
    return PluginRegistry(BACKENDS)
