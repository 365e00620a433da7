"""Real gateways with security on: a KernelServer per gateway, SQL, a raw upstream.

:func:`secure_gateway` serves one gateway (filters ``authn`` and ``authz`` in
front of a raw inference replica) whose admin API and key cache live in
``database_url``. :func:`admin_key` reads the bootstrap key it wrote. Errors are
read with :mod:`tests.integration.models.rpc_errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message
from grpc import aio
from prometheus_client import CollectorRegistry

from gateway.admin.runtime import SecurityRuntime
from gateway.auth.tokens import JwtSettings
from gateway.edge import Gateway
from gateway.settings import (
    ClusterSettings,
    FilterSettings,
    GatewaySection,
    GatewaySettings,
    HealthCheckSettings,
    RouteMatch,
    RouteSettings,
    SecuritySettings,
)
from llmgw.admin.v1 import admin_pb2_grpc
from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.kernel.config import KafkaSettings, MetricsSettings, ServerSettings
from services.kernel.server import KernelServer
from tests.unit.gateway.raw_upstream import INFERENCE

SECURE_FILTERS = (FilterSettings(name="authn"), FilterSettings(name="authz"))


@dataclass
class EventLog:
    """Events published by the gateway, as (topic, event), in order."""

    published: list[tuple[str, Message]] = field(default_factory=list)

    async def publish(self, topic: str, event: Message, key: bytes | None = None) -> None:
        """Keep ``event``."""
        self.published.append((topic, event))


@dataclass
class SecureGateway:
    """A served gateway with its admin stub and security runtime."""

    server: KernelServer
    channel: aio.Channel
    security: SecurityRuntime
    events: EventLog
    gateway: Gateway

    @property
    def http_base_url(self) -> str:
        """The OpenAI-compatible HTTP edge's ``/v1``."""
        assert self.gateway.http is not None
        return f"http://127.0.0.1:{self.gateway.http.port}/v1"

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        """A stub of the gateway's admin API."""
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def complete(self) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
        """A raw-bytes Complete callable through the gateway."""
        call: aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            f"/{INFERENCE}/Complete"
        )
        return call


def completion(model: str = "chat") -> bytes:
    """A serialized CompleteRequest naming ``model``."""
    request = inference_pb2.CompleteRequest(
        completion=inference_pb2.CompletionRequest(
            model=model,
            messages=[
                inference_pb2.Message(
                    role=common_pb2.ROLE_USER, content=[inference_pb2.ContentPart(text="hi")]
                )
            ],
        )
    )
    return request.SerializeToString()


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    """Metadata carrying ``secret`` as a bearer credential."""
    return (("authorization", f"Bearer {secret}"),)


def admin_key(key_file: Path) -> str:
    """The bootstrap key written to ``key_file``."""
    return key_file.read_text(encoding="utf-8").strip()


@asynccontextmanager
async def secure_gateway(
    database_url: str,
    upstreams: Sequence[str],
    key_file: Path,
    *,
    jwt: JwtSettings | None = None,
    kafka_bootstrap: str = "",
    audit_topic: str = "llmgw.audit.v1",
    poll_interval_seconds: float = 0.1,
    filters: tuple[FilterSettings, ...] = SECURE_FILTERS,
    redis_url: str | None = None,
    spend_namespace: str = "llmgw",
    services: Sequence[str] = (INFERENCE,),
) -> AsyncIterator[SecureGateway]:
    """Serve a gateway with security on ``database_url`` until the block exits.

    Events go to an in-memory log unless ``kafka_bootstrap`` names a broker. Calls of
    each of ``services`` (full gRPC names) are routed to ``upstreams``.
    """
    settings = GatewaySettings(
        server=ServerSettings(port=0, grace_period_seconds=0),
        metrics=MetricsSettings(enabled=False),
        database_url=database_url,
        redis_url=redis_url,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        gateway=GatewaySection(
            filters=filters,
            clusters={
                "upstream": ClusterSettings(
                    endpoints=tuple(upstreams),
                    health_check=HealthCheckSettings(interval_seconds=0.1, timeout_seconds=0.5),
                )
            },
            routes=tuple(
                RouteSettings(match=RouteMatch(service=service), cluster="upstream")
                for service in services
            ),
            security=SecuritySettings(
                poll_interval_seconds=poll_interval_seconds,
                jwt=jwt,
                bootstrap_key_file=key_file,
                audit_topic=audit_topic,
                spend_namespace=spend_namespace,
            ),
        ),
    )
    registry = CollectorRegistry()
    events = EventLog()
    security = SecurityRuntime(
        settings, registry, {}, publisher=None if kafka_bootstrap else events
    )
    gateway = Gateway(settings, registry, security=security)
    server = KernelServer(gateway.app(), settings.server, registry)
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield SecureGateway(server, channel, security, events, gateway)
    finally:
        await channel.close(None)
        await server.drain(grace_seconds=0)
