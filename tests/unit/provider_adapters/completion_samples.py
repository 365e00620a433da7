"""A completion request that uses every feature llmgw can express, for translation tests."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2

PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
IMAGE_URL = "https://example.com/cat.jpg"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7}},
    "required": ["city"],
}
ANSWER_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}}


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """``value`` as a protobuf Struct."""
    result = struct_pb2.Struct()
    result.update(value)
    return result


def text_part(text: str) -> inference_pb2.ContentPart:
    """A text content part."""
    return inference_pb2.ContentPart(text=text)


def image_part(url: str) -> inference_pb2.ContentPart:
    """An image content part."""
    return inference_pb2.ContentPart(image_url=inference_pb2.ImageUrl(url=url))


def full_conversation() -> list[inference_pb2.Message]:
    """System and developer instructions, images, a tool call and its result, a follow-up."""
    return [
        inference_pb2.Message(role=common_pb2.ROLE_SYSTEM, content=[text_part("Be brief.")]),
        inference_pb2.Message(role=common_pb2.ROLE_DEVELOPER, content=[text_part("Use metric.")]),
        inference_pb2.Message(
            role=common_pb2.ROLE_USER,
            content=[text_part("Weather where this is?"), image_part(IMAGE_URL)],
        ),
        inference_pb2.Message(
            role=common_pb2.ROLE_ASSISTANT,
            content=[text_part("Checking.")],
            tool_calls=[
                inference_pb2.ToolCall(
                    id="call_1",
                    function=inference_pb2.FunctionCall(
                        name="get_weather", arguments='{"city": "Paris", "days": 2}'
                    ),
                )
            ],
        ),
        inference_pb2.Message(
            role=common_pb2.ROLE_TOOL, tool_call_id="call_1", content=[text_part('{"temp": 21}')]
        ),
        inference_pb2.Message(
            role=common_pb2.ROLE_USER,
            content=[text_part("And this one?"), image_part(PNG_DATA_URL)],
        ),
    ]


def weather_tool() -> inference_pb2.Tool:
    """The function the conversation calls."""
    return inference_pb2.Tool(
        function=inference_pb2.FunctionDefinition(
            name="get_weather", description="Current weather.", parameters=struct(WEATHER_SCHEMA)
        )
    )


def sampling() -> inference_pb2.SamplingParameters:
    """Every sampling parameter set."""
    return inference_pb2.SamplingParameters(
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=256,
        stop=["END"],
        seed=42,
        top_k=40,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    )


def json_schema_format() -> inference_pb2.ResponseFormat:
    """Output constrained to :data:`ANSWER_SCHEMA`."""
    return inference_pb2.ResponseFormat(
        json_schema=inference_pb2.JsonSchema(name="answer", schema=struct(ANSWER_SCHEMA))
    )
