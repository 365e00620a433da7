"""The shared HTTP helpers: SSE and NDJSON framing, retry-after, ProviderHttp end to end."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from provider_adapters import errors
from provider_adapters.conformance.fake_server import FakeServer, ScriptedResponse
from provider_adapters.http import (
    HttpSettings,
    ProviderHttp,
    SseEvent,
    UpstreamError,
    ndjson_objects,
    parse_json_object,
    retry_after,
    sse_events,
)


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _events(*lines: str) -> list[SseEvent]:
    return [event async for event in sse_events(_lines(*lines))]


# -- sse_events -------------------------------------------------------------


async def test_sse_events_are_ended_by_blank_lines() -> None:
    assert await _events("data: one", "", "data: two", "") == [
        SseEvent("message", "one"),
        SseEvent("message", "two"),
    ]


async def test_sse_comments_and_unknown_fields_are_ignored() -> None:
    events = await _events(": keep-alive", "id: 7", "retry: 1000", "data: x", ": more", "")
    assert events == [SseEvent("message", "x")]


async def test_sse_multi_line_data_is_joined_with_newlines() -> None:
    assert await _events("data: first", "data:second", "data:  third", "") == [
        SseEvent("message", "first\nsecond\n third")
    ]


async def test_sse_event_type_applies_to_one_event() -> None:
    events = await _events(
        "event: message_start", 'data: {"a":1}', "", 'data: {"b":2}', "", "event: ping", ""
    )
    assert events == [SseEvent("message_start", '{"a":1}'), SseEvent("message", '{"b":2}')]


async def test_sse_data_keeps_colons_and_an_empty_value() -> None:
    assert await _events("data: a: b", "data", "") == [SseEvent("message", "a: b\n")]


async def test_sse_last_event_without_blank_line_is_delivered() -> None:
    assert await _events("", "", "data: [DONE]") == [SseEvent("message", "[DONE]")]


# -- ndjson -----------------------------------------------------------------


async def test_ndjson_skips_blank_lines() -> None:
    objects = [o async for o in ndjson_objects(_lines('{"a":1}', "", "  ", '{"b":2}'), "p")]
    assert objects == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize("text", ['{"a":', "[1, 2]", "42", "nope"])
def test_parse_json_object_refuses_non_objects(text: str) -> None:
    with pytest.raises(errors.MalformedResponse) as raised:
        parse_json_object(text, "ollama")
    assert raised.value.provider == "ollama"


# -- retry_after ------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds_and_milliseconds(
    headers: dict[str, str], expected: float | None
) -> None:
    assert retry_after(httpx.Headers(headers)) == expected


def test_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after(httpx.Headers({"retry-after": when}))
    assert seconds is not None
    assert 27 <= seconds <= 30


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0


# -- ProviderHttp against a real server -------------------------------------


def _parse_error(status: int, raw: bytes) -> UpstreamError:
    text = raw.decode()
    return UpstreamError(
        f"upstream said {text}", context_window="too long" in text, auth_failed="bad key" in text
    )


SECRET = "sk-probe-0123456789"


def _client(server: FakeServer, *, total: float = 5.0, between: float = 2.0) -> ProviderHttp:
    settings = HttpSettings(
        base_url=f"{server.base_url}/v1",
        provider="probe",
        connect_timeout=1.0,
        first_byte_timeout=1.0,
        between_chunks_timeout=between,
        total_timeout=total,
        default_headers={"authorization": f"Bearer {SECRET}"},
        secrets=(SECRET,),
    )
    return ProviderHttp(settings, _parse_error)


async def test_post_json_sends_json_and_returns_the_object() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=b'{"ok": true}', pieces=(2,)))
        http = _client(server)
        try:
            answer = await http.post_json("/chat", {"q": "é"}, headers={"x-extra": "1"})
        finally:
            await http.aclose()
    assert answer == {"ok": True}
    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat")
    assert sent.json() == {"q": "é"}
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.headers["x-extra"] == "1"


async def test_stream_lines_reassembles_split_utf8() -> None:
    body = "data: héllo\n\ndata: 日本語 ✓\n\n".encode()
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=body, chunked=True, pieces=(1,)))
        http = _client(server)
        try:
            lines = [line async for line in http.stream_lines("/s", {})]
        finally:
            await http.aclose()
    assert lines == ["data: héllo", "", "data: 日本語 ✓", ""]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b"bad", errors.ProviderBadRequest),
        (400, b"too long", errors.ContextWindowExceeded),
        (400, b"bad key", errors.ProviderAuthFailed),
        (403, b"bad key", errors.ProviderAuthFailed),
        (500, b"bad key", errors.ProviderServerError),
        (429, b"slow", errors.ProviderRateLimited),
        (529, b"busy", errors.ProviderOverloaded),
    ],
)
async def test_status_errors_are_mapped(
    status: int, body: bytes, expected: type[errors.ProviderError]
) -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(status=status, body=body, headers={"retry-after": "3"}))
        http = _client(server)
        try:
            with pytest.raises(errors.ProviderError) as raised:
                await http.post_json("/x", {})
        finally:
            await http.aclose()
    assert type(raised.value) is expected
    assert raised.value.http_status == status
    assert raised.value.retry_after_seconds == 3.0
    assert raised.value.message == f"upstream said {body.decode()}"


async def test_an_error_body_echoing_the_key_does_not_reveal_it() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(status=401, body=f"Invalid API key: {SECRET}".encode()))
        http = _client(server)
        try:
            with pytest.raises(errors.ProviderAuthFailed) as raised:
                await http.post_json("/x", {})
        finally:
            await http.aclose()
    assert SECRET not in str(raised.value)
    assert raised.value.message == "upstream said Invalid API key: ***"


def test_settings_repr_hides_headers_and_secrets() -> None:
    settings = HttpSettings(
        base_url="https://x.test",
        provider="probe",
        connect_timeout=1.0,
        first_byte_timeout=1.0,
        between_chunks_timeout=1.0,
        total_timeout=1.0,
        default_headers={"x-api-key": SECRET},
        secrets=(SECRET,),
    )
    assert SECRET not in repr(settings)


async def test_total_timeout_of_a_unary_call_is_a_provider_timeout() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=b'{"a": 1}', pieces=(1,), delay_between_pieces=0.3))
        http = _client(server, total=0.4, between=1.0)
        started = time.monotonic()
        try:
            with pytest.raises(errors.ProviderTimeout):
                await http.post_json("/x", {})
        finally:
            await http.aclose()
    assert time.monotonic() - started < 1.0


async def test_a_body_that_is_not_json_is_malformed() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=b"<html></html>"))
        http = _client(server)
        try:
            with pytest.raises(errors.MalformedResponse):
                await http.post_json("/x", {})
        finally:
            await http.aclose()
