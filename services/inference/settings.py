"""Settings of the ``inference`` process: the kernel's plus routing, cache and usage.

Like every settings model they are frozen and read once at start (see
:mod:`services.kernel.config`); environment variables reach them as
``LLMGW_ROUTING__FILE``, ``LLMGW_CACHE__TTL_SECONDS``, ``LLMGW_USAGE__SPOOL_DIR``...
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.kernel.config import Section, Settings

DEFAULT_ROUTING_FILE = Path(__file__).resolve().parents[2] / "config" / "routing.local.yaml"
"""The routing table shipped for one laptop: simulated deployments, plus real
providers whose API key variable is set and whose adapter is installed."""


class RoutingSettings(Section):
    """Where the routing table comes from until the registry pushes it, and the
    router's tunables (see :class:`~services.inference.routing.RoutingOptions`)."""

    file: Path = DEFAULT_ROUTING_FILE
    max_retries: int = Field(default=2, ge=0)
    backoff_base_seconds: float = Field(default=0.25, ge=0)
    backoff_max_seconds: float = Field(default=8.0, ge=0)
    cooldown_failures: int = Field(default=3, ge=1)
    cooldown_seconds: float = Field(default=30.0, gt=0)
    failure_window_seconds: float = Field(default=60.0, gt=0)
    health_cache_seconds: float = Field(default=1.0, ge=0)
    latency_ewma_alpha: float = Field(default=0.2, gt=0, le=1)
    cost_output_tokens_estimate: int = Field(default=256, ge=0)
    redis_key_prefix: str = "llmgw:routing:"


class CacheSettings(Section):
    """The exact-match response cache; it needs ``redis_url`` and is off without it."""

    enabled: bool = True
    ttl_seconds: float = Field(default=3600.0, gt=0)
    key_prefix: str = "llmgw:cache:v1:"


class UsageSettings(Section):
    """Publishing of one ``UsageRecorded`` event per request.

    ``buffer_size`` bounds the events waiting in memory; when the broker does not
    take them within ``publish_timeout_seconds`` they go to ``spool_dir`` on disk
    and are replayed every ``replay_interval_seconds`` until the broker is back.
    """

    topic: str = "llmgw.usage.v1"
    buffer_size: int = Field(default=10_000, gt=0)
    batch_size: int = Field(default=256, gt=0)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    replay_interval_seconds: float = Field(default=1.0, gt=0)
    spool_dir: Path = Path(".llmgw/spool/usage")
    spool_segment_bytes: int = Field(default=8 * 1024 * 1024, gt=0)


class InferenceSettings(Settings):
    """Everything the ``inference`` process needs to start."""

    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = CacheSettings()
    usage: UsageSettings = UsageSettings()

    @classmethod
    def of(cls, settings: Settings) -> InferenceSettings:
        """``settings`` as inference settings (defaults for the sections it lacks)."""
        if isinstance(settings, InferenceSettings):
            return settings
        return cls.model_validate(settings.model_dump())
