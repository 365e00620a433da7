"""Gateway filters: one module per filter, found by name.

The gateway's own filters are listed in :data:`BUILTIN_FILTERS`; other packages add
filters through the ``llmgw.gateway_filters`` entry-point group (an installed entry
point of the same name takes precedence). The interface is in
:mod:`gateway.filters.base`.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from gateway.filters.base import FILTER_API_VERSION, FilterPlugin
from services.kernel.plugins import PluginGroup, PluginRegistry, PluginSpec

BUILTIN_FILTERS = {
    "access_log": "gateway.filters.access_log:plugin",
    "authn": "gateway.filters.authn:plugin",
    "authz": "gateway.filters.authz:plugin",
    "metrics": "gateway.filters.metrics:plugin",
    "rate_limit": "gateway.filters.rate_limit:plugin",
    "budget": "gateway.filters.budget:plugin",
}
"""Name -> ``module:attribute`` of the filters that ship with the gateway."""

FILTERS: PluginSpec[FilterPlugin[Any]] = PluginSpec(
    PluginGroup.GATEWAY_FILTERS.value, FilterPlugin, FILTER_API_VERSION
)


def filter_registry(
    available: Iterable[EntryPoint] | None = None,
) -> PluginRegistry[FilterPlugin[Any]]:
    """The registry of filters: the built-in ones plus ``available`` (default: installed)."""
    group = PluginGroup.GATEWAY_FILTERS.value
    builtin = [EntryPoint(name, value, group) for name, value in BUILTIN_FILTERS.items()]
    extra = entry_points(group=group) if available is None else available
    return PluginRegistry(FILTERS, [*builtin, *extra])
