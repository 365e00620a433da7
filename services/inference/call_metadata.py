"""The gRPC metadata the inference service reads and writes besides its messages.

Inbound (set by the gateway after authenticating the caller; the gateway drops
any value a client sends under these keys):

=========================  ===========================================
``llmgw-api-key-id``       id of the API key that made the call
``llmgw-project-id``       project of that key
=========================  ===========================================

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

API_KEY_ID = "llmgw-api-key-id"
PROJECT_ID = "llmgw-project-id"

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
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (API_KEY_ID, PROJECT_ID) and isinstance(value, str):
            found[key] = value
    return Caller(api_key_id=found.get(API_KEY_ID, ""), project=found.get(PROJECT_ID, ""))


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
