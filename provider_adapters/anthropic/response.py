"""Anthropic Messages API response -> llmgw ``CompletionResult``.

``usage.input_tokens`` of the Messages API counts only uncached input; llmgw's
``input_tokens`` includes the tokens read from and written to the prompt cache,
so the three are added up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.anthropic.identity import PROVIDER
from provider_adapters.errors import MalformedResponse
from provider_adapters.support.json_values import Json, arguments_text, token_count
from provider_adapters.support.usage import provider_usage

FINISH_REASONS: Mapping[str, common_pb2.FinishReason.ValueType] = {
    "end_turn": common_pb2.FINISH_REASON_STOP,
    "stop_sequence": common_pb2.FINISH_REASON_STOP,
    "pause_turn": common_pb2.FINISH_REASON_STOP,
    "max_tokens": common_pb2.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": common_pb2.FINISH_REASON_LENGTH,
    "tool_use": common_pb2.FINISH_REASON_TOOL_CALLS,
    "refusal": common_pb2.FINISH_REASON_CONTENT_FILTER,
}


def finish_reason(stop_reason: Any) -> common_pb2.FinishReason.ValueType:
    """llmgw's finish reason for an Anthropic ``stop_reason`` (unknown -> unspecified)."""
    if not isinstance(stop_reason, str):
        return common_pb2.FINISH_REASON_UNSPECIFIED
    return FINISH_REASONS.get(stop_reason, common_pb2.FINISH_REASON_UNSPECIFIED)


def usage_from(raw: Mapping[str, Any]) -> common_pb2.Usage:
    """llmgw usage from an Anthropic ``usage`` object."""
    cached = token_count(raw, "cache_read_input_tokens")
    created = token_count(raw, "cache_creation_input_tokens")
    input_tokens = token_count(raw, "input_tokens") + cached + created
    output_tokens = token_count(raw, "output_tokens")
    return provider_usage(
        input_tokens,
        output_tokens,
        cached_input_tokens=cached,
        cache_creation_input_tokens=created,
    )


def completion_result(body: Json, *, model: str) -> inference_pb2.CompletionResult:
    """The whole result of a non-streamed ``/v1/messages`` answer."""
    content = body.get("content")
    if body.get("type") != "message" or not isinstance(content, list):
        raise MalformedResponse("anthropic answer is not a message", provider=PROVIDER)
    message = inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT)
    for block in content:
        if not isinstance(block, dict):
            raise MalformedResponse("anthropic content block is not an object", provider=PROVIDER)
        _add_block(message, block)
    usage = body.get("usage")
    return inference_pb2.CompletionResult(
        message=message,
        finish_reason=finish_reason(body.get("stop_reason")),
        usage=usage_from(usage if isinstance(usage, dict) else {}),
        served_by=common_pb2.ServingInfo(
            provider=PROVIDER, provider_model_id=str(body.get("model") or model)
        ),
    )


def _add_block(message: inference_pb2.Message, block: Json) -> None:
    kind = block.get("type")
    if kind == "text":
        text = str(block.get("text", ""))
        if message.content and message.content[-1].WhichOneof("part") == "text":
            message.content[-1].text += text
        else:
            message.content.add(text=text)
    elif kind == "tool_use":
        message.tool_calls.add(
            id=str(block.get("id", "")),
            function=inference_pb2.FunctionCall(
                name=str(block.get("name", "")), arguments=arguments_text(block.get("input"))
            ),
        )
    elif kind == "thinking":
        message.reasoning_text += str(block.get("thinking", ""))
