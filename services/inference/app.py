"""The ``inference`` process: its gRPC services on the kernel's server bootstrap."""

from __future__ import annotations

from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, grpc_service


def build(settings: Settings) -> ServiceApp:
    """The inference process.

    The generated base servicer answers UNIMPLEMENTED for every method not
    overridden yet, while health, reflection and the API surface are live.
    """
    return ServiceApp(
        name="inference",
        services=(
            grpc_service(
                inference_pb2.DESCRIPTOR,
                "InferenceService",
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                inference_pb2_grpc.InferenceServiceServicer(),  # type: ignore[abstract]
            ),
        ),
    )


plugin = ServicePlugin(name="inference", default_port=50052, build=build)
