"""The Echo API's wire format for llmgw's conformance kit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from llmgw_echo_adapter.protocol import CONTEXT_OVERFLOW, KEY_HEADER, PATH
from provider_adapters.base import Capability, Deployment, Secret, Timeouts
from provider_adapters.conformance.fake_server import RecordedRequest
from provider_adapters.conformance.wire import ErrorCase, ToolCallSpec, UsageSpec, WireReply
from provider_adapters.conformance.wire_hooks import Operation

_JSON = {"content-type": "application/json"}
_NDJSON = {"content-type": "application/x-ndjson"}


def _line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode() + b"\n"


def _tokens(usage: UsageSpec) -> dict[str, int]:
    return {"in": usage.input_tokens, "out": usage.output_tokens}


class EchoWire:
    """What the Echo API sends; see :mod:`llmgw_echo_adapter.protocol`."""

    provider: str = "echo"
    capabilities: frozenset[Capability] = frozenset({Capability.STREAMING, Capability.TOOLS})

    def deployment(self, base_url: str, timeouts: Timeouts) -> Deployment:
        """An echo deployment at ``base_url``."""
        return Deployment(
            provider=self.provider,
            model="echo-1",
            base_url=base_url,
            api_key=Secret("echo-secret"),
            timeouts=timeouts,
        )

    def credential_headers(self, deployment: Deployment) -> Mapping[str, str]:
        """The key travels in ``x-echo-key``."""
        assert deployment.api_key is not None
        return {KEY_HEADER: deployment.api_key.value}

    def check_request(self, request: RecordedRequest, operation: Operation) -> None:
        """Every call is ``POST /v1/generate`` with the stream flag set as asked."""
        assert (request.method, request.path) == ("POST", PATH)
        assert request.json()["stream"] is (operation is Operation.STREAM)

    def text(self, text: str, usage: UsageSpec, *, stream: bool) -> WireReply:
        """Text, then a natural end."""
        if not stream:
            body = {"text": text, "call": None, "stop": "end", "tokens": _tokens(usage)}
            return WireReply(200, _line(body), _JSON)
        lines = [_line({"type": "text", "text": text[i : i + 4]}) for i in range(0, len(text), 4)]
        lines.append(_line({"type": "end", "stop": "end", "tokens": _tokens(usage)}))
        return WireReply(200, b"".join(lines), _NDJSON, streaming=True)

    def tool_call(self, call: ToolCallSpec, usage: UsageSpec, *, stream: bool) -> WireReply:
        """One call, then the end."""
        arguments = dict(call.arguments)
        if not stream:
            body = {
                "text": "",
                "call": {"id": call.call_id, "name": call.name, "input": arguments},
                "stop": "call",
                "tokens": _tokens(usage),
            }
            return WireReply(200, _line(body), _JSON)
        text = json.dumps(arguments, ensure_ascii=False)
        lines = [_line({"type": "call", "id": call.call_id, "name": call.name})]
        lines += [
            _line({"type": "call_input", "json": text[i : i + 5]}) for i in range(0, len(text), 5)
        ]
        lines.append(_line({"type": "end", "stop": "call", "tokens": _tokens(usage)}))
        return WireReply(200, b"".join(lines), _NDJSON, streaming=True)

    def truncated_stream(self, text: str) -> WireReply:
        """Text lines without the end line."""
        return WireReply(200, _line({"type": "text", "text": text}), _NDJSON, streaming=True)

    def malformed_stream(self) -> WireReply:
        """A line that is not JSON."""
        body = _line({"type": "text", "text": "a"}) + b'{"type": "text", "te\n'
        return WireReply(200, body, _NDJSON, streaming=True)

    def error(self, case: ErrorCase, retry_after_seconds: int | None) -> WireReply:
        """``{"error": {"kind", "detail"}}`` with the case's status."""
        kind = CONTEXT_OVERFLOW if case is ErrorCase.CONTEXT_WINDOW else case.name.lower()
        headers = dict(_JSON)
        if retry_after_seconds is not None:
            headers["retry-after"] = str(retry_after_seconds)
        body = {"error": {"kind": kind, "detail": f"echo says {case.name.lower()}"}}
        return WireReply(case.http_status, _line(body), headers)

    def embeddings(self, vectors: Sequence[Sequence[float]], usage: UsageSpec) -> WireReply:
        """Never called: the Echo API has no embeddings."""
        raise NotImplementedError("the echo API has no embeddings")
