"""The router's tunables, as one frozen object passed in at construction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """How the router retries, backs off, cools deployments down and weighs latency.

    * ``max_retries``: retries within a route when its group sets none (models
      called by name have no group, so this is their retry count).
    * ``backoff_base_seconds`` / ``backoff_max_seconds``: full-jitter exponential
      backoff; retry ``n`` (from 0) waits ``uniform(0, min(max, base * 2**n))``,
      and never less than the ``retry_after_seconds`` the failed deployment asked for.
    * ``cooldown_failures`` consecutive failures of one deployment (across all
      replicas sharing a Redis) put it in cooldown for ``cooldown_seconds``;
      failures older than ``failure_window_seconds`` are forgotten.
    * ``health_cache_seconds``: how long a replica trusts what it last read from
      Redis about a deployment's cooldown (0 reads on every request).
    * ``latency_ewma_alpha``: weight of the newest sample in the moving averages
      of latency and time to first token (0 < alpha <= 1).
    * ``cost_output_tokens_estimate``: output tokens the cost-based strategy
      assumes when the request sets no ``max_output_tokens``.
    * ``redis_key_prefix``: prefix of every Redis key the router writes.
    * ``redis_retry_seconds``: after a Redis error, how long a replica keeps its
      deployment health in process before trying Redis again.
    """

    max_retries: int = 2
    backoff_base_seconds: float = 0.25
    backoff_max_seconds: float = 8.0
    cooldown_failures: int = 3
    cooldown_seconds: float = 30.0
    failure_window_seconds: float = 60.0
    health_cache_seconds: float = 1.0
    latency_ewma_alpha: float = 0.2
    cost_output_tokens_estimate: int = 256
    redis_key_prefix: str = "llmgw:routing:"
    redis_retry_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base_seconds < 0 or self.backoff_max_seconds < 0:
            raise ValueError("backoff times must be >= 0")
        if self.cooldown_failures < 1:
            raise ValueError("cooldown_failures must be >= 1")
        if self.cooldown_seconds <= 0 or self.failure_window_seconds <= 0:
            raise ValueError("cooldown_seconds and failure_window_seconds must be > 0")
        if not 0.0 < self.latency_ewma_alpha <= 1.0:
            raise ValueError("latency_ewma_alpha must be within (0, 1]")
