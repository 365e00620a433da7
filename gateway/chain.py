"""The filter chain: builds the configured filters once and runs their hooks per call.

Hooks a filter does not override are left out when the chain is built, so a
chain of observers (access log, metrics) adds no awaits to a call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from gateway.filters.base import (
    Call,
    CallOutcome,
    FilterContext,
    FilterPlugin,
    GatewayFilter,
    Stop,
)
from gateway.settings import FilterSettings
from services.kernel.config import ConfigError
from services.kernel.plugins import PluginRegistry

_log = logging.getLogger("llmgw.gateway.chain")


class FilterChain:
    """The filters of the gateway, in configured order."""

    def __init__(self, filters: Sequence[GatewayFilter]) -> None:
        self.filters = tuple(filters)
        self._on_request = tuple(
            (index, f) for index, f in enumerate(self.filters) if _overrides(f, "on_request")
        )
        self._on_call_end = tuple(
            (index, f) for index, f in enumerate(self.filters) if _overrides(f, "on_call_end")
        )

    async def on_request(self, call: Call) -> tuple[Stop | None, int]:
        """Run ``on_request`` until a filter stops the call.

        Returns the stop (or None) and how many filters, counted from the first,
        the call reached; pass that count to :meth:`on_call_end`.
        """
        for index, gateway_filter in self._on_request:
            stop = await gateway_filter.on_request(call)
            if stop is not None:
                return stop, index + 1
        return None, len(self.filters)

    def first_message_readers(self, method: str) -> tuple[GatewayFilter, ...]:
        """The filters that read the first request message of ``method``, in order.

        When there are any, the proxy reads that message before calling upstream.
        """
        return tuple(f for f in self.filters if f.reads_first_message_of(method))

    def stream_message_readers(self, method: str) -> tuple[GatewayFilter, ...]:
        """The filters that read every request message of ``method``'s streams, in order."""
        return tuple(
            f
            for f in self.filters
            if f.reads_first_message_of(method) and f.reads_every_message_of(method)
        )

    async def on_stream_message(
        self, call: Call, message: bytes, readers: Sequence[GatewayFilter]
    ) -> tuple[Stop | None, str]:
        """Run ``on_stream_message`` of ``readers`` until one stops the call."""
        for gateway_filter in readers:
            stop = await gateway_filter.on_stream_message(call, message)
            if stop is not None:
                return stop, gateway_filter.name
        return None, ""

    async def on_first_message(
        self, call: Call, message: bytes, readers: Sequence[GatewayFilter]
    ) -> tuple[Stop | None, str]:
        """Run ``on_first_message`` of ``readers`` until one stops the call.

        Returns the stop (or None) and the name of the filter that stopped the call.
        """
        for gateway_filter in readers:
            stop = await gateway_filter.on_first_message(call, message)
            if stop is not None:
                return stop, gateway_filter.name
        return None, ""

    def on_call_end(self, call: Call, outcome: CallOutcome, reached: int) -> None:
        """Tell the first ``reached`` filters, last first, how the call ended."""
        for index, gateway_filter in reversed(self._on_call_end):
            if index >= reached:
                continue
            try:
                gateway_filter.on_call_end(call, outcome)
            except Exception:
                _log.exception("filter failed at call end", extra={"filter": gateway_filter.name})

    async def start(self) -> None:
        """Start every filter in order; if one fails, stop those already started and raise."""
        started: list[GatewayFilter] = []
        try:
            for gateway_filter in self.filters:
                await gateway_filter.start()
                started.append(gateway_filter)
        except BaseException:
            await _stop_all(reversed(started))
            raise

    async def stop(self) -> None:
        """Stop every filter, last first (after the drain)."""
        await _stop_all(reversed(self.filters))

    def close(self) -> None:
        """Close every filter (at gateway stop)."""
        for gateway_filter in self.filters:
            try:
                gateway_filter.close()
            except Exception:
                _log.exception("filter failed to close", extra={"filter": gateway_filter.name})


async def _stop_all(filters: Iterable[GatewayFilter]) -> None:
    for gateway_filter in filters:
        try:
            await gateway_filter.stop()
        except Exception:
            _log.exception("filter failed to stop", extra={"filter": gateway_filter.name})


def _overrides(gateway_filter: GatewayFilter, hook: str) -> bool:
    return getattr(type(gateway_filter), hook) is not getattr(GatewayFilter, hook)


def build_chain(
    settings: Sequence[FilterSettings],
    registry: PluginRegistry[FilterPlugin[Any]],
    context: FilterContext,
) -> FilterChain:
    """Build every configured filter from its validated config.

    Raises :class:`~services.kernel.config.ConfigError` naming the filter whose config
    is invalid; an unknown name raises the registry's ``PluginError``.
    """
    filters = []
    for position, entry in enumerate(settings):
        plugin = registry.get(entry.name)
        try:
            config = plugin.config_model.model_validate(entry.config)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid config of gateway filter {entry.name!r} "
                f"(gateway.filters[{position}]):\n{exc}"
            ) from exc
        gateway_filter = plugin.build(config, context)
        gateway_filter.name = entry.name
        filters.append(gateway_filter)
    return FilterChain(filters)
