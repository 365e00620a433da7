"""Settings of the ``gateway`` process: the kernel's plus the ``gateway:`` section.

The section describes the edge the way Envoy does, in four parts (plus the HTTP
edge, and ``security``, see :class:`SecuritySettings`)::

    gateway:
      listener:            # TLS of the gRPC listener (host and port are the kernel's ``server``)
        tls: {cert_file: server.pem, key_file: server.key, client_ca_file: clients-ca.pem}
      http:                # the OpenAI-compatible HTTP edge on its own port
        port: 8080
        max_body_bytes: 16777216
      filters:             # the chain, in order; each filter by name with its own config
        - name: access_log
        - name: metrics
      clusters:            # upstreams by name: endpoints, balancing, health, retries, TLS
        inference:
          endpoints: ["127.0.0.1:50052"]
          lb_policy: least_request
      routes:              # first match wins: gRPC service (exact) and method-name prefix
        - match: {service: llmgw.inference.v1.InferenceService}
          cluster: inference
          timeout_seconds: 300

Like every settings model they are frozen and read once at start (see
:mod:`services.kernel.config`). The defaults route every llmgw API to the ports
``llmgw run`` gives the services on one laptop.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from gateway.auth.tokens import JwtSettings
from services.kernel.config import Section, Settings


class ListenerTls(Section):
    """TLS of the listener. Files are re-read when they change (checked per handshake).

    With ``client_ca_file`` every client must present a certificate signed by it (mTLS).
    """

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class ListenerSettings(Section):
    """The gateway's listener; its address is ``server.host``/``server.port``."""

    tls: ListenerTls | None = None


class HttpSettings(Section):
    """The OpenAI-compatible HTTP listener (see :mod:`gateway.http`).

    It serves ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``, ``/v1/files``
    and ``/v1/fine_tuning/jobs`` as the same gRPC calls, through the same filter chain,
    routes and clusters, in process.
    ``port`` 0 (the default, as for metrics) picks a free port; ``llmgw run`` gives
    it the gRPC port + 2000, the Helm chart 8080. A request body over ``max_body_bytes`` is refused
    with 413; ``keepalive_seconds`` is how long an idle connection is kept open;
    ``shutdown_grace_seconds`` is what in-flight requests get at stop.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    keepalive_seconds: float = Field(default=75.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    forwarded_headers: tuple[str, ...] = ("authorization", "x-request-id", "user-agent")
    """Request headers that become the call's metadata, under the same (lower-case) names."""

    @field_validator("forwarded_headers")
    @classmethod
    def _lower_case(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(name.lower() for name in names)


class FilterSettings(Section):
    """One filter of the chain: its registered name and its own config mapping."""

    name: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)


class LbPolicy(StrEnum):
    """How a cluster picks one of its available endpoints for a call."""

    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"


class DnsDiscovery(Section):
    """Endpoints from a DNS name: every address it resolves to, re-resolved periodically.

    This is what a Kubernetes headless service gives: one A record per ready pod.
    """

    name: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    refresh_seconds: float = Field(default=5.0, gt=0)
    family: str = Field(default="ipv4", pattern="^(ipv4|ipv6|any)$")


class HealthCheckSettings(Section):
    """Active health checking with ``grpc.health.v1.Health/Check``.

    An endpoint leaves the rotation after ``unhealthy_threshold`` failed checks in a
    row and returns after ``healthy_threshold`` good ones. ``service`` is the name
    asked about (``""``: the whole server).
    """

    enabled: bool = True
    interval_seconds: float = Field(default=5.0, gt=0)
    timeout_seconds: float = Field(default=1.0, gt=0)
    unhealthy_threshold: int = Field(default=2, ge=1)
    healthy_threshold: int = Field(default=1, ge=1)
    service: str = ""


class OutlierDetectionSettings(Section):
    """Passive ejection: an endpoint whose calls fail ``consecutive_failures`` times in a
    row with one of ``failure_codes`` is taken out for ``base_ejection_seconds``, doubled
    for each further ejection without a success in between, at most
    ``max_ejection_seconds``; never more than ``max_ejection_percent`` of the endpoints
    (but always at least one) are out at once. When every healthy endpoint is ejected,
    calls go to the ejected ones rather than failing (Envoy's panic mode).
    """

    enabled: bool = True
    consecutive_failures: int = Field(default=5, ge=1)
    failure_codes: tuple[str, ...] = ("UNAVAILABLE",)
    base_ejection_seconds: float = Field(default=10.0, gt=0)
    max_ejection_seconds: float = Field(default=300.0, gt=0)
    max_ejection_percent: float = Field(default=50.0, ge=0, le=100)


class RetryBudgetSettings(Section):
    """Retries in flight may be at most ``budget_percent`` of the cluster's active calls,
    or ``min_retry_concurrency``, whichever is larger (Envoy's retry budget)."""

    budget_percent: float = Field(default=20.0, ge=0, le=100)
    min_retry_concurrency: int = Field(default=3, ge=0)


class UpstreamTls(Section):
    """TLS to the endpoints of a cluster; with ``cert_file`` and ``key_file`` also mTLS.

    ``server_name`` is the name checked against the endpoints' certificates (needed
    when endpoints are IP addresses). Changed files rebuild the cluster's channels.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> UpstreamTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class ClusterSettings(Section):
    """One upstream service: where its endpoints are and how calls are spread over them."""

    endpoints: tuple[str, ...] = ()
    dns: DnsDiscovery | None = None
    lb_policy: LbPolicy = LbPolicy.ROUND_ROBIN
    connect_timeout_seconds: float = Field(default=1.0, gt=0)
    reconnect_backoff_max_seconds: float = Field(default=2.0, gt=0)
    health_check: HealthCheckSettings = HealthCheckSettings()
    outlier_detection: OutlierDetectionSettings = OutlierDetectionSettings()
    retry_budget: RetryBudgetSettings = RetryBudgetSettings()
    tls: UpstreamTls | None = None
    tls_reload_seconds: float = Field(default=5.0, gt=0)
    channel_close_grace_seconds: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> ClusterSettings:
        if bool(self.endpoints) == (self.dns is not None):
            raise ValueError("a cluster needs either endpoints or dns, not both")
        for address in self.endpoints:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"endpoint {address!r} is not host:port")
        return self


class RouteMatch(Section):
    """Which calls a route takes: the full gRPC service name and a method-name prefix."""

    service: str = Field(min_length=1, pattern=r"^[A-Za-z_][\w.]*$")
    method_prefix: str = ""


class RouteSettings(Section):
    """Where matching calls go, with their timeout and how often they may be retried.

    ``timeout_seconds`` bounds the whole call (a shorter client deadline wins);
    ``retries`` counts attempts on other endpoints after the first, made only for
    calls that never reached an upstream.
    """

    match: RouteMatch
    cluster: str = Field(min_length=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int = Field(default=2, ge=0)


def _local_cluster(port: int) -> ClusterSettings:
    return ClusterSettings(endpoints=(f"127.0.0.1:{port}",))


def _local_route(service: str, cluster: str) -> RouteSettings:
    return RouteSettings(match=RouteMatch(service=service), cluster=cluster)


class SecuritySettings(Section):
    """API keys, JWTs, the admin API and audit events.

    With ``enabled`` the gateway keeps projects, API keys, budgets and rate-limit
    policies in SQL (``database_url``), serves ``llmgw.admin.v1.AdminService``,
    holds them all in memory for the ``authn`` and ``authz`` filters and polls the
    database every ``poll_interval_seconds`` for changes (so a revocation reaches
    every replica within about that time). ``jwt`` also accepts JWTs.
    ``bootstrap_key_file``: when set and no API key exists yet, an API key with
    every scope (project ``bootstrap_project``) is created and its secret written
    to this file, readable only by the owner; if the file already holds a key (a
    mounted Secret), that key is installed instead. Refused calls and admin actions are
    published as ``AuditRecorded`` events on ``audit_topic``; at most
    ``audit_buffer_size`` wait, more are dropped and counted. With ``redis_url``,
    ``GetBudget`` adds the current spend from the spend ledger (``spend_namespace``).
    An API key's ``last_used_time`` is stored every ``last_used_flush_seconds``.
    """

    enabled: bool = True
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    jwt: JwtSettings | None = None
    bootstrap_key_file: Path | None = None
    bootstrap_project: str = Field(
        default="default", pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
    )
    audit_topic: str = "llmgw.audit.v1"
    audit_buffer_size: int = Field(default=10_000, ge=1)
    spend_namespace: str = Field(default="llmgw", min_length=1)
    last_used_flush_seconds: float = Field(default=60.0, gt=0)


DEFAULT_FILTERS = (
    FilterSettings(name="access_log"),
    FilterSettings(name="metrics"),
    FilterSettings(name="authn"),
    FilterSettings(name="authz"),
)

DEFAULT_CLUSTERS = {
    "inference": _local_cluster(50052),
    "models": _local_cluster(50053),
    "finetuning": _local_cluster(50054),
    "usage": _local_cluster(50055),
}

DEFAULT_ROUTES = (
    _local_route("llmgw.inference.v1.InferenceService", "inference"),
    _local_route("llmgw.models.v1.ModelRegistryService", "models"),
    _local_route("llmgw.finetuning.v1.FineTuningService", "finetuning"),
    _local_route("llmgw.usage.v1.UsageService", "usage"),
)


class GatewaySection(Section):
    """The ``gateway:`` section: listener, filter chain, clusters, routes and security."""

    listener: ListenerSettings = ListenerSettings()
    http: HttpSettings = HttpSettings()
    filters: tuple[FilterSettings, ...] = DEFAULT_FILTERS
    clusters: dict[str, ClusterSettings] = Field(default_factory=lambda: dict(DEFAULT_CLUSTERS))
    routes: tuple[RouteSettings, ...] = DEFAULT_ROUTES
    security: SecuritySettings = SecuritySettings()

    @model_validator(mode="after")
    def _routes_name_clusters(self) -> GatewaySection:
        for route in self.routes:
            if route.cluster not in self.clusters:
                raise ValueError(f"route to unknown cluster {route.cluster!r}")
        return self


class GatewaySettings(Settings):
    """Everything the ``gateway`` process needs to start."""

    gateway: GatewaySection = GatewaySection()

    @classmethod
    def of(cls, settings: Settings) -> GatewaySettings:
        """``settings`` as gateway settings (the default section when it has none)."""
        if isinstance(settings, GatewaySettings):
            return settings
        return cls.model_validate(settings.model_dump())
