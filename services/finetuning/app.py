"""The ``finetuning`` process: its gRPC services on the kernel's server bootstrap."""

from __future__ import annotations

from llmgw.finetuning.v1 import finetuning_pb2, finetuning_pb2_grpc
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, grpc_service


def build(settings: Settings) -> ServiceApp:
    """The finetuning process.

    The generated base servicer answers UNIMPLEMENTED for every method not
    overridden yet, while health, reflection and the API surface are live.
    """
    return ServiceApp(
        name="finetuning",
        services=(
            grpc_service(
                finetuning_pb2.DESCRIPTOR,
                "FineTuningService",
                finetuning_pb2_grpc.add_FineTuningServiceServicer_to_server,
                finetuning_pb2_grpc.FineTuningServiceServicer(),  # type: ignore[abstract]
            ),
        ),
    )


plugin = ServicePlugin(name="finetuning", default_port=50054, build=build)
