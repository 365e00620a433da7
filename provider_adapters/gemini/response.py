"""Gemini ``GenerateContentResponse`` -> llmgw results and chunks.

A non-streamed answer and every streamed chunk have the same shape, so both go
through :func:`read_response`, which keeps the first candidate's parts, its
``finishReason``, ``usageMetadata``, ``modelVersion`` and a prompt block
reason. Gemini reports ``STOP`` also when the model called functions; llmgw
says ``TOOL_CALLS`` then. Function calls carry no id unless the API gives one,
so ids are generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import MalformedResponse
from provider_adapters.gemini.identity import PROVIDER
from provider_adapters.support.conversation import new_tool_call_id
from provider_adapters.support.json_values import Json, arguments_text, token_count
from provider_adapters.support.usage import provider_usage

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


@dataclass(frozen=True, slots=True)
class FunctionCallPart:
    """One complete function call of a response."""

    call_id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ResponseView:
    """What llmgw reads from one ``GenerateContentResponse``.

    ``pieces`` keeps the candidate's parts in order: text as ``str`` pieces with
    a thought flag, function calls as :class:`FunctionCallPart`.
    """

    pieces: list[tuple[str, bool] | FunctionCallPart] = field(default_factory=list)
    finish_reason: str | None = None
    block_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    model_version: str | None = None

    @property
    def terminal(self) -> bool:
        """True for the response that ends generation (finish or prompt block)."""
        return self.finish_reason is not None or self.block_reason is not None


def read_response(body: Json) -> ResponseView:
    """The parts of ``body`` llmgw uses; raises :class:`MalformedResponse` on a bad shape."""
    view = ResponseView()
    usage = body.get("usageMetadata")
    view.usage = usage if isinstance(usage, dict) else None
    version = body.get("modelVersion")
    view.model_version = version if isinstance(version, str) else None
    feedback = body.get("promptFeedback")
    if isinstance(feedback, dict) and isinstance(feedback.get("blockReason"), str):
        view.block_reason = feedback["blockReason"]
    candidates = body.get("candidates")
    if candidates is None:
        return view
    if not isinstance(candidates, list):
        raise MalformedResponse("gemini candidates is not a list", provider=PROVIDER)
    if not candidates:
        return view
    candidate = candidates[0]
    if not isinstance(candidate, dict):
        raise MalformedResponse("gemini candidate is not an object", provider=PROVIDER)
    reason = candidate.get("finishReason")
    view.finish_reason = reason if isinstance(reason, str) and reason else None
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, dict):
            _read_part(view, part)
    return view


def _read_part(view: ResponseView, part: Json) -> None:
    call = part.get("functionCall")
    if isinstance(call, dict):
        call_id = call.get("id")
        view.pieces.append(
            FunctionCallPart(
                call_id=call_id if isinstance(call_id, str) and call_id else new_tool_call_id(),
                name=str(call.get("name", "")),
                arguments=arguments_text(call.get("args")),
            )
        )
    elif isinstance(part.get("text"), str):
        view.pieces.append((part["text"], part.get("thought") is True))


def finish_reason(view: ResponseView, called_functions: bool) -> common_pb2.FinishReason.ValueType:
    """llmgw's finish reason for the terminal response ``view``."""
    if view.block_reason is not None and view.finish_reason is None:
        return common_pb2.FINISH_REASON_CONTENT_FILTER
    reason = view.finish_reason
    if reason == "STOP":
        return (
            common_pb2.FINISH_REASON_TOOL_CALLS
            if called_functions
            else common_pb2.FINISH_REASON_STOP
        )
    if reason == "MAX_TOKENS":
        return common_pb2.FINISH_REASON_LENGTH
    if reason in _FILTERED:
        return common_pb2.FINISH_REASON_CONTENT_FILTER
    return common_pb2.FINISH_REASON_UNSPECIFIED


def usage_from(raw: Mapping[str, Any] | None) -> common_pb2.Usage:
    """llmgw usage from ``usageMetadata`` (output includes thinking tokens)."""
    raw = raw or {}
    input_tokens = token_count(raw, "promptTokenCount") + token_count(
        raw, "toolUsePromptTokenCount"
    )
    reasoning = token_count(raw, "thoughtsTokenCount")
    output_tokens = token_count(raw, "candidatesTokenCount") + reasoning
    return provider_usage(
        input_tokens,
        output_tokens,
        cached_input_tokens=token_count(raw, "cachedContentTokenCount"),
        reasoning_tokens=reasoning,
    )


def serving_info(view: ResponseView, model: str) -> common_pb2.ServingInfo:
    """Who served the request: the reported model version, or the deployment's model."""
    return common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=view.model_version or model)


def completion_result(body: Json, *, model: str) -> inference_pb2.CompletionResult:
    """The whole result of a non-streamed ``generateContent`` answer."""
    view = read_response(body)
    if not view.terminal:
        raise MalformedResponse("gemini answer has no finishReason", provider=PROVIDER)
    message = inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT)
    text = ""
    for piece in view.pieces:
        if isinstance(piece, FunctionCallPart):
            message.tool_calls.add(
                id=piece.call_id,
                function=inference_pb2.FunctionCall(name=piece.name, arguments=piece.arguments),
            )
        elif piece[1]:
            message.reasoning_text += piece[0]
        else:
            text += piece[0]
    if text:
        message.content.add(text=text)
    return inference_pb2.CompletionResult(
        message=message,
        finish_reason=finish_reason(view, called_functions=bool(message.tool_calls)),
        usage=usage_from(view.usage),
        served_by=serving_info(view, model),
    )
