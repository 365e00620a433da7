"""The ``usage`` process: its gRPC services on the kernel's server bootstrap."""

from __future__ import annotations

from llmgw.usage.v1 import usage_pb2, usage_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, grpc_service


def build(settings: Settings) -> ServiceApp:
    """The usage process.

    The generated base servicer answers UNIMPLEMENTED for every method not
    overridden yet, while health, reflection and the API surface are live.
    """
    return ServiceApp(
        name="usage",
        services=(
            grpc_service(
                usage_pb2.DESCRIPTOR,
                "UsageService",
                usage_pb2_grpc.add_UsageServiceServicer_to_server,
                usage_pb2_grpc.UsageServiceServicer(),  # type: ignore[abstract]
            ),
        ),
    )


plugin = ServicePlugin(name="usage", default_port=50055, build=build)
