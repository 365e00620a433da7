"""Settings of the ``finetuning`` process: the kernel's plus a ``finetuning`` section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.kernel.config import Section, Settings


class SimulatedBackendSettings(Section):
    """The ``simulated`` backend: how long and how many steps a job takes, and failures.

    ``fail_at_step`` > 0 makes every job fail at that step (demos of the failure path).
    """

    step_seconds: float = Field(default=0.05, ge=0)
    steps_per_epoch: int = Field(default=10, gt=0)
    checkpoint_every_epochs: int = Field(default=1, gt=0)
    fail_at_step: int = Field(default=0, ge=0)
    price_per_million_tokens_nanos: int = Field(default=3_000_000_000, ge=0)


class OpenAIBackendSettings(Section):
    """The ``openai`` backend: an OpenAI-compatible files and fine_tuning/jobs API."""

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    poll_interval_seconds: float = Field(default=10.0, gt=0)
    start_attempts: int = Field(default=5, gt=0)
    price_per_million_tokens_nanos: int = Field(default=3_000_000_000, ge=0)


class FineTuningSection(Section):
    """Datasets, jobs and backends.

    ``registry_address`` is the ModelRegistryService the base models are resolved
    with (``host:port``). Datasets live under ``blob_dir``; their cost estimates
    use the price of ``default_backend``. At most ``max_concurrent_jobs`` jobs
    train at once; others wait in QUEUED.
    """

    registry_address: str = "127.0.0.1:50053"
    registry_timeout_seconds: float = Field(default=10.0, gt=0)
    blob_dir: Path = Path(".llmgw/blobs")
    max_concurrent_jobs: int = Field(default=2, gt=0)
    max_dataset_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_dataset_lines: int = Field(default=1_000_000, gt=0)
    min_dataset_lines: int = Field(default=1, gt=0)
    default_max_example_tokens: int = Field(default=65_536, gt=0)
    default_backend: str = "simulated"
    topic: str = "llmgw.finetuning.v1"
    usage_topic: str = "llmgw.usage.v1"
    relay_poll_interval_seconds: float = Field(default=1.0, gt=0)
    relay_retry_seconds: float = Field(default=2.0, gt=0)
    watch_poll_interval_seconds: float = Field(default=0.5, gt=0)
    simulated: SimulatedBackendSettings = SimulatedBackendSettings()
    openai: OpenAIBackendSettings = OpenAIBackendSettings()


class FineTuningSettings(Settings):
    """Everything the ``finetuning`` process needs to start."""

    service: str = "finetuning"
    finetuning: FineTuningSection = FineTuningSection()

    @classmethod
    def of(cls, settings: Settings) -> FineTuningSettings:
        """``settings`` as FineTuningSettings (defaults for the section if absent)."""
        if isinstance(settings, FineTuningSettings):
            return settings
        return cls.model_validate(settings.model_dump())
