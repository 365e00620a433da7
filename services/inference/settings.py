"""Settings of the ``inference`` process: the kernel's plus routing, cache and usage.

Like every settings model they are frozen and read once at start (see
:mod:`services.kernel.config`); environment variables reach them as
``LLMGW_ROUTING__FILE``, ``LLMGW_ROUTING__REGISTRY_ADDRESS``, ``LLMGW_CACHE__TTL_SECONDS``,
``LLMGW_USAGE__SPOOL_DIR``...
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.kernel.config import Section, Settings

DEFAULT_ROUTING_FILE = Path(__file__).resolve().parents[2] / "config" / "routing.local.yaml"
"""The routing table shipped for one laptop: simulated deployments, plus real
providers whose API key variable is set and whose adapter is installed."""


ROUTING_SOURCE_FIELDS = frozenset(
    {
        "file",
        "registry_address",
        "registry_start_timeout_seconds",
        "registry_reconnect_base_seconds",
        "registry_reconnect_max_seconds",
        "registry_batch_seconds",
    }
)
"""The fields of :class:`RoutingSettings` that say where the table comes from (the
others are the router's tunables)."""


class RoutingSettings(Section):
    """Where the routing table comes from, and the router's tunables (see
    :class:`~services.inference.routing.RoutingOptions`).

    Without ``registry_address`` the table is read once from ``file``. With it, the
    file is not read: the table follows the registry's ``WatchRegistry`` stream
    (see :mod:`services.inference.routing.registry_watch`), and the process starts
    serving only once the first snapshot is applied; when none arrives within
    ``registry_start_timeout_seconds`` the process fails to start rather than serve
    a table the registry does not hold. A lost stream is resumed after a
    full-jitter backoff between ``registry_reconnect_base_seconds`` and
    ``registry_reconnect_max_seconds`` while the last table keeps serving; after a
    table is rebuilt, changes arriving within ``registry_batch_seconds`` are
    applied together by the next rebuild.
    """

    file: Path = DEFAULT_ROUTING_FILE
    registry_address: str | None = None
    registry_start_timeout_seconds: float = Field(default=30.0, gt=0)
    registry_reconnect_base_seconds: float = Field(default=0.1, gt=0)
    registry_reconnect_max_seconds: float = Field(default=5.0, gt=0)
    registry_batch_seconds: float = Field(default=0.05, ge=0)
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
    Events are batched: a batch goes out ``linger_seconds`` after its first event,
    keeping the work off the path of the request that made it.
    """

    topic: str = "llmgw.usage.v1"
    buffer_size: int = Field(default=10_000, gt=0)
    batch_size: int = Field(default=256, gt=0)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    replay_interval_seconds: float = Field(default=1.0, gt=0)
    spool_dir: Path = Path(".llmgw/spool/usage")
    spool_segment_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    linger_seconds: float = Field(default=0.005, ge=0, le=1)


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
