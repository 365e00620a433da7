"""The ``gateway`` process: the edge every client calls, and the admin API.

See :class:`gateway.edge.Gateway` for what it is made of and
:mod:`gateway.settings` for its configuration.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.edge import Gateway
from gateway.settings import GatewaySettings
from llmgw.admin.v1 import admin_pb2, admin_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, ServiceRegistration, grpc_service


def admin_service() -> ServiceRegistration:
    """The admin API; methods not yet served answer UNIMPLEMENTED."""
    return grpc_service(
        admin_pb2.DESCRIPTOR,
        "AdminService",
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
        admin_pb2_grpc.AdminServiceServicer(),  # type: ignore[abstract]
    )


def build(settings: Settings, registry: CollectorRegistry | None = None) -> ServiceApp:
    """The gateway process for ``settings`` (its metrics go to ``registry``, or a new one)."""
    gateway = Gateway(
        GatewaySettings.of(settings),
        registry if registry is not None else CollectorRegistry(),
        own_services=(admin_service(),),
    )
    return gateway.app()


plugin = ServicePlugin(
    name="gateway", default_port=50051, build=build, settings_model=GatewaySettings
)
