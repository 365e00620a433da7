"""The ``gateway`` process: the edge every client calls, and the admin API.

See :class:`gateway.edge.Gateway` for what it is made of,
:class:`gateway.admin.runtime.SecurityRuntime` for keys, policies, the admin API
and audit, and :mod:`gateway.settings` for its configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from gateway.admin.runtime import SecurityRuntime
from gateway.edge import Gateway
from gateway.settings import GatewaySettings
from llmgw.admin.v1 import admin_pb2, admin_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, ServiceRegistration, grpc_service


def admin_service() -> ServiceRegistration:
    """The admin API of a gateway with security disabled: every method is UNIMPLEMENTED."""
    return grpc_service(
        admin_pb2.DESCRIPTOR,
        "AdminService",
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
        admin_pb2_grpc.AdminServiceServicer(),  # type: ignore[abstract]
    )


def build(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> ServiceApp:
    """The gateway process for ``settings`` (its metrics go to ``registry``, or a new one);
    ``env`` is where Kafka SASL variables are read (default: the process environment)."""
    gateway_settings = GatewaySettings.of(settings)
    metrics = registry if registry is not None else CollectorRegistry()
    if not gateway_settings.gateway.security.enabled:
        return Gateway(gateway_settings, metrics, own_services=(admin_service(),)).app()
    security = SecurityRuntime(gateway_settings, metrics, dict(os.environ) if env is None else env)
    return Gateway(gateway_settings, metrics, security=security).app()


plugin = ServicePlugin(
    name="gateway", default_port=50051, build=build, settings_model=GatewaySettings
)
