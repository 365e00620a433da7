"""The ``gateway`` process: the edge every client calls, and the admin API."""

from __future__ import annotations

from llmgw.admin.v1 import admin_pb2, admin_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, grpc_service


def build(settings: Settings) -> ServiceApp:
    """The gateway process; admin methods not yet served answer UNIMPLEMENTED."""
    return ServiceApp(
        name="gateway",
        services=(
            grpc_service(
                admin_pb2.DESCRIPTOR,
                "AdminService",
                admin_pb2_grpc.add_AdminServiceServicer_to_server,
                admin_pb2_grpc.AdminServiceServicer(),  # type: ignore[abstract]
            ),
        ),
    )


plugin = ServicePlugin(name="gateway", default_port=50051, build=build)
