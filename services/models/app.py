"""The ``models`` process: ModelRegistryService on the kernel's server bootstrap.

Its resources (database, event bus, registry, change feed, event relay) are
opened by one lifespan, see :mod:`services.models.runtime`; its settings are
:class:`~services.models.settings.ModelsSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from llmgw.models.v1 import models_pb2
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, ServiceRegistration
from services.models.runtime import RegistryRuntime
from services.models.settings import ModelsSettings

SERVICE_NAME = models_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"].full_name


def build(settings: Settings, env: Mapping[str, str] | None = None) -> ServiceApp:
    """The models process for ``settings``; ``env`` is where SASL variables are read
    (default: a copy of the process environment, taken now)."""
    runtime = RegistryRuntime(ModelsSettings.of(settings), dict(os.environ) if env is None else env)
    return ServiceApp(
        name="models",
        services=(ServiceRegistration(SERVICE_NAME, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
    )


plugin = ServicePlugin(
    name="models", default_port=50053, build=build, settings_model=ModelsSettings
)
