"""The conformance scenarios every provider adapter must pass, as a pytest class.

A provider package runs the kit by subclassing :class:`AdapterConformance` and
providing its wire::

    import pytest
    from provider_adapters.conformance.suite import AdapterConformance
    from provider_adapters.conformance.wire import ProviderWire

    class TestMine(AdapterConformance):
        @pytest.fixture
        def wire(self) -> ProviderWire:
            return MyWire()

The adapter under test is the installed plugin whose entry-point name (group
``llmgw.provider_adapters``) is ``wire.provider``; override the ``plugin``
fixture to test one that is not installed. Every scenario builds a fresh adapter
from ``wire.deployment(...)`` pointed at a fresh
:class:`~provider_adapters.conformance.fake_server.FakeServer` and closes it
afterwards. Scenarios that need a capability the wire does not declare are
skipped. A wire may also offer the optional checks of
:mod:`provider_adapters.conformance.wire_hooks` (exact credential headers, a
look at each request sent). The kit needs pytest and pytest-asyncio (either
asyncio mode); one adapter's run takes about four seconds, most of it in the
timeout scenarios (limits of :attr:`AdapterConformance.short` seconds).

What is checked: text and tool-call completions, unary and streamed (streams cut
into 1 to 7 byte pieces that split lines and UTF-8 characters; exactly one
result, last, with usage); every :class:`ErrorCase` mapped to its exact
:mod:`provider_adapters.errors` class; first-byte, between-chunks and total
timeouts; connection resets; malformed and truncated answers; failures
reported inside a stream (for wires that describe them); cancellation
closing the upstream connection within a second; connection reuse; embeddings;
credentials; unknown deployment options refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters import errors
from provider_adapters.base import (
    PLUGIN_API_VERSION,
    AdapterPlugin,
    Capability,
    CompletionRequest,
    CompletionResult,
    ProviderAdapter,
    StreamEvent,
    Timeouts,
    adapter_registry,
)
from provider_adapters.conformance.fake_server import (
    FakeServer,
    RecordedRequest,
    ScriptedResponse,
)
from provider_adapters.conformance.wire import (
    ErrorCase,
    ProviderWire,
    ToolCallSpec,
    UsageSpec,
    WireReply,
)
from provider_adapters.conformance.wire_hooks import (
    ChecksCredentials,
    ChecksRequests,
    FailsMidStream,
    Operation,
)
from services.kernel.errors import LlmgwError

TEXT = "héllo wörld — 日本語 ✓"
"""The answer of the text scenarios: multi-byte characters of 2, 3 and 3 bytes."""

USAGE = UsageSpec(input_tokens=11, output_tokens=7)
EMBED_USAGE = UsageSpec(input_tokens=9, output_tokens=0)
CALL = ToolCallSpec(
    call_id="call_7Qx2Lp",
    name="get_weather",
    arguments={"city": "Zürich", "days": 3, "units": "metric", "hourly": False},
)
VECTORS: Sequence[Sequence[float]] = ((0.5, -0.25, 0.125), (1.0, 0.0, -1.5))
RETRY_AFTER_SECONDS = 7
CANCEL_CLOSE_SECONDS = 1.0

EXPECTED_ERRORS: Mapping[ErrorCase, type[errors.ProviderError]] = {
    ErrorCase.BAD_REQUEST: errors.ProviderBadRequest,
    ErrorCase.CONTEXT_WINDOW: errors.ContextWindowExceeded,
    ErrorCase.UNAUTHORIZED: errors.ProviderAuthFailed,
    ErrorCase.FORBIDDEN: errors.ProviderAuthFailed,
    ErrorCase.NOT_FOUND: errors.ProviderModelNotFound,
    ErrorCase.REQUEST_TIMEOUT: errors.ProviderTimeout,
    ErrorCase.CONFLICT: errors.ProviderConflict,
    ErrorCase.UNPROCESSABLE: errors.ProviderBadRequest,
    ErrorCase.RATE_LIMITED: errors.ProviderRateLimited,
    ErrorCase.INTERNAL: errors.ProviderServerError,
    ErrorCase.BAD_GATEWAY: errors.ProviderServerError,
    ErrorCase.UNAVAILABLE: errors.ProviderServerError,
    ErrorCase.OVERLOADED: errors.ProviderOverloaded,
}
"""The exact class each upstream failure must become."""

STREAM_PIECES: Sequence[tuple[int, ...]] = ((1,), (3,), (5,), (7,), (1, 3, 5, 7))


def served(
    reply: WireReply,
    *,
    pieces: Sequence[int] = (),
    delay_before_headers: float = 0.0,
    delay_between_pieces: float = 0.0,
    stall_after_pieces: int | None = None,
    reset_after_pieces: int | None = None,
) -> ScriptedResponse:
    """The fake server's script for ``reply``, with the given pieces, delays, stall or reset."""
    return ScriptedResponse(
        status=reply.status,
        body=reply.body,
        headers=dict(reply.headers),
        chunked=reply.streaming,
        pieces=pieces,
        delay_before_headers=delay_before_headers,
        delay_between_pieces=delay_between_pieces,
        stall_after_pieces=stall_after_pieces,
        reset_after_pieces=reset_after_pieces,
    )


def conversation(*, with_tools: bool = False) -> CompletionRequest:
    """The request every scenario sends: a system and a user message (plus a tool)."""
    request = inference_pb2.CompletionRequest(
        request_id="conformance-1",
        model="conformance-model",
        messages=[
            inference_pb2.Message(
                role=common_pb2.ROLE_SYSTEM,
                content=[inference_pb2.ContentPart(text="Answer briefly.")],
            ),
            inference_pb2.Message(
                role=common_pb2.ROLE_USER,
                content=[inference_pb2.ContentPart(text="Say hello in three scripts.")],
            ),
        ],
        sampling=inference_pb2.SamplingParameters(max_output_tokens=64, temperature=0.2),
    )
    if with_tools:
        function = inference_pb2.FunctionDefinition(
            name=CALL.name, description="Weather forecast for a city."
        )
        function.parameters.update(
            {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "units": {"type": "string", "enum": ["metric", "imperial"]},
                    "hourly": {"type": "boolean"},
                },
                "required": ["city"],
            }
        )
        request.tools.append(inference_pb2.Tool(function=function))
    return request


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    """Every event of a stream, in order."""
    return [event async for event in events]


def split_stream(
    events: Sequence[StreamEvent],
) -> tuple[list[inference_pb2.CompletionChunk], CompletionResult]:
    """The chunks and the one result of a finished stream; asserts the result is last and single."""
    results = [event for event in events if isinstance(event, inference_pb2.CompletionResult)]
    assert len(results) == 1, f"a stream must end with exactly one result, got {len(results)}"
    assert events[-1] is results[0], "the result must be the last event of the stream"
    chunks = [event for event in events if isinstance(event, inference_pb2.CompletionChunk)]
    assert len(chunks) == len(events) - 1, "a stream yields only chunks and one result"
    for chunk in chunks:
        assert chunk.role in {common_pb2.ROLE_UNSPECIFIED, common_pb2.ROLE_ASSISTANT}
    return chunks, results[0]


def assert_usage(usage: common_pb2.Usage, expected: UsageSpec) -> None:
    """The provider's token counts, handed on unchanged and marked as the provider's."""
    assert usage.input_tokens == expected.input_tokens
    assert usage.output_tokens == expected.output_tokens
    assert usage.cached_input_tokens == expected.cached_input_tokens
    assert usage.cache_creation_input_tokens == expected.cache_creation_input_tokens
    assert usage.total_tokens == expected.input_tokens + expected.output_tokens
    assert usage.source == common_pb2.USAGE_SOURCE_PROVIDER


def message_text(message: inference_pb2.Message) -> str:
    """The text parts of ``message``, concatenated."""
    return "".join(part.text for part in message.content)


def body_pieces(body: bytes, count: int) -> tuple[int, ...]:
    """Piece sizes that cut ``body`` into about ``count`` equal pieces."""
    return (max(len(body) // count, 1),)


class AdapterFactory:
    """Builds adapters of one plugin against the fake server and closes them all."""

    def __init__(self, plugin: AdapterPlugin, wire: ProviderWire, base_url: str) -> None:
        self._plugin = plugin
        self._wire = wire
        self._base_url = base_url
        self._built: list[ProviderAdapter] = []

    def build(self, timeouts: Timeouts) -> ProviderAdapter:
        """A fresh adapter whose deployment has ``timeouts``."""
        adapter = self._plugin.create(self._wire.deployment(self._base_url, timeouts))
        self._built.append(adapter)
        return adapter

    async def close_all(self) -> None:
        """Close every adapter built here."""
        for adapter in self._built:
            await adapter.aclose()


class AdapterConformance:
    """The scenarios; subclass it and provide a ``wire`` fixture (see the module docstring)."""

    timeouts: ClassVar[Timeouts] = Timeouts(
        connect=1.0, first_byte=2.0, between_chunks=2.0, total=5.0
    )
    """Limits of the scenarios that do not test timeouts."""

    short: ClassVar[float] = 0.2
    """The limit under test in the timeout scenarios, in seconds."""

    @pytest.fixture
    def plugin(self, wire: ProviderWire) -> AdapterPlugin:
        """The installed plugin named ``wire.provider``."""
        return adapter_registry().get(wire.provider)

    @pytest_asyncio.fixture
    async def fake(self) -> AsyncIterator[FakeServer]:
        """A fresh scripted server."""
        async with FakeServer() as server:
            yield server

    @pytest_asyncio.fixture
    async def adapters(
        self, plugin: AdapterPlugin, wire: ProviderWire, fake: FakeServer
    ) -> AsyncIterator[AdapterFactory]:
        """Builds adapters pointed at ``fake``; closes them after the test."""
        factory = AdapterFactory(plugin, wire, fake.base_url)
        yield factory
        await factory.close_all()

    @pytest_asyncio.fixture
    async def adapter(self, adapters: AdapterFactory) -> ProviderAdapter:
        """An adapter with the default limits of the kit."""
        return adapters.build(self.timeouts)

    # -- plugin ---------------------------------------------------------------

    def test_plugin_matches_wire(self, plugin: AdapterPlugin, wire: ProviderWire) -> None:
        assert plugin.name == wire.provider
        assert plugin.plugin_api_version == PLUGIN_API_VERSION
        missing = wire.capabilities - plugin.capabilities
        assert not missing, f"the wire exercises capabilities the plugin lacks: {missing}"

    def test_unknown_option_is_refused(self, plugin: AdapterPlugin, wire: ProviderWire) -> None:
        deployment = wire.deployment("http://127.0.0.1:9", self.timeouts)
        options = {**deployment.options, "no_such_option_xyz": "1"}
        with pytest.raises((ValueError, LlmgwError)) as raised:
            plugin.create(dataclasses.replace(deployment, options=options))
        assert "no_such_option_xyz" in str(raised.value)

    # -- successful completions -----------------------------------------------

    @pytest.mark.asyncio
    async def test_unary_text(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        fake.enqueue(served(wire.text(TEXT, USAGE, stream=False)))
        result = await adapter.complete(conversation())
        assert result.message.role == common_pb2.ROLE_ASSISTANT
        assert message_text(result.message) == TEXT
        assert not result.message.tool_calls
        assert result.finish_reason == common_pb2.FINISH_REASON_STOP
        assert_usage(result.usage, USAGE)
        _check_request(wire, fake, Operation.COMPLETE)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("pieces", STREAM_PIECES, ids=lambda p: "-".join(map(str, p)))
    async def test_streamed_text_in_awkward_pieces(
        self,
        wire: ProviderWire,
        fake: FakeServer,
        adapter: ProviderAdapter,
        pieces: tuple[int, ...],
    ) -> None:
        _require(wire, Capability.STREAMING)
        fake.enqueue(served(wire.text(TEXT, USAGE, stream=True), pieces=pieces))
        chunks, result = split_stream(await collect(adapter.stream(conversation())))
        assert "".join(chunk.text_delta for chunk in chunks) == TEXT
        assert result.finish_reason == common_pb2.FINISH_REASON_STOP
        assert_usage(result.usage, USAGE)
        assert not result.message.content, "a stream's result leaves the message empty"
        _check_request(wire, fake, Operation.STREAM)

    @pytest.mark.asyncio
    async def test_unary_tool_call(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.TOOLS)
        fake.enqueue(served(wire.tool_call(CALL, USAGE, stream=False)))
        result = await adapter.complete(conversation(with_tools=True))
        assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
        assert result.message.role == common_pb2.ROLE_ASSISTANT
        assert len(result.message.tool_calls) == 1
        call = result.message.tool_calls[0]
        assert call.id == CALL.call_id
        assert call.function.name == CALL.name
        assert json.loads(call.function.arguments) == CALL.arguments
        assert_usage(result.usage, USAGE)
        _check_request(wire, fake, Operation.COMPLETE)

    @pytest.mark.asyncio
    async def test_streamed_tool_call(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.TOOLS, Capability.STREAMING)
        fake.enqueue(served(wire.tool_call(CALL, USAGE, stream=True), pieces=(3,)))
        chunks, result = split_stream(await collect(adapter.stream(conversation(with_tools=True))))
        assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
        deltas = [delta for chunk in chunks for delta in chunk.tool_call_deltas]
        assert {delta.index for delta in deltas} == {0}
        assert [delta.id for delta in deltas if delta.id] == [CALL.call_id]
        assert [delta.function_name for delta in deltas if delta.function_name] == [CALL.name]
        arguments = "".join(delta.arguments_delta for delta in deltas)
        assert json.loads(arguments) == CALL.arguments
        assert_usage(result.usage, USAGE)
        _check_request(wire, fake, Operation.STREAM)

    # -- upstream errors ------------------------------------------------------

    @pytest.mark.asyncio
    @pytest.mark.parametrize("case", list(ErrorCase), ids=lambda c: c.name.lower())
    async def test_error_unary(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter, case: ErrorCase
    ) -> None:
        fake.enqueue(served(_error_reply(wire, case)))
        with pytest.raises(errors.ProviderError) as raised:
            await adapter.complete(conversation())
        _assert_mapped(raised.value, case, wire)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("case", list(ErrorCase), ids=lambda c: c.name.lower())
    async def test_error_streamed(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter, case: ErrorCase
    ) -> None:
        _require(wire, Capability.STREAMING)
        fake.enqueue(served(_error_reply(wire, case), pieces=(7,)))
        with pytest.raises(errors.ProviderError) as raised:
            await collect(adapter.stream(conversation()))
        _assert_mapped(raised.value, case, wire)

    # -- timeouts -------------------------------------------------------------

    @pytest.mark.asyncio
    @pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
    async def test_first_byte_timeout(
        self, wire: ProviderWire, fake: FakeServer, adapters: AdapterFactory, stream: bool
    ) -> None:
        _require_if(stream, wire, Capability.STREAMING)
        adapter = adapters.build(dataclasses.replace(self.timeouts, first_byte=self.short))
        fake.enqueue(served(wire.text(TEXT, USAGE, stream=stream), delay_before_headers=5.0))
        await _expect_within(_run(adapter, stream), errors.ProviderTimeout, limit=self.short + 0.8)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
    async def test_between_chunks_timeout(
        self, wire: ProviderWire, fake: FakeServer, adapters: AdapterFactory, stream: bool
    ) -> None:
        _require_if(stream, wire, Capability.STREAMING)
        adapter = adapters.build(dataclasses.replace(self.timeouts, between_chunks=self.short))
        reply = wire.text(TEXT, USAGE, stream=stream)
        fake.enqueue(served(reply, pieces=body_pieces(reply.body, 2), stall_after_pieces=1))
        await _expect_within(_run(adapter, stream), errors.ProviderTimeout, limit=self.short + 0.8)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
    async def test_total_timeout(
        self, wire: ProviderWire, fake: FakeServer, adapters: AdapterFactory, stream: bool
    ) -> None:
        _require_if(stream, wire, Capability.STREAMING)
        total = 2 * self.short
        adapter = adapters.build(
            dataclasses.replace(self.timeouts, between_chunks=1.0, total=total)
        )
        reply = wire.text(TEXT, USAGE, stream=stream)
        # Ten pieces a quarter of a second apart: each wait is short, the sum is not.
        fake.enqueue(served(reply, pieces=body_pieces(reply.body, 10), delay_between_pieces=0.25))
        await _expect_within(_run(adapter, stream), errors.ProviderTimeout, limit=total + 0.8)

    # -- broken connections and bodies ----------------------------------------

    @pytest.mark.asyncio
    @pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
    async def test_connection_reset(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter, stream: bool
    ) -> None:
        _require_if(stream, wire, Capability.STREAMING)
        reply = wire.text(TEXT, USAGE, stream=stream)
        fake.enqueue(served(reply, pieces=body_pieces(reply.body, 2), reset_after_pieces=1))
        with pytest.raises(errors.ProviderConnectionError):
            await _run(adapter, stream)

    @pytest.mark.asyncio
    async def test_connection_refused(
        self, wire: ProviderWire, plugin: AdapterPlugin, fake: FakeServer
    ) -> None:
        base_url = fake.base_url
        await fake.close()
        adapter = plugin.create(wire.deployment(base_url, self.timeouts))
        try:
            with pytest.raises(errors.ProviderConnectionError):
                await adapter.complete(conversation())
        finally:
            await adapter.aclose()

    @pytest.mark.asyncio
    async def test_malformed_stream(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.STREAMING)
        fake.enqueue(served(wire.malformed_stream(), pieces=(5,)))
        with pytest.raises(errors.MalformedResponse):
            await collect(adapter.stream(conversation()))

    @pytest.mark.asyncio
    async def test_truncated_stream(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.STREAMING)
        fake.enqueue(served(wire.truncated_stream(TEXT), pieces=(5,)))
        with pytest.raises(errors.MalformedResponse):
            await collect(adapter.stream(conversation()))

    @pytest.mark.asyncio
    async def test_failure_mid_stream(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.STREAMING)
        if not isinstance(wire, FailsMidStream):
            pytest.skip("the wire does not describe its in-stream errors")
        fake.enqueue(served(wire.failure_mid_stream(TEXT), pieces=(5,)))
        received: list[StreamEvent] = []
        with pytest.raises(errors.ProviderError) as raised:
            async for event in adapter.stream(conversation()):
                received.append(event)
        error = raised.value
        # Not MalformedResponse: the provider said what went wrong, and that is what counts.
        assert isinstance(error, errors.ProviderServerError | errors.ProviderOverloaded), (
            f"an in-stream failure became {type(error).__name__}: {error}"
        )
        assert error.provider == wire.provider
        assert not any(isinstance(event, inference_pb2.CompletionResult) for event in received)
        chunks = [event for event in received if isinstance(event, inference_pb2.CompletionChunk)]
        assert "".join(chunk.text_delta for chunk in chunks) == TEXT, (
            "the text before the failure must be handed on"
        )

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("text/html", b"<html><body>502 upstream proxy error</body></html>"),
            ("application/json", b"[1, 2, 3]"),
            ("application/json", b"{}"),
        ],
        ids=["html", "json-array", "empty-object"],
    )
    async def test_malformed_unary_body(
        self, fake: FakeServer, adapter: ProviderAdapter, content_type: str, body: bytes
    ) -> None:
        fake.enqueue(
            ScriptedResponse(status=200, body=body, headers={"content-type": content_type})
        )
        with pytest.raises(errors.MalformedResponse):
            await adapter.complete(conversation())

    # -- cancellation ---------------------------------------------------------

    @pytest.mark.asyncio
    async def test_cancel_after_first_chunk_closes_upstream(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.STREAMING)
        reply = wire.text(TEXT, USAGE, stream=True)
        # Everything but the last byte, then silence: the deltas arrive, the end never does.
        fake.enqueue(served(reply, pieces=(len(reply.body) - 1,), stall_after_pieces=1))
        first_chunk = asyncio.Event()

        async def consume() -> None:
            async for event in adapter.stream(conversation()):
                if isinstance(event, inference_pb2.CompletionChunk):
                    first_chunk.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first_chunk.wait(), 2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _closed_upstream(fake)

    @pytest.mark.asyncio
    async def test_abandoned_stream_closes_upstream(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.STREAMING)
        reply = wire.text(TEXT, USAGE, stream=True)
        fake.enqueue(served(reply, pieces=(len(reply.body) - 1,), stall_after_pieces=1))
        events = adapter.stream(conversation())
        assert isinstance(events, AsyncGenerator), "stream() must return an async generator"
        first = await asyncio.wait_for(anext(events), 2.0)
        assert isinstance(first, inference_pb2.CompletionChunk)
        await events.aclose()
        await _closed_upstream(fake)

    @pytest.mark.asyncio
    async def test_cancel_unary_closes_upstream(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        fake.enqueue(served(wire.text(TEXT, USAGE, stream=False), delay_before_headers=5.0))
        task = asyncio.create_task(adapter.complete(conversation()))
        await asyncio.wait_for(fake.wait_for_requests(1), 2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _closed_upstream(fake)

    # -- pooling --------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_sequential_requests_reuse_one_connection(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        streaming = Capability.STREAMING in wire.capabilities
        fake.enqueue(
            served(wire.text(TEXT, USAGE, stream=False)),
            served(wire.text(TEXT, USAGE, stream=streaming), pieces=(7,)),
            served(wire.text(TEXT, USAGE, stream=False)),
        )
        await adapter.complete(conversation())
        if streaming:
            await collect(adapter.stream(conversation()))
        else:
            await adapter.complete(conversation())
        await adapter.complete(conversation())
        assert len(fake.requests) == 3
        assert fake.connections_opened == 1, "the adapter must keep its connection alive"

    # -- embeddings -----------------------------------------------------------

    @pytest.mark.asyncio
    async def test_embeddings(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.EMBEDDINGS)
        fake.enqueue(served(wire.embeddings(VECTORS, EMBED_USAGE)))
        response = await adapter.embed(
            inference_pb2.EmbedRequest(model="conformance-embedder", inputs=["first", "second"])
        )
        assert [e.index for e in response.embeddings] == list(range(len(VECTORS)))
        assert [list(e.values) for e in response.embeddings] == [list(v) for v in VECTORS]
        assert response.usage.input_tokens == EMBED_USAGE.input_tokens
        _check_request(wire, fake, Operation.EMBED)

    @pytest.mark.asyncio
    async def test_embeddings_error(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        _require(wire, Capability.EMBEDDINGS)
        fake.enqueue(served(_error_reply(wire, ErrorCase.RATE_LIMITED)))
        with pytest.raises(errors.ProviderError) as raised:
            await adapter.embed(inference_pb2.EmbedRequest(model="m", inputs=["x"]))
        _assert_mapped(raised.value, ErrorCase.RATE_LIMITED, wire)

    @pytest.mark.asyncio
    async def test_embeddings_unsupported(
        self, plugin: AdapterPlugin, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        if Capability.EMBEDDINGS in plugin.capabilities:
            pytest.skip("the plugin offers embeddings")
        with pytest.raises(errors.UnsupportedOperation):
            await adapter.embed(inference_pb2.EmbedRequest(model="m", inputs=["x"]))
        assert not fake.requests

    # -- credentials ----------------------------------------------------------

    @pytest.mark.asyncio
    async def test_credentials_are_sent(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        deployment = wire.deployment(fake.base_url, self.timeouts)
        if deployment.api_key is None:
            pytest.skip("the wire's deployment has no credentials")
        fake.enqueue(served(wire.text(TEXT, USAGE, stream=False)))
        await adapter.complete(conversation())
        sent = fake.requests[-1]
        if isinstance(wire, ChecksCredentials):
            for name, value in wire.credential_headers(deployment).items():
                assert sent.headers.get(name.lower()) == value, f"header {name} not as expected"
        else:
            secret = deployment.api_key.value
            carried = [*sent.headers.values(), *(v for vs in sent.query.values() for v in vs)]
            assert any(secret in value for value in carried), "the credentials were not sent"

    @pytest.mark.asyncio
    async def test_errors_do_not_reveal_credentials(
        self, wire: ProviderWire, fake: FakeServer, adapter: ProviderAdapter
    ) -> None:
        deployment = wire.deployment(fake.base_url, self.timeouts)
        if deployment.api_key is None:
            pytest.skip("the wire's deployment has no credentials")
        fake.enqueue(served(_error_reply(wire, ErrorCase.UNAUTHORIZED)))
        with pytest.raises(errors.ProviderAuthFailed) as raised:
            await adapter.complete(conversation())
        secret = deployment.api_key.value
        assert secret not in str(raised.value)
        assert secret not in raised.value.public_message()
        assert secret not in repr(raised.value.metadata)


def _require(wire: ProviderWire, *needed: Capability) -> None:
    missing = set(needed) - wire.capabilities
    if missing:
        pytest.skip(f"the wire does not declare {', '.join(sorted(missing))}")


def _require_if(condition: bool, wire: ProviderWire, *needed: Capability) -> None:
    if condition:
        _require(wire, *needed)


def _error_reply(wire: ProviderWire, case: ErrorCase) -> WireReply:
    retry_after = RETRY_AFTER_SECONDS if case is ErrorCase.RATE_LIMITED else None
    reply = wire.error(case, retry_after)
    assert reply.status == case.http_status, f"the wire answers {case} with {reply.status}"
    return reply


def _assert_mapped(error: errors.ProviderError, case: ErrorCase, wire: ProviderWire) -> None:
    expected = EXPECTED_ERRORS[case]
    assert type(error) is expected, f"{case.name} became {type(error).__name__}: {error}"
    assert error.http_status == case.http_status
    assert error.provider == wire.provider
    if case is ErrorCase.RATE_LIMITED:
        assert error.retry_after_seconds == pytest.approx(RETRY_AFTER_SECONDS)


async def _run(adapter: ProviderAdapter, stream: bool) -> object:
    """One call of the kit's conversation, streamed or not; the stream is drained."""
    if stream:
        return await collect(adapter.stream(conversation()))
    return await adapter.complete(conversation())


async def _expect_within(
    call: Coroutine[Any, Any, object], error: type[errors.ProviderError], *, limit: float
) -> None:
    started = time.monotonic()
    with pytest.raises(error):
        await asyncio.wait_for(call, limit + 2.0)
    elapsed = time.monotonic() - started
    assert elapsed < limit, f"{error.__name__} took {elapsed:.2f} s, limit {limit:.2f} s"


async def _closed_upstream(fake: FakeServer) -> None:
    request: RecordedRequest = fake.requests[-1]
    try:
        await asyncio.wait_for(request.client_closed.wait(), CANCEL_CLOSE_SECONDS)
    except TimeoutError:
        pytest.fail(f"the upstream connection stayed open {CANCEL_CLOSE_SECONDS} s after cancel")


def _check_request(wire: ProviderWire, fake: FakeServer, operation: Operation) -> None:
    assert fake.requests, "the adapter sent nothing"
    if isinstance(wire, ChecksRequests):
        wire.check_request(fake.requests[-1], operation)
