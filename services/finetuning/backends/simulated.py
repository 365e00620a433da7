"""The ``simulated`` backend: a training run with a realistic loss curve, no provider.

Each job runs ``n_epochs`` (auto: 3) epochs of ``steps_per_epoch`` steps, one
step every ``step_seconds``. The loss decays exponentially towards a floor
with a little seeded noise, token accuracy rises with it, and a checkpoint is
saved at the end of every ``checkpoint_every_epochs`` epochs. The curve
depends only on the job, so following again after a restart continues the same
run. ``fail_at_step`` makes jobs fail (for demos and tests). The result model
id is ``ft:<base>:<suffix>:<job id>``, which the ``simulated`` provider serves.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning.backends.base import (
    Backend,
    BackendPlugin,
    CheckpointSaved,
    Failed,
    Metrics,
    Note,
    Started,
    Succeeded,
    TrainingSpec,
    Update,
)
from services.finetuning.settings import FineTuningSection, SimulatedBackendSettings

DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 4
DEFAULT_LEARNING_RATE_MULTIPLIER = 1.0


def resolve(hyperparameters: ft.Hyperparameters) -> ft.Hyperparameters:
    """``hyperparameters`` with every auto value replaced by the simulated default."""
    resolved = ft.Hyperparameters()
    epochs = hyperparameters.n_epochs
    batch = hyperparameters.batch_size
    rate = hyperparameters.learning_rate_multiplier
    resolved.n_epochs.value = (
        epochs.value if epochs.WhichOneof("setting") == "value" else DEFAULT_EPOCHS
    )
    resolved.batch_size.value = (
        batch.value if batch.WhichOneof("setting") == "value" else DEFAULT_BATCH_SIZE
    )
    resolved.learning_rate_multiplier.value = (
        rate.value if rate.WhichOneof("setting") == "value" else DEFAULT_LEARNING_RATE_MULTIPLIER
    )
    return resolved


def result_model_id(spec: TrainingSpec, step: int | None = None) -> str:
    """The provider model id of the result (or of the checkpoint at ``step``)."""
    name = f"ft:{spec.base_provider_model_id}:{spec.suffix or 'custom'}:{spec.job_id}"
    return name if step is None else f"{name}:ckpt-step-{step}"


class SimulatedBackend:
    """:class:`~services.finetuning.backends.base.Backend` that simulates training."""

    def __init__(self, settings: SimulatedBackendSettings) -> None:
        """Simulate with ``settings``."""
        self._settings = settings

    @property
    def price_per_million_tokens_nanos(self) -> int:
        """The configured price."""
        return self._settings.price_per_million_tokens_nanos

    async def start(self, spec: TrainingSpec) -> str:
        """Nothing to submit; the job id is the backend job id."""
        return f"sim-{spec.job_id}"

    async def follow(
        self, backend_job_id: str, spec: TrainingSpec, after_step: int
    ) -> AsyncIterator[Update]:
        """The steps after ``after_step`` (see the module docstring)."""
        settings = self._settings
        resolved = resolve(spec.hyperparameters)
        epochs = resolved.n_epochs.value
        per_epoch = settings.steps_per_epoch
        total = epochs * per_epoch
        tokens_per_step = max(1, spec.training_tokens * epochs // total)
        rate = resolved.learning_rate_multiplier.value
        noise = random.Random(f"{spec.job_id}:{spec.seed}")
        if after_step == 0:
            yield Started(resolved)
            yield Note(
                f"training {total} steps over {epochs} epochs on {spec.training_examples} examples"
            )
        for step in range(1, total + 1):
            jitter = noise.uniform(-0.03, 0.03)
            if step <= after_step:
                continue
            await asyncio.sleep(settings.step_seconds)
            if settings.fail_at_step and step >= settings.fail_at_step:
                yield Failed(f"the simulated backend failed at step {step}", "SIMULATED_FAILURE")
                return
            progress = step / total
            loss = 0.25 + 2.0 * math.exp(-4.0 * progress * min(rate, 4.0)) + jitter
            metrics = ft.TrainingMetrics(
                step=step,
                epoch=(step - 1) // per_epoch + 1,
                train_loss=round(loss, 4),
                train_accuracy=round(min(0.99, 1.0 - loss / 2.6), 4),
            )
            if spec.validation_file is not None:
                metrics.validation_loss = round(loss * 1.08, 4)
            yield Metrics(metrics, trained_tokens=tokens_per_step * step)
            epoch_end = step % per_epoch == 0
            epoch = step // per_epoch
            if epoch_end and epoch % settings.checkpoint_every_epochs == 0 and step < total:
                yield CheckpointSaved(result_model_id(spec, step), metrics)
        yield Succeeded(result_model_id(spec), tokens_per_step * total)

    async def cancel(self, backend_job_id: str) -> None:
        """Nothing runs elsewhere; stopping :meth:`follow` is enough."""

    async def aclose(self) -> None:
        """Nothing to release."""


def _create(section: FineTuningSection) -> Backend:
    return SimulatedBackend(section.simulated)


plugin = BackendPlugin(name="simulated", create=_create)
