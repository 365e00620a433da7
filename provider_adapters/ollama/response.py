"""Ollama ``/api/chat`` answers -> llmgw results.

A non-streamed answer and every streamed line share one shape:
``{"model", "message": {"role", "content", "thinking"?, "tool_calls"?}, "done",
"done_reason"?, "prompt_eval_count"?, "eval_count"?}``. Tool calls carry their
``arguments`` as a JSON object and an ``id`` only in newer servers, so missing
ids are generated. Ollama says ``stop`` also after tool calls; llmgw says
``TOOL_CALLS`` then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import MalformedResponse
from provider_adapters.ollama.identity import PROVIDER
from provider_adapters.support.conversation import new_tool_call_id
from provider_adapters.support.json_values import Json, arguments_text, token_count
from provider_adapters.support.usage import provider_usage

_FINISH: Mapping[str, common_pb2.FinishReason.ValueType] = {
    "stop": common_pb2.FINISH_REASON_STOP,
    "length": common_pb2.FINISH_REASON_LENGTH,
}


@dataclass(frozen=True, slots=True)
class CallPart:
    """One complete tool call of an answer."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatView:
    """What llmgw reads from one ``/api/chat`` object."""

    content: str = ""
    thinking: str = ""
    calls: list[CallPart] = field(default_factory=list)
    done: bool = False
    done_reason: str | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None


def read_chat(body: Json) -> ChatView:
    """The parts of ``body`` llmgw uses; raises :class:`MalformedResponse` on a bad shape."""
    message = body.get("message", {})
    done = body.get("done")
    if not isinstance(message, dict) or not isinstance(done, bool):
        raise MalformedResponse("ollama answer has no message and done flag", provider=PROVIDER)
    content = message.get("content") or ""
    thinking = message.get("thinking") or ""
    raw_calls = message.get("tool_calls") or []
    if not isinstance(content, str) or not isinstance(thinking, str):
        raise MalformedResponse("ollama message content is not text", provider=PROVIDER)
    if not isinstance(raw_calls, list):
        raise MalformedResponse("ollama tool_calls is not a list", provider=PROVIDER)
    reason = body.get("done_reason")
    model = body.get("model")
    return ChatView(
        content=content,
        thinking=thinking,
        calls=[_call(raw) for raw in raw_calls],
        done=done,
        done_reason=reason if isinstance(reason, str) and reason else None,
        usage={key: body[key] for key in ("prompt_eval_count", "eval_count") if key in body},
        model=model if isinstance(model, str) and model else None,
    )


def _call(raw: Any) -> CallPart:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise MalformedResponse("ollama tool call has no function name", provider=PROVIDER)
    call_id = raw.get("id")
    return CallPart(
        call_id=call_id if isinstance(call_id, str) and call_id else new_tool_call_id(),
        name=function["name"],
        arguments=arguments_text(function.get("arguments")),
    )


def finish_reason(done_reason: str | None, called_tools: bool) -> common_pb2.FinishReason.ValueType:
    """llmgw's finish reason for a final object's ``done_reason``."""
    reason = _FINISH.get(done_reason or "stop", common_pb2.FINISH_REASON_UNSPECIFIED)
    if reason == common_pb2.FINISH_REASON_STOP and called_tools:
        return common_pb2.FINISH_REASON_TOOL_CALLS
    return reason


def usage_from(raw: Mapping[str, Any]) -> common_pb2.Usage:
    """llmgw usage from ``prompt_eval_count`` and ``eval_count``."""
    input_tokens = token_count(raw, "prompt_eval_count")
    output_tokens = token_count(raw, "eval_count")
    return provider_usage(input_tokens, output_tokens)


def completion_result(body: Json, *, model: str) -> inference_pb2.CompletionResult:
    """The whole result of a non-streamed ``/api/chat`` answer."""
    view = read_chat(body)
    if not view.done:
        raise MalformedResponse("ollama answer is not done", provider=PROVIDER)
    message = inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT, reasoning_text=view.thinking)
    if view.content:
        message.content.add(text=view.content)
    for call in view.calls:
        message.tool_calls.add(
            id=call.call_id,
            function=inference_pb2.FunctionCall(name=call.name, arguments=call.arguments),
        )
    return inference_pb2.CompletionResult(
        message=message,
        finish_reason=finish_reason(view.done_reason, called_tools=bool(view.calls)),
        usage=usage_from(view.usage),
        served_by=common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=view.model or model),
    )
