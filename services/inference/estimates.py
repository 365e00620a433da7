"""Pricing what a request used when the engine could not: cancelled streams.

When a caller cancels a stream (or its deadline passes) the engine never
produces a result, so the tokens are estimated from what was streamed (see
:class:`~services.inference.outcome.RequestTracker`) and priced here at the
listed prices of the model name the caller asked for (for a group, the prices
``ListModels`` shows for it). Unknown names cost nothing.
"""

from __future__ import annotations

from llmgw.common.v1 import common_pb2
from services.inference.engine import CompletionEngine
from services.inference.routing.pricing import cost_of


class ListedPrices:
    """A pricer: ``(requested model, usage) -> cost`` at the engine's listed prices."""

    def __init__(self, engine: CompletionEngine) -> None:
        """Read prices from ``engine.list_models()`` at each call (the table may change)."""
        self._engine = engine

    def __call__(self, model: str, usage: common_pb2.Usage) -> common_pb2.Cost:
        """The cost of ``usage`` at ``model``'s listed prices; zero when not listed."""
        for info in self._engine.list_models():
            if info.name == model and info.HasField("pricing"):
                return cost_of(usage, info.pricing)
        return common_pb2.Cost()
