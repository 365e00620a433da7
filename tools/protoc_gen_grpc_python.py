"""A protoc plugin that runs the gRPC Python generator bundled in grpcio-tools.

grpcio-tools ships the generator only inside its ``grpc_tools.protoc``
module, not as a ``protoc-gen-grpc_python`` executable, so ``buf generate``
cannot call it directly. This plugin speaks the plugin protocol on
stdin/stdout: it writes the request's files to a descriptor set, runs
``grpc_tools.protoc --descriptor_set_in=... --grpc_python_out=...`` and
returns the produced files. Used by buf.gen.yaml; tools/gen_protos.py calls
grpc_tools directly and produces the same output.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Answer one plugin request with the generated ``*_pb2_grpc.py`` files."""
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory(prefix="grpc-python-plugin-") as work:
        root = Path(work)
        descriptor_file = root / "request.binpb"
        file_set = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        descriptor_file.write_bytes(file_set.SerializeToString())
        out_dir = root / "out"
        out_dir.mkdir()
        options = f"{request.parameter}:" if request.parameter else ""
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptor_file}",
            f"--grpc_python_out={options}{out_dir}",
            *request.file_to_generate,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            response.error = result.stderr or f"grpc_tools.protoc exited {result.returncode}"
            return response
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                response.file.add(
                    name=path.relative_to(out_dir).as_posix(),
                    content=path.read_text(encoding="utf-8"),
                )
    return response


def main() -> int:
    """Read a CodeGeneratorRequest from stdin and write the response to stdout."""
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
