"""The Echo adapter: llmgw completions over the Echo API (see :mod:`.protocol`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from llmgw_echo_adapter.protocol import CONTEXT_OVERFLOW, KEY_HEADER, PATH
from provider_adapters.base import (
    Capability,
    CompletionRequest,
    CompletionResult,
    Deployment,
    ProviderAdapter,
    StreamEvent,
)
from provider_adapters.errors import MalformedResponse
from provider_adapters.http import (
    HttpSettings,
    ProviderHttp,
    UpstreamError,
    ndjson_objects,
)
from provider_adapters.support.streams import closing

PROVIDER = "echo"
CAPABILITIES = frozenset({Capability.STREAMING, Capability.TOOLS})
Json = dict[str, Any]

_ROLES: Mapping[int, str] = {
    common_pb2.ROLE_SYSTEM: "system",
    common_pb2.ROLE_DEVELOPER: "system",
    common_pb2.ROLE_USER: "user",
    common_pb2.ROLE_ASSISTANT: "assistant",
    common_pb2.ROLE_TOOL: "tool",
}
_FINISH: Mapping[str, common_pb2.FinishReason.ValueType] = {
    "end": common_pb2.FINISH_REASON_STOP,
    "call": common_pb2.FINISH_REASON_TOOL_CALLS,
    "limit": common_pb2.FINISH_REASON_LENGTH,
}


def parse_error(status: int, raw: bytes) -> UpstreamError:
    """The Echo API's ``{"error": {"kind", "detail"}}`` body."""
    try:
        error = json.loads(raw)["error"]
        return UpstreamError(str(error["detail"]), error.get("kind") == CONTEXT_OVERFLOW)
    except (ValueError, KeyError, TypeError):
        return UpstreamError(f"HTTP {status}")


class EchoAdapter(ProviderAdapter):
    """One deployment of the Echo API; takes no options."""

    capabilities = CAPABILITIES

    def __init__(self, deployment: Deployment) -> None:
        if deployment.options:
            raise ValueError(f"the echo adapter takes no options, got {sorted(deployment.options)}")
        headers = {KEY_HEADER: deployment.api_key.value} if deployment.api_key else {}
        timeouts = deployment.timeouts
        self._model = deployment.model
        self._http = ProviderHttp(
            HttpSettings(
                base_url=deployment.base_url,
                provider=PROVIDER,
                connect_timeout=timeouts.connect,
                first_byte_timeout=timeouts.first_byte,
                between_chunks_timeout=timeouts.between_chunks,
                total_timeout=timeouts.total,
                max_connections=deployment.max_connections,
                default_headers=headers,
            ),
            parse_error,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """One call answered whole."""
        answer = await self._http.post_json(PATH, self._body(request, stream=False))
        try:
            message = inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT)
            if answer["text"]:
                message.content.append(inference_pb2.ContentPart(text=answer["text"]))
            call = answer.get("call")
            if call is not None:
                message.tool_calls.append(
                    inference_pb2.ToolCall(
                        id=call["id"],
                        function=inference_pb2.FunctionCall(
                            name=call["name"], arguments=json.dumps(call["input"])
                        ),
                    )
                )
            return inference_pb2.CompletionResult(
                message=message, finish_reason=_FINISH[answer["stop"]], usage=_usage(answer)
            )
        except (KeyError, TypeError) as exc:
            raise MalformedResponse(f"echo answer lacks {exc}", provider=PROVIDER) from exc

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """One streamed call: text and call pieces, then the result from the ``end`` line."""
        lines = self._http.stream_lines(PATH, self._body(request, stream=True))
        async with closing(lines), closing(ndjson_objects(lines, PROVIDER)) as objects:
            try:
                async for event in objects:
                    kind = event.get("type")
                    if kind == "text":
                        yield inference_pb2.CompletionChunk(text_delta=str(event["text"]))
                    elif kind == "call":
                        delta = inference_pb2.ToolCallDelta(
                            id=event["id"], function_name=event["name"]
                        )
                        yield inference_pb2.CompletionChunk(tool_call_deltas=[delta])
                    elif kind == "call_input":
                        delta = inference_pb2.ToolCallDelta(arguments_delta=event["json"])
                        yield inference_pb2.CompletionChunk(tool_call_deltas=[delta])
                    elif kind == "end":
                        result = inference_pb2.CompletionResult(
                            finish_reason=_FINISH[event["stop"]], usage=_usage(event)
                        )
                        # Read to the end of the body so the connection can be reused.
                        async for _ in objects:
                            pass
                        yield result
                        return
            except (KeyError, TypeError) as exc:
                raise MalformedResponse(
                    f"echo stream event lacks {exc}", provider=PROVIDER
                ) from exc
        raise MalformedResponse("echo stream ended without its end line", provider=PROVIDER)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def _body(self, request: CompletionRequest, *, stream: bool) -> Json:
        body: Json = {
            "model": self._model,
            "messages": [
                {"role": _ROLES.get(m.role, "user"), "text": "".join(p.text for p in m.content)}
                for m in request.messages
            ],
            "stream": stream,
        }
        if request.tools:
            body["tools"] = [{"name": t.function.name} for t in request.tools]
        if request.sampling.HasField("max_output_tokens"):
            body["max_tokens"] = request.sampling.max_output_tokens
        return body


def _usage(event: Json) -> common_pb2.Usage:
    tokens = event["tokens"]
    return common_pb2.Usage(
        input_tokens=tokens["in"],
        output_tokens=tokens["out"],
        total_tokens=tokens["in"] + tokens["out"],
        source=common_pb2.USAGE_SOURCE_PROVIDER,
    )
