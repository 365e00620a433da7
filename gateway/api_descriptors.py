"""The llmgw APIs the gateway routes to, loaded into the protobuf descriptor pool.

Importing this module makes the default pool know every llmgw API service, so
server reflection on the gateway describes the upstream APIs and the proxy knows
the shape of each of their methods.
"""

from __future__ import annotations

from google.protobuf.descriptor import FileDescriptor

from llmgw.finetuning.v1 import finetuning_pb2
from llmgw.inference.v1 import inference_pb2
from llmgw.models.v1 import models_pb2
from llmgw.usage.v1 import usage_pb2

API_FILES: tuple[FileDescriptor, ...] = (
    inference_pb2.DESCRIPTOR,
    models_pb2.DESCRIPTOR,
    finetuning_pb2.DESCRIPTOR,
    usage_pb2.DESCRIPTOR,
)
"""The proto files of the upstream APIs."""
