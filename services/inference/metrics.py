"""Prometheus metrics of inference requests, fed from each request's :class:`Outcome`.

Registered into the process's registry (passed in, never a global one). Label
values come from the serving deployment, never from what the caller typed, so
cardinality is bounded by the routing table: ``model`` is the canonical model
that served the request, or the one tried last when it failed (``none`` when
no deployment was tried), and ``provider`` its adapter (``none`` likewise).
``method`` is the RPC name and ``status`` the request's own gRPC code name (for
``Chat``, of one request).

==============================================  =======================================
``llmgw_inference_requests_total``              requests by method, model, provider, status
``llmgw_inference_request_duration_seconds``    latency by method, model, provider, status
``llmgw_inference_time_to_first_token_seconds`` streams, by method, model, provider
``llmgw_inference_time_per_output_token_seconds``  (latency - TTFT) / (output tokens - 1)
``llmgw_inference_tokens_total``                by model, provider, direction (input/output)
``llmgw_inference_cost_nanos_total``            by model, provider, currency
``llmgw_inference_cache_hits_total``            by method, model
``llmgw_inference_upstream_attempts_total``     attempts by model, provider
``llmgw_inference_retries_total``               attempts beyond the first, by model, provider
``llmgw_inference_upstream_errors_total``       failed requests that reached routing, by
                                                model, provider, status
==============================================  =======================================

Retries are ``served_by.attempt_count - 1``: every attempt after the first,
whether it went to the same deployment again or to a fallback. A request served
by a fallback model (``served_by.fallback_from`` set by the router) is counted
under ``llmgw_inference_fallbacks_total`` by requested and serving model.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.inference.outcome import Outcome
from services.kernel.metrics import LATENCY_BUCKETS

NONE = "none"
"""Label value for a request no deployment served."""

TOKEN_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class InferenceMetrics:
    """The inference metrics; an :class:`~services.inference.outcome.OutcomeSink`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric in ``registry``."""
        request_labels = ("method", "model", "provider", "status")
        self.requests = Counter(
            "llmgw_inference_requests_total",
            "Inference requests by method, serving model and provider, and status.",
            request_labels,
            registry=registry,
        )
        self.duration = Histogram(
            "llmgw_inference_request_duration_seconds",
            "Time from receiving an inference request to its result.",
            request_labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "llmgw_inference_time_to_first_token_seconds",
            "Time from receiving a streamed request to its first output.",
            ("method", "model", "provider"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_per_output_token = Histogram(
            "llmgw_inference_time_per_output_token_seconds",
            "Generation time per output token after the first.",
            ("method", "model", "provider"),
            buckets=TOKEN_TIME_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "llmgw_inference_tokens_total",
            "Tokens by direction (input, output).",
            ("model", "provider", "direction"),
            registry=registry,
        )
        self.cost = Counter(
            "llmgw_inference_cost_nanos_total",
            "Cost of requests in nanos of the currency.",
            ("model", "provider", "currency"),
            registry=registry,
        )
        self.cache_hits = Counter(
            "llmgw_inference_cache_hits_total",
            "Requests answered from the response cache.",
            ("method", "model"),
            registry=registry,
        )
        self.attempts = Counter(
            "llmgw_inference_upstream_attempts_total",
            "Upstream attempts, retries and fallbacks included.",
            ("model", "provider"),
            registry=registry,
        )
        self.retries = Counter(
            "llmgw_inference_retries_total",
            "Upstream attempts beyond the first of a request.",
            ("model", "provider"),
            registry=registry,
        )
        self.fallbacks = Counter(
            "llmgw_inference_fallbacks_total",
            "Requests moved from one model to a fallback model.",
            ("from_model", "to_model"),
            registry=registry,
        )
        self.upstream_errors = Counter(
            "llmgw_inference_upstream_errors_total",
            "Requests that failed after routing chose a deployment.",
            ("model", "provider", "status"),
            registry=registry,
        )
        self._children: dict[tuple[str, str, str, str], _Children] = {}

    def fallback(self, from_model: str, to_model: str) -> None:
        """Count one fallback from ``from_model`` to ``to_model`` (canonical names)."""
        self.fallbacks.labels(from_model or NONE, to_model or NONE).inc()

    def observe(self, outcome: Outcome) -> None:
        """Count and time one finished request."""
        served = outcome.served_by
        model = served.model or NONE
        provider = served.provider or NONE
        status = outcome.status.name
        key = (outcome.request.method, model, provider, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children(self, *key)
        children.requests.inc()
        children.duration.observe(outcome.latency_seconds)
        usage = outcome.usage
        ttft = outcome.time_to_first_token_seconds
        if ttft is not None:
            children.time_to_first_token.observe(ttft)
            if usage.output_tokens > 1 and not outcome.cached:
                per_token = (outcome.latency_seconds - ttft) / (usage.output_tokens - 1)
                children.time_per_output_token.observe(per_token)
        if usage.input_tokens:
            children.input_tokens.inc(usage.input_tokens)
        if usage.output_tokens:
            children.output_tokens.inc(usage.output_tokens)
        if outcome.cost.total_nanos:
            currency = outcome.cost.currency_code or NONE
            self.cost.labels(model, provider, currency).inc(outcome.cost.total_nanos)
        if outcome.cached:
            children.cache_hits.inc()
        elif served.attempt_count:
            children.attempts.inc(served.attempt_count)
            if served.attempt_count > 1:
                children.retries.inc(served.attempt_count - 1)
        if outcome.error is not None and served.provider:
            children.upstream_errors.inc()
        if served.fallback_from:
            self.fallback(served.fallback_from, model)


class _Children:
    """The metric children of one (method, model, provider, status), looked up once."""

    __slots__ = (
        "attempts",
        "cache_hits",
        "duration",
        "input_tokens",
        "output_tokens",
        "requests",
        "retries",
        "time_per_output_token",
        "time_to_first_token",
        "upstream_errors",
    )

    def __init__(
        self, metrics: InferenceMetrics, method: str, model: str, provider: str, status: str
    ) -> None:
        self.requests = metrics.requests.labels(method, model, provider, status)
        self.duration = metrics.duration.labels(method, model, provider, status)
        self.time_to_first_token = metrics.time_to_first_token.labels(method, model, provider)
        self.time_per_output_token = metrics.time_per_output_token.labels(method, model, provider)
        self.input_tokens = metrics.tokens.labels(model, provider, "input")
        self.output_tokens = metrics.tokens.labels(model, provider, "output")
        self.cache_hits = metrics.cache_hits.labels(method, model)
        self.attempts = metrics.attempts.labels(model, provider)
        self.retries = metrics.retries.labels(model, provider)
        self.upstream_errors = metrics.upstream_errors.labels(model, provider, status)
