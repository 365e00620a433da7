"""Prometheus metrics of the fine-tuning service (``llmgw_finetuning_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from llmgw.finetuning.v1 import finetuning_pb2 as ft


class JobMetrics:
    """Jobs training now, jobs finished by backend and state, and trained tokens."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the metrics in ``registry``."""
        self.running = Gauge(
            "llmgw_finetuning_jobs_running",
            "Jobs holding a training slot",
            ("backend",),
            registry=registry,
        )
        self.finished = Counter(
            "llmgw_finetuning_jobs_finished",
            "Jobs that reached a terminal state",
            ("backend", "state"),
            registry=registry,
        )
        self.trained_tokens = Counter(
            "llmgw_finetuning_trained_tokens",
            "Tokens trained by finished jobs",
            ("backend",),
            registry=registry,
        )

    def job_finished(self, job: ft.Job) -> None:
        """Count a job that reached a terminal state."""
        state = ft.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
        self.finished.labels(job.backend, state).inc()
        self.trained_tokens.labels(job.backend).inc(job.trained_tokens)
