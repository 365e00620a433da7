"""The conformance kit's scripted HTTP server, driven by a plain httpx client."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from provider_adapters.conformance.fake_server import FakeServer, ScriptedResponse


async def test_records_requests_and_serves_the_script_in_order() -> None:
    async with FakeServer() as server:
        server.enqueue(
            ScriptedResponse(status=201, body=b"first", headers={"x-a": "1"}),
            ScriptedResponse(status=429, body=b"second"),
        )
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            one = await client.post("/v1/x?api-version=1&b=", json={"k": "é"})
            two = await client.get("/y")
            three = await client.get("/z")
    assert (one.status_code, one.content, one.headers["x-a"]) == (201, b"first", "1")
    assert (two.status_code, two.content) == (429, b"second")
    assert three.status_code == 599
    assert b"no scripted response" in three.content
    first = server.requests[0]
    assert (first.method, first.path, first.target) == ("POST", "/v1/x", "/v1/x?api-version=1&b=")
    assert first.query_value("api-version") == "1"
    assert first.query_value("b") == ""
    assert first.json() == {"k": "é"}
    assert first.headers["content-type"] == "application/json"
    assert server.connections_opened == 1
    assert [r.connection_number for r in server.requests] == [1, 1, 1]


async def test_chunked_pieces_arrive_as_separate_chunks() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=b"abcdefg", chunked=True, pieces=(1, 2)))
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", server.base_url) as response,
        ):
            assert response.headers["transfer-encoding"] == "chunked"
            received = [chunk async for chunk in response.aiter_raw()]
    assert b"".join(received) == b"abcdefg"
    assert ScriptedResponse(body=b"abcdefg", pieces=(1, 2)).split_body() == [
        b"a",
        b"bc",
        b"d",
        b"ef",
        b"g",
    ]


async def test_delay_before_headers() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=b"x", delay_before_headers=0.2))
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            await client.get(server.base_url)
    assert time.monotonic() - started >= 0.2


async def test_client_close_during_a_stall_sets_the_event() -> None:
    async with FakeServer() as server:
        server.enqueue(
            ScriptedResponse(body=b"0123456789", chunked=True, pieces=(4,), stall_after_pieces=1)
        )
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", server.base_url) as response,
        ):
            first = await anext(response.aiter_raw())
            assert first == b"0123"
            assert not server.requests[0].client_closed.is_set()
        await asyncio.wait_for(server.requests[0].client_closed.wait(), 1.0)


async def test_reset_after_pieces_breaks_the_connection() -> None:
    async with FakeServer() as server:
        server.enqueue(
            ScriptedResponse(body=b"0123456789", chunked=True, pieces=(4,), reset_after_pieces=1)
        )
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.TransportError):
                async with client.stream("GET", server.base_url) as response:
                    await response.aread()


async def test_new_connections_are_counted() -> None:
    async with FakeServer() as server:
        server.enqueue(ScriptedResponse(body=b"a"), ScriptedResponse(body=b"b"))
        for _ in range(2):
            async with httpx.AsyncClient() as client:
                await client.get(server.base_url)
    assert server.connections_opened == 2
    assert all(request.client_closed.is_set() for request in server.requests)
