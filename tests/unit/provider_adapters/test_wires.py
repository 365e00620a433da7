"""The conformance wires print what the providers print, byte for byte where it is known.

The kit's adapters parse JSON and would accept any spacing, so these tests pin
the providers' own framing and field order on the wires themselves.
"""

from __future__ import annotations

import json
from typing import Any

from provider_adapters.conformance.suite import CALL, TEXT, USAGE
from provider_adapters.conformance.wire import ErrorCase
from provider_adapters.conformance.wires.anthropic import AnthropicWire
from provider_adapters.conformance.wires.gemini import GeminiWire
from provider_adapters.conformance.wires.ollama import OllamaWire
from provider_adapters.conformance.wires.openai import AzureOpenAIWire, OpenAIWire


def sse_data(body: bytes, separator: bytes = b"\n\n") -> list[bytes]:
    """The ``data:`` payloads of an SSE body, in order."""
    payloads = []
    for event in body.split(separator):
        for line in event.splitlines():
            if line.startswith(b"data: "):
                payloads.append(line.removeprefix(b"data: "))
    return payloads


def decoded(payloads: list[bytes]) -> list[Any]:
    return [json.loads(payload) for payload in payloads if payload != b"[DONE]"]


# -- OpenAI ---------------------------------------------------------------------


def test_openai_whole_answers_are_indented_by_two_and_errors_by_four() -> None:
    wire = OpenAIWire()
    answer = wire.text(TEXT, USAGE, stream=False).body
    assert answer.startswith(b'{\n  "id": "chatcmpl-')
    assert answer.endswith(b"}\n")
    assert "日本語".encode() in answer
    error = wire.error(ErrorCase.UNAUTHORIZED, None).body
    assert error.startswith(b'{\n    "error": {\n        "message": "Incorrect API key provided')
    assert error.endswith(b'"code": "invalid_api_key"\n    }\n}\n')


def test_openai_stream_lines_are_compact_and_end_with_done() -> None:
    body = OpenAIWire().text(TEXT, USAGE, stream=True).body
    payloads = sse_data(body)
    assert payloads[-1] == b"[DONE]"
    assert all(b'": ' not in payload for payload in payloads[:-1])
    chunks = decoded(payloads)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 11
    assert all("usage" in chunk and chunk["usage"] is None for chunk in chunks[:-1])


def test_openai_tool_call_stream_names_the_call_in_the_role_chunk() -> None:
    chunks = decoded(sse_data(OpenAIWire().tool_call(CALL, USAGE, stream=True).body))
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"] == [
        {
            "index": 0,
            "id": CALL.call_id,
            "type": "function",
            "function": {"name": CALL.name, "arguments": ""},
        }
    ]
    later = [chunk["choices"][0]["delta"] for chunk in chunks[1:] if chunk["choices"]]
    assert all("role" not in delta for delta in later)
    assert all("id" not in call for delta in later for call in delta.get("tool_calls", []))


def test_azure_streams_open_with_prompt_filter_results_and_sort_keys() -> None:
    chunks = decoded(sse_data(AzureOpenAIWire().text(TEXT, USAGE, stream=True).body))
    prelude = chunks[0]
    assert prelude["choices"] == [] and prelude["model"] == ""
    assert prelude["prompt_filter_results"][0]["prompt_index"] == 0
    assert all(list(chunk) == sorted(chunk) for chunk in chunks)
    assert all("content_filter_results" in c for chunk in chunks for c in chunk["choices"])


def test_azure_answers_its_own_401_404_and_429_bodies() -> None:
    wire = AzureOpenAIWire()
    limited = wire.error(ErrorCase.RATE_LIMITED, 7)
    assert limited.headers["retry-after-ms"] == "7000"
    assert limited.headers["retry-after"] == "7"
    error = json.loads(limited.body)["error"]
    assert error["code"] == "429" and "retry after 7 seconds" in error["message"]
    assert "type" not in error
    assert json.loads(wire.error(ErrorCase.NOT_FOUND, None).body)["error"]["code"] == (
        "DeploymentNotFound"
    )
    assert json.loads(wire.error(ErrorCase.UNAUTHORIZED, None).body)["error"]["code"] == "401"


# -- Gemini ---------------------------------------------------------------------


def test_gemini_stream_lines_space_colons_only_and_end_with_crlf() -> None:
    body = GeminiWire().text(TEXT, USAGE, stream=True).body
    assert body.startswith(b'data: {"candidates": [{"content": {"parts": [{"text": "h')
    assert body.endswith(b"\r\n\r\n")
    assert b'}],"role": "model"}' in body
    assert b", " not in body  # no space after a comma


def test_gemini_whole_answers_and_errors_are_indented_by_two() -> None:
    wire = GeminiWire()
    assert wire.text(TEXT, USAGE, stream=False).body.startswith(b'{\n  "candidates": [\n    {\n')
    error = wire.error(ErrorCase.NOT_FOUND, None).body
    assert error.startswith(b'{\n  "error": {\n    "code": 404,\n    "message": ')
    assert error.endswith(b"}\n")


def test_gemini_invalid_api_key_is_a_400_with_an_error_info_reason() -> None:
    reply = GeminiWire().invalid_api_key()
    assert reply.status == 400
    error = json.loads(reply.body)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"


# -- Anthropic and Ollama ---------------------------------------------------------


def test_anthropic_events_name_their_type_and_are_compact() -> None:
    body = AnthropicWire().text(TEXT, USAGE, stream=True).body
    events = body.split(b"\n\n")[:-1]
    assert [event.split(b"\n")[0] for event in events][:3] == [
        b"event: message_start",
        b"event: ping",
        b"event: content_block_start",
    ]
    assert events[-2].startswith(b'event: message_delta\ndata: {"type":"message_delta"')
    assert events[-1] == b'event: message_stop\ndata: {"type":"message_stop"}'


def test_ollama_final_line_has_done_reason_before_done() -> None:
    lines = OllamaWire().text(TEXT, USAGE, stream=True).body.splitlines()
    assert b'"content":""},"done_reason":"stop","done":true,"total_duration":' in lines[-1]
    assert lines[0].endswith(b'"done":false}')


def test_a_502_is_the_html_page_of_what_stands_in_front_of_the_api() -> None:
    for wire, marker in (
        (OpenAIWire(), b"<center>cloudflare</center>"),
        (OllamaWire(), b"<center>nginx</center>"),
        (GeminiWire(), b"<title>Error 502 (Server Error)!!1</title>"),
    ):
        reply = wire.error(ErrorCase.BAD_GATEWAY, None)
        assert reply.status == 502
        assert reply.headers["content-type"].startswith("text/html")
        assert marker in reply.body
