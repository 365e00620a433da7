"""The gRPC metadata the inference service reads and writes besides its messages.

Inbound: the caller's identity, as :mod:`services.kernel.identity` describes.

Outbound, in the trailing metadata of ``Complete``, ``StreamComplete`` and
``Embed`` (decimal integers, so the gateway can account without decoding
messages):

=============================  =======================================
``llmgw-usage-input-tokens``   input tokens of the request
``llmgw-usage-output-tokens``  output tokens of the request
``llmgw-cost-nanos``           total cost in nanos of ``llmgw-cost-currency``
``llmgw-cost-currency``        ISO 4217 code of the cost (absent when unknown)
``llmgw-cached``               ``1`` when served from the response cache, else ``0``
=============================  =======================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmgw.common.v1 import common_pb2
from services.kernel.identity import principal_of

USAGE_INPUT_TOKENS = "llmgw-usage-input-tokens"
USAGE_OUTPUT_TOKENS = "llmgw-usage-output-tokens"
COST_NANOS = "llmgw-cost-nanos"
COST_CURRENCY = "llmgw-cost-currency"
CACHED = "llmgw-cached"

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a call, as the gateway vouches for it."""

    api_key_id: str = ""
    project: str = ""


def caller_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """The :class:`Caller` named in invocation metadata (empty fields when absent)."""
    principal = principal_of(metadata)
    return Caller(api_key_id=principal.api_key_id, project=principal.project_id)


def usage_trailers(usage: common_pb2.Usage, cost: common_pb2.Cost, *, cached: bool) -> Metadata:
    """The trailing metadata that reports ``usage`` and ``cost`` of one call."""
    trailers: list[tuple[str, str]] = [
        (USAGE_INPUT_TOKENS, str(usage.input_tokens)),
        (USAGE_OUTPUT_TOKENS, str(usage.output_tokens)),
        (COST_NANOS, str(cost.total_nanos)),
        (CACHED, "1" if cached else "0"),
    ]
    if cost.currency_code:
        trailers.append((COST_CURRENCY, cost.currency_code))
    return tuple(trailers)
