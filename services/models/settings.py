"""Settings of the ``models`` process: the kernel's plus a ``registry`` section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.kernel.config import Section, Settings


class RegistrySettings(Section):
    """The registry: providers it accepts, a seed document, feed and event relay timing.

    ``providers`` empty means every installed provider adapter plugin.
    ``seed_file`` is imported (idempotently) at start, e.g. from a Helm value.
    With ``consume_fine_tunes``, succeeded fine-tuning jobs on ``finetuning_topic``
    become versions (see :mod:`services.models.finetunes`); without Kafka they are
    found by polling the fine-tuning service at ``finetuning_address``, when set
    (see :mod:`services.models.finetune_poller`).
    """

    providers: tuple[str, ...] = ()
    seed_file: Path | None = None
    watch_poll_interval_seconds: float = Field(default=0.5, gt=0)
    relay_poll_interval_seconds: float = Field(default=1.0, gt=0)
    relay_retry_seconds: float = Field(default=2.0, gt=0)
    models_topic: str = "llmgw.models.v1"
    audit_topic: str = "llmgw.audit.v1"
    finetuning_topic: str = "llmgw.finetuning.v1"
    consume_fine_tunes: bool = True
    finetuning_address: str | None = None
    finetuning_poll_interval_seconds: float = Field(default=2.0, gt=0)


class ModelsSettings(Settings):
    """Everything the ``models`` process needs to start."""

    service: str = "models"
    registry: RegistrySettings = RegistrySettings()

    @classmethod
    def of(cls, settings: Settings) -> ModelsSettings:
        """``settings`` as ModelsSettings (defaults for the registry section if absent)."""
        if isinstance(settings, ModelsSettings):
            return settings
        return cls.model_validate(settings.model_dump())
