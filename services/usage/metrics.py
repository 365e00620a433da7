"""Prometheus metrics of the usage pipeline, registered on the process's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.kernel.metrics import LATENCY_BUCKETS


class PipelineMetrics:
    """Events applied, duplicates skipped, dead letters, batch timing and consumer lag.

    The rate of ``llmgw_usage_events_processed_total`` is the processing rate;
    ``llmgw_usage_consumer_lag`` is, per assigned partition, how many records
    the broker holds beyond this replica's position.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "llmgw_usage_events_processed_total",
            "Events applied to the usage tables (each counted once).",
            ("topic",),
            registry=registry,
        )
        self.duplicates = Counter(
            "llmgw_usage_duplicates_skipped_total",
            "Delivered events skipped because their id was applied before.",
            ("topic",),
            registry=registry,
        )
        self.dead_lettered = Counter(
            "llmgw_usage_dead_lettered_total",
            "Malformed records copied to the dead-letter topic.",
            ("topic", "reason"),
            registry=registry,
        )
        self.batch_failures = Counter(
            "llmgw_usage_batch_failures_total",
            "Batches that failed and will be retried.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "llmgw_usage_batch_seconds",
            "Time to apply one batch, SQL and budgets included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "llmgw_usage_consumer_lag",
            "Records on the broker beyond this consumer's position, per partition.",
            ("topic", "partition"),
            registry=registry,
        )
