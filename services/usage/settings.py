"""Settings of the ``usage`` process: the kernel's plus a ``pipeline`` section.

Environment variables reach it as ``LLMGW_PIPELINE__GROUP_ID``,
``LLMGW_PIPELINE__MAX_BATCH_RECORDS``...
"""

from __future__ import annotations

from pydantic import Field

from services.kernel.config import Section, Settings


class PipelineSettings(Section):
    """The Kafka consumer of usage and audit events and the budgets it feeds.

    Every replica of the usage process joins ``group_id``; the partitions of
    the two topics are shared among them. Malformed records are copied to
    ``dead_letter_topic``. ``spend_namespace`` is the spend ledger's namespace
    in Redis (the gateway's budget filter must use the same one). The ids of
    applied events are kept ``processed_retention_hours``: keep that longer than
    the topics' retention, or a replay older than it would count again.
    """

    usage_topic: str = "llmgw.usage.v1"
    audit_topic: str = "llmgw.audit.v1"
    dead_letter_topic: str = "llmgw.usage.deadletter.v1"
    group_id: str = "llmgw-usage"
    max_batch_records: int = Field(default=500, ge=1, le=5000)
    poll_timeout_ms: int = Field(default=500, ge=1)
    session_timeout_ms: int = Field(default=10_000, ge=1)
    heartbeat_interval_ms: int = Field(default=3_000, ge=1)
    commit_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_initial_seconds: float = Field(default=0.2, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)
    spend_namespace: str = "llmgw"
    processed_retention_hours: float = Field(default=192.0, gt=24)


class UsageSettings(Settings):
    """Everything the ``usage`` process needs to start."""

    service: str = "usage"
    pipeline: PipelineSettings = PipelineSettings()

    @classmethod
    def of(cls, settings: Settings) -> UsageSettings:
        """``settings`` as UsageSettings (defaults for the pipeline section if absent)."""
        if isinstance(settings, UsageSettings):
            return settings
        return cls.model_validate(settings.model_dump())
