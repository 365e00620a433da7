"""The conformance kit for adapters that reach no network, such as the built-in ``simulated``.

Such an adapter has no wire to fake, so the kit drives it through deployments the
adapter itself can be told to behave with (healthy, failing like an upstream status,
slow). It checks the same contracts as :class:`~provider_adapters.conformance.suite.
AdapterConformance` where they apply: plugin metadata, unknown options refused, text
and tool-call completions, the stream shape (chunks, then exactly one result, last),
every upstream error class, cancellation, and embeddings. Usage here may be estimated.

A package runs it by subclassing :class:`OfflineAdapterConformance` and providing an
``offline`` fixture that returns its :class:`OfflineScenarios`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Protocol

import pytest

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters import errors
from provider_adapters.base import (
    PLUGIN_API_VERSION,
    AdapterPlugin,
    Capability,
    Deployment,
    ProviderAdapter,
    adapter_registry,
)
from provider_adapters.conformance.suite import (
    CALL,
    EXPECTED_ERRORS,
    collect,
    conversation,
    message_text,
    split_stream,
)
from provider_adapters.conformance.wire import ErrorCase
from services.kernel.errors import LlmgwError

CANCEL_SECONDS = 1.0


class OfflineScenarios(Protocol):
    """How the kit makes a network-free adapter behave."""

    provider: str
    """The adapter plugin name (entry-point name)."""

    capabilities: frozenset[Capability]
    """What the scenarios may exercise."""

    def healthy(self) -> Deployment:
        """A deployment that answers every request."""

    def failing(self, http_status: int) -> Deployment:
        """A deployment whose every request fails as an upstream ``http_status`` would."""

    def slow(self) -> Deployment:
        """A deployment whose streams last long enough to be cancelled mid-way."""


def _usage_is_consistent(usage: common_pb2.Usage) -> None:
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.source in {common_pb2.USAGE_SOURCE_PROVIDER, common_pb2.USAGE_SOURCE_ESTIMATED}


def _require(offline: OfflineScenarios, *needed: Capability) -> None:
    missing = set(needed) - offline.capabilities
    if missing:
        pytest.skip(f"the scenarios do not declare {', '.join(sorted(missing))}")


# The context-window case is a 400 whose body says so; an offline adapter has no body.
_STATUS_CASES = [case for case in ErrorCase if case is not ErrorCase.CONTEXT_WINDOW]


class OfflineAdapterConformance:
    """The scenarios; subclass it and provide an ``offline`` fixture."""

    @pytest.fixture
    def plugin(self, offline: OfflineScenarios) -> AdapterPlugin:
        """The installed plugin named ``offline.provider``."""
        return adapter_registry().get(offline.provider)

    def _build(self, plugin: AdapterPlugin, deployment: Deployment) -> ProviderAdapter:
        return plugin.create(deployment)

    def test_plugin_matches_scenarios(
        self, plugin: AdapterPlugin, offline: OfflineScenarios
    ) -> None:
        assert plugin.name == offline.provider
        assert plugin.plugin_api_version == PLUGIN_API_VERSION
        assert offline.capabilities <= plugin.capabilities

    def test_unknown_option_is_refused(
        self, plugin: AdapterPlugin, offline: OfflineScenarios
    ) -> None:
        deployment = offline.healthy()
        options = {**deployment.options, "no_such_option_xyz": "1"}
        with pytest.raises((ValueError, LlmgwError)) as raised:
            plugin.create(dataclasses.replace(deployment, options=options))
        assert "no_such_option_xyz" in str(raised.value)

    async def test_unary_text(self, plugin: AdapterPlugin, offline: OfflineScenarios) -> None:
        result = await self._build(plugin, offline.healthy()).complete(conversation())
        assert result.message.role == common_pb2.ROLE_ASSISTANT
        assert message_text(result.message)
        assert result.finish_reason == common_pb2.FINISH_REASON_STOP
        _usage_is_consistent(result.usage)
        assert result.served_by.provider == offline.provider

    async def test_stream_shape(self, plugin: AdapterPlugin, offline: OfflineScenarios) -> None:
        _require(offline, Capability.STREAMING)
        adapter = self._build(plugin, offline.healthy())
        chunks, result = split_stream(await collect(adapter.stream(conversation())))
        assert chunks and chunks[0].role == common_pb2.ROLE_ASSISTANT
        assert "".join(chunk.text_delta for chunk in chunks)
        assert result.finish_reason == common_pb2.FINISH_REASON_STOP
        assert not result.message.content, "a stream's result leaves the message empty"
        _usage_is_consistent(result.usage)

    async def test_tool_call(self, plugin: AdapterPlugin, offline: OfflineScenarios) -> None:
        _require(offline, Capability.TOOLS)
        adapter = self._build(plugin, offline.healthy())
        result = await adapter.complete(conversation(with_tools=True))
        assert result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
        (call,) = result.message.tool_calls
        assert call.id and call.function.name == CALL.name
        assert isinstance(json.loads(call.function.arguments), dict)
        chunks, final = split_stream(await collect(adapter.stream(conversation(with_tools=True))))
        deltas = [delta for chunk in chunks for delta in chunk.tool_call_deltas]
        assert [d.function_name for d in deltas if d.function_name] == [CALL.name]
        assert isinstance(json.loads("".join(d.arguments_delta for d in deltas)), dict)
        assert final.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS

    @pytest.mark.parametrize("stream", [False, True], ids=["unary", "streamed"])
    @pytest.mark.parametrize("case", _STATUS_CASES, ids=lambda c: c.name.lower())
    async def test_error(
        self, plugin: AdapterPlugin, offline: OfflineScenarios, case: ErrorCase, stream: bool
    ) -> None:
        adapter = self._build(plugin, offline.failing(case.http_status))
        with pytest.raises(errors.ProviderError) as raised:
            if stream:
                await collect(adapter.stream(conversation()))
            else:
                await adapter.complete(conversation())
        assert type(raised.value) is EXPECTED_ERRORS[case]
        assert raised.value.provider == offline.provider
        if case is ErrorCase.RATE_LIMITED:
            assert raised.value.retry_after_seconds is not None

    async def test_cancel_stops_the_stream(
        self, plugin: AdapterPlugin, offline: OfflineScenarios
    ) -> None:
        _require(offline, Capability.STREAMING)
        stream = self._build(plugin, offline.slow()).stream(conversation())
        first = asyncio.Event()
        received: list[object] = []

        async def consume() -> None:
            async for event in stream:
                received.append(event)
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), CANCEL_SECONDS * 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, CANCEL_SECONDS)
        assert not any(isinstance(event, inference_pb2.CompletionResult) for event in received)

    async def test_embeddings(self, plugin: AdapterPlugin, offline: OfflineScenarios) -> None:
        _require(offline, Capability.EMBEDDINGS)
        adapter = self._build(plugin, offline.healthy())
        response = await adapter.embed(inference_pb2.EmbedRequest(inputs=["a", "b c"]))
        assert [e.index for e in response.embeddings] == [0, 1]
        sizes = {len(e.values) for e in response.embeddings}
        assert len(sizes) == 1 and sizes.pop() > 0
        assert response.usage.input_tokens > 0
