"""The response cache's key and its stream assembly and replay."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.inference.cache import MessageAssembler, cache_key, replay_chunks


def request(**changes: object) -> inference_pb2.CompletionRequest:
    built = inference_pb2.CompletionRequest(
        request_id="r-1",
        model="sim",
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_USER, content=[inference_pb2.ContentPart(text="hi")]
            )
        ],
    )
    for name, value in changes.items():
        setattr(built, name, value)
    return built


def tool(parameters: dict[str, Any]) -> inference_pb2.Tool:
    schema = struct_pb2.Struct()
    schema.update(parameters)
    return inference_pb2.Tool(
        function=inference_pb2.FunctionDefinition(name="lookup", parameters=schema)
    )


def test_request_id_and_gateway_options_do_not_change_the_key() -> None:
    base = request()
    other = request(request_id="r-2")
    other.options.bypass_cache = True
    other.options.tags["team"] = "x"
    other.options.timeout.FromSeconds(3)
    assert cache_key(base) == cache_key(other)


def test_everything_that_decides_the_answer_changes_the_key() -> None:
    base = cache_key(request())
    assert cache_key(request(model="other")) != base
    sampled = request()
    sampled.sampling.temperature = 0.0
    assert cache_key(sampled) != base
    formatted = request()
    formatted.response_format.json_object.SetInParent()
    assert cache_key(formatted) != base
    with_tool = request()
    with_tool.tools.append(tool({"type": "object"}))
    assert cache_key(with_tool) != base
    choice = request()
    choice.tool_choice.mode = inference_pb2.TOOL_CHOICE_MODE_NONE
    assert cache_key(choice) != base
    parallel = request()
    parallel.parallel_tool_calls = False
    assert cache_key(parallel) != base


def test_the_key_does_not_depend_on_json_key_order() -> None:
    first = request()
    first.tools.append(tool({"type": "object", "properties": {"a": {}, "b": {}}}))
    second = request()
    second.tools.append(tool({"properties": {"b": {}, "a": {}}, "type": "object"}))
    assert cache_key(first) == cache_key(second)


def test_assembled_stream_replays_to_the_same_message() -> None:
    assembler = MessageAssembler()
    chunks = [
        inference_pb2.CompletionChunk(role=common_pb2.ROLE_ASSISTANT, reasoning_delta="think "),
        inference_pb2.CompletionChunk(text_delta="Hello"),
        inference_pb2.CompletionChunk(text_delta=" world"),
        inference_pb2.CompletionChunk(
            tool_call_deltas=[
                inference_pb2.ToolCallDelta(
                    index=0, id="c1", function_name="f", arguments_delta="{"
                )
            ]
        ),
        inference_pb2.CompletionChunk(
            tool_call_deltas=[inference_pb2.ToolCallDelta(index=0, arguments_delta="}")]
        ),
    ]
    for chunk in chunks:
        assembler.add(chunk)
    message = assembler.message()
    assert message.content[0].text == "Hello world"
    assert message.reasoning_text == "think "
    assert message.tool_calls[0].function.arguments == "{}"
    replayed = MessageAssembler()
    for chunk in replay_chunks(message):
        replayed.add(chunk)
    assert replayed.message() == message
    assert replay_chunks(message)[0].role == common_pb2.ROLE_ASSISTANT
