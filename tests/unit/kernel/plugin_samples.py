"""Objects that entry points in the plugin tests point at."""

from __future__ import annotations

from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp


def _build(settings: Settings) -> ServiceApp:
    return ServiceApp(name=settings.service)


good = ServicePlugin(name="good", default_port=1, build=_build)
future = ServicePlugin(name="future", default_port=1, build=_build, plugin_api_version=99)
not_a_plugin = 42
