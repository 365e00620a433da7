"""Token usage as a provider reported it, in llmgw's ``Usage`` message."""

from __future__ import annotations

from llmgw.common.v1 import common_pb2


def provider_usage(
    input_tokens: int,
    output_tokens: int = 0,
    *,
    cached_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> common_pb2.Usage:
    """Usage reported by the provider: ``total_tokens`` is input plus output.

    ``input_tokens`` already includes cached and cache-creation tokens and
    ``output_tokens`` includes reasoning tokens; the other counts break them down.
    """
    return common_pb2.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
        reasoning_tokens=reasoning_tokens,
        total_tokens=input_tokens + output_tokens,
        source=common_pb2.USAGE_SOURCE_PROVIDER,
    )
