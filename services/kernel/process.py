"""Service processes as plugins: how ``llmgw serve NAME`` finds what to serve.

Each service package exposes a :class:`ServicePlugin` in the ``llmgw.services``
entry-point group; its ``build`` turns the process settings into a
:class:`~services.kernel.server.ServiceApp`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint

from services.kernel.config import Settings
from services.kernel.plugins import PluginGroup, PluginRegistry, PluginSpec
from services.kernel.server import ServiceApp

SERVICE_API_VERSION = 1
"""Version of the :class:`ServicePlugin` interface."""


@dataclass(frozen=True, slots=True)
class ServicePlugin:
    """One kind of llmgw process: its name, default port, and app factory.

    ``settings_model`` is the settings class its config is loaded into (a subclass
    of :class:`Settings` with the process's own sections); ``build`` receives an
    instance of it.
    """

    name: str
    default_port: int
    build: Callable[[Settings], ServiceApp]
    plugin_api_version: int = SERVICE_API_VERSION
    settings_model: type[Settings] = Settings


SERVICES = PluginSpec(PluginGroup.SERVICES.value, ServicePlugin, SERVICE_API_VERSION)


def service_registry(
    available: Iterable[EntryPoint] | None = None,
) -> PluginRegistry[ServicePlugin]:
    """The registry of installed service processes."""
    return PluginRegistry(SERVICES, available)
