"""Contract tests of the protobuf API: generated code, wire round trips, docs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, struct_pb2
from google.rpc import code_pb2, status_pb2

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
GEN_PROTOS = REPO_ROOT / "tools" / "gen_protos.py"

# Field numbers of descriptor.proto, used to address elements in SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE, _FILE_EXTENSION = 4, 5, 6, 7
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_EXTENSION, _MESSAGE_ONEOF = 2, 3, 4, 6, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

Element = tuple[str, tuple[int, ...]]


def _run_gen_protos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN_PROTOS), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_generated_code_matches_protos() -> None:
    result = _run_gen_protos("--check")
    assert result.returncode == 0, (
        f"llmgw/ is out of date; run `python tools/gen_protos.py`\n{result.stdout}{result.stderr}"
    )


def _completion_request() -> inference_pb2.CompletionRequest:
    parameters = struct_pb2.Struct()
    parameters.update(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }
    )
    return inference_pb2.CompletionRequest(
        request_id="req-1",
        model="support-bot@production",
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_SYSTEM,
                content=[inference_pb2.ContentPart(text="Answer briefly.")],
            ),
            inference_pb2.Message(
                role=common_pb2.ROLE_USER,
                content=[
                    inference_pb2.ContentPart(text="What is the weather here?"),
                    inference_pb2.ContentPart(
                        image_url=inference_pb2.ImageUrl(
                            url="https://example.com/sky.png",
                            detail=inference_pb2.IMAGE_DETAIL_LOW,
                        )
                    ),
                ],
            ),
        ],
        tools=[
            inference_pb2.Tool(
                function=inference_pb2.FunctionDefinition(
                    name="get_weather",
                    description="Current weather of a city.",
                    parameters=parameters,
                )
            )
        ],
        tool_choice=inference_pb2.ToolChoice(mode=inference_pb2.TOOL_CHOICE_MODE_AUTO),
        sampling=inference_pb2.SamplingParameters(
            temperature=0.2, max_output_tokens=256, stop=["\n\n"], seed=7
        ),
        options=inference_pb2.RequestOptions(
            bypass_cache=True, tags={"team": "search"}, end_user_id="user-42"
        ),
    )


def test_chat_request_round_trip() -> None:
    start = inference_pb2.ChatRequest(start=_completion_request())
    cancel = inference_pb2.ChatRequest(cancel=inference_pb2.ChatCancel(request_id="req-1"))

    for message in (start, cancel):
        decoded = inference_pb2.ChatRequest.FromString(message.SerializeToString())
        assert decoded == message

    decoded_start = inference_pb2.ChatRequest.FromString(start.SerializeToString())
    assert decoded_start.WhichOneof("action") == "start"
    assert decoded_start.start.sampling.HasField("temperature")
    assert not decoded_start.start.sampling.HasField("top_p")
    tool = decoded_start.start.tools[0].function
    assert tool.parameters["required"] == ["city"]
    assert decoded_start.start.messages[1].content[1].WhichOneof("part") == "image_url"


def test_chat_response_round_trip() -> None:
    delta = inference_pb2.ChatResponse(
        request_id="req-1",
        delta=inference_pb2.CompletionChunk(
            role=common_pb2.ROLE_ASSISTANT,
            tool_call_deltas=[
                inference_pb2.ToolCallDelta(
                    index=0, id="call-1", function_name="get_weather", arguments_delta='{"ci'
                )
            ],
        ),
    )
    final = inference_pb2.ChatResponse(
        request_id="req-1",
        final=inference_pb2.CompletionResult(
            request_id="req-1",
            finish_reason=common_pb2.FINISH_REASON_CANCELLED,
            usage=common_pb2.Usage(input_tokens=12, output_tokens=3, total_tokens=15),
            cost=common_pb2.Cost(currency_code="USD", total_nanos=4_200),
            served_by=common_pb2.ServingInfo(provider="simulated", deployment_id="sim-1"),
            error=status_pb2.Status(code=code_pb2.CANCELLED, message="cancelled by client"),
        ),
    )

    for message in (delta, final):
        decoded = inference_pb2.ChatResponse.FromString(message.SerializeToString())
        assert decoded == message

    decoded_final = inference_pb2.ChatResponse.FromString(final.SerializeToString())
    assert decoded_final.WhichOneof("event") == "final"
    assert decoded_final.final.error.code == code_pb2.CANCELLED
    assert decoded_final.final.usage.total_tokens == 15


def test_inference_service_shape() -> None:
    service = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]
    streaming = {
        method.name: (method.client_streaming, method.server_streaming)
        for method in service.methods
    }
    assert streaming == {
        "Complete": (False, False),
        "StreamComplete": (False, True),
        "Chat": (True, True),
        "Embed": (False, False),
        "CountTokens": (False, False),
        "ListModels": (False, False),
    }
    assert hasattr(inference_pb2_grpc, "InferenceServiceStub")
    assert hasattr(inference_pb2_grpc, "InferenceServiceServicer")


def test_every_event_has_metadata_and_topic() -> None:
    events = [
        message
        for message in events_pb2.DESCRIPTOR.message_types_by_name.values()
        if message.name != "EventMetadata"
    ]
    assert {message.name for message in events} == {
        "UsageRecorded",
        "AuditRecorded",
        "ModelChanged",
        "FineTuneJobEvent",
    }
    for message in events:
        metadata = message.fields_by_number[1]
        assert metadata.name == "metadata"
        assert metadata.message_type is not None
        assert metadata.message_type.full_name == "llmgw.events.v1.EventMetadata"
        topic = message.GetOptions().Extensions[events_pb2.topic]
        assert topic.startswith("llmgw.") and topic.endswith(".v1"), message.name

    metadata_fields = events_pb2.EventMetadata.DESCRIPTOR.fields_by_name
    assert {name: field.number for name, field in metadata_fields.items()} == {
        "id": 1,
        "time": 2,
        "source": 3,
        "subject": 4,
    }


@pytest.fixture(scope="module")
def contract_files(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[descriptor_pb2.FileDescriptorProto]:
    out = tmp_path_factory.mktemp("descriptors") / "contracts.binpb"
    result = _run_gen_protos("--descriptor-set", str(out))
    assert result.returncode == 0, result.stderr
    file_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    files = [file for file in file_set.file if file.name.startswith("llmgw/")]
    assert files
    return files


def _message_elements(
    message: descriptor_pb2.DescriptorProto, name: str, path: tuple[int, ...]
) -> Iterator[Element]:
    yield f"message {name}", path
    for index, field in enumerate(message.field):
        yield f"field {name}.{field.name}", (*path, _MESSAGE_FIELD, index)
    for index, extension in enumerate(message.extension):
        yield f"extension {name}.{extension.name}", (*path, _MESSAGE_EXTENSION, index)
    for index, oneof in enumerate(message.oneof_decl):
        members = [field for field in message.field if field.HasField("oneof_index")]
        synthetic = all(field.proto3_optional for field in members if field.oneof_index == index)
        if not synthetic:
            yield f"oneof {name}.{oneof.name}", (*path, _MESSAGE_ONEOF, index)
    for index, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            nested_path = (*path, _MESSAGE_NESTED, index)
            yield from _message_elements(nested, f"{name}.{nested.name}", nested_path)
    for index, enum in enumerate(message.enum_type):
        yield from _enum_elements(enum, f"{name}.{enum.name}", (*path, _MESSAGE_ENUM, index))


def _enum_elements(
    enum: descriptor_pb2.EnumDescriptorProto, name: str, path: tuple[int, ...]
) -> Iterator[Element]:
    yield f"enum {name}", path
    for index, value in enumerate(enum.value):
        yield f"enum value {name}.{value.name}", (*path, _ENUM_VALUE, index)


def _file_elements(file: descriptor_pb2.FileDescriptorProto) -> Iterator[Element]:
    for index, message in enumerate(file.message_type):
        yield from _message_elements(message, message.name, (_FILE_MESSAGE, index))
    for index, enum in enumerate(file.enum_type):
        yield from _enum_elements(enum, enum.name, (_FILE_ENUM, index))
    for index, service in enumerate(file.service):
        yield f"service {service.name}", (_FILE_SERVICE, index)
        for method_index, method in enumerate(service.method):
            method_path = (_FILE_SERVICE, index, _SERVICE_METHOD, method_index)
            yield f"rpc {service.name}.{method.name}", method_path
    for index, extension in enumerate(file.extension):
        yield f"extension {extension.name}", (_FILE_EXTENSION, index)


def _commented_paths(file: descriptor_pb2.FileDescriptorProto) -> set[tuple[int, ...]]:
    return {
        tuple(location.path)
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


def test_every_element_has_a_leading_comment(
    contract_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    undocumented: list[str] = []
    checked = 0
    for file in contract_files:
        commented = _commented_paths(file)
        for label, path in _file_elements(file):
            checked += 1
            if path not in commented:
                undocumented.append(f"{file.name}: {label}")
    assert checked > 500
    assert not undocumented, "missing leading comments:\n" + "\n".join(undocumented)
