"""Cost of a request from a version's prices: exact integer arithmetic in nanos."""

from __future__ import annotations

from llmgw.common.v1 import common_pb2

_PER = 1_000_000


def _price(tokens: int, per_million_nanos: int) -> int:
    """``tokens * price / 1e6``, rounded half up, in integers only."""
    if tokens <= 0 or per_million_nanos <= 0:
        return 0
    return (tokens * per_million_nanos + _PER // 2) // _PER


def cost_of(usage: common_pb2.Usage, pricing: common_pb2.Pricing) -> common_pb2.Cost:
    """What ``usage`` costs at ``pricing`` (prices per million tokens, in nanos).

    Uncached input is ``input_tokens - cached_input_tokens -
    cache_creation_input_tokens``. Cached and cache-creation input are charged at
    their own prices, or at the input price when the version sets none (a price
    of 0 means "no separate price", not "free"). Each part is rounded to the
    nearest nano on its own; ``total_nanos`` is their sum.
    """
    cached = max(usage.cached_input_tokens, 0)
    created = max(usage.cache_creation_input_tokens, 0)
    uncached = max(usage.input_tokens - cached - created, 0)
    cached_price = pricing.cached_input_per_million_nanos or pricing.input_per_million_nanos
    created_price = (
        pricing.cache_creation_input_per_million_nanos or pricing.input_per_million_nanos
    )
    cost = common_pb2.Cost(
        currency_code=pricing.currency_code or "USD",
        input_nanos=_price(uncached, pricing.input_per_million_nanos),
        output_nanos=_price(usage.output_tokens, pricing.output_per_million_nanos),
        cached_input_nanos=_price(cached, cached_price),
        cache_creation_input_nanos=_price(created, created_price),
    )
    cost.total_nanos = (
        cost.input_nanos
        + cost.output_nanos
        + cost.cached_input_nanos
        + cost.cache_creation_input_nanos
    )
    return cost


def estimated_cost_nanos(input_tokens: int, output_tokens: int, pricing: common_pb2.Pricing) -> int:
    """Expected cost of a request before it runs (no prompt caching assumed)."""
    return _price(input_tokens, pricing.input_per_million_nanos) + _price(
        output_tokens, pricing.output_per_million_nanos
    )
