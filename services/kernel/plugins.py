"""The plugin registry: named extensions found through Python entry points.

Everything specific to a provider, a gateway filter, a fine-tuning backend or a
service process is a plugin in one of the :class:`PluginGroup` entry-point groups.
A separate pip package adds one by declaring, in its ``pyproject.toml``::

    [project.entry-points."llmgw.provider_adapters"]
    myprovider = "my_package.adapter:plugin"

A plugin object declares ``plugin_api_version: int``; loading refuses a plugin built
for another major version of its group's interface with a :class:`PluginError` that
names the plugin, the package it came from, and both versions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class PluginGroup(enum.StrEnum):
    """The entry-point groups llmgw looks in."""

    PROVIDER_ADAPTERS = "llmgw.provider_adapters"
    GATEWAY_FILTERS = "llmgw.gateway_filters"
    FINETUNING_BACKENDS = "llmgw.finetuning_backends"
    SERVICES = "llmgw.services"


class PluginError(RuntimeError):
    """A plugin is unknown, fails to import, has the wrong type or API version."""


@dataclass(frozen=True, slots=True)
class PluginSpec(Generic[T]):
    """What a group expects of its plugins: their type and interface version."""

    group: str
    kind: type[T]
    api_version: int


class PluginRegistry(Generic[T]):
    """The plugins of one group, loaded on first use and kept by name.

    ``available`` defaults to the installed entry points of the group; tests and
    embedders may pass their own.
    """

    def __init__(self, spec: PluginSpec[T], available: Iterable[EntryPoint] | None = None) -> None:
        self._spec = spec
        found = entry_points(group=spec.group) if available is None else available
        self._entry_points = {ep.name: ep for ep in found}
        self._loaded: dict[str, T] = {}

    def names(self) -> list[str]:
        """The names of every plugin of the group, sorted."""
        return sorted(self._entry_points)

    def get(self, name: str) -> T:
        """The plugin called ``name``, imported and checked on first use."""
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def _load(self, name: str) -> T:
        entry = self._entry_points.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none installed"
            raise PluginError(f"no {self._spec.group} plugin named {name!r} (known: {known})")
        origin = entry.dist.name if entry.dist is not None else entry.value
        try:
            plugin = entry.load()
        except Exception as exc:
            raise PluginError(f"plugin {name!r} from {origin} failed to import: {exc}") from exc
        if not isinstance(plugin, self._spec.kind):
            raise PluginError(
                f"plugin {name!r} from {origin} is a {type(plugin).__name__}, "
                f"not a {self._spec.kind.__name__}"
            )
        version = getattr(plugin, "plugin_api_version", None)
        if version != self._spec.api_version:
            raise PluginError(
                f"plugin {name!r} from {origin} implements {self._spec.group} API version "
                f"{version}, but this llmgw supports version {self._spec.api_version}"
            )
        return plugin
