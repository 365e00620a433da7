"""The ``models`` process: its gRPC services on the kernel's server bootstrap."""

from __future__ import annotations

from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, grpc_service


def build(settings: Settings) -> ServiceApp:
    """The models process.

    The generated base servicer answers UNIMPLEMENTED for every method not
    overridden yet, while health, reflection and the API surface are live.
    """
    return ServiceApp(
        name="models",
        services=(
            grpc_service(
                models_pb2.DESCRIPTOR,
                "ModelRegistryService",
                models_pb2_grpc.add_ModelRegistryServiceServicer_to_server,
                models_pb2_grpc.ModelRegistryServiceServicer(),  # type: ignore[abstract]
            ),
        ),
    )


plugin = ServicePlugin(name="models", default_port=50053, build=build)
