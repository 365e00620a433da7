"""The ``usage`` process: UsageService and the usage pipeline on the kernel's server bootstrap.

Its resources (database, Redis spend ledger, Kafka batch consumer) are opened
by one lifespan, see :mod:`services.usage.runtime`; its settings are
:class:`~services.usage.settings.UsageSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from llmgw.usage.v1 import usage_pb2
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, ServiceRegistration
from services.usage.runtime import UsageRuntime
from services.usage.settings import UsageSettings

SERVICE_NAME = usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name


def build(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> ServiceApp:
    """The usage process for ``settings``.

    ``registry`` receives the pipeline metrics (it should be the one the server
    exposes); ``env`` is where SASL variables are read (default: a copy of the
    process environment, taken now).
    """
    metrics = registry if registry is not None else CollectorRegistry()
    runtime = UsageRuntime(
        UsageSettings.of(settings), metrics, dict(os.environ) if env is None else env
    )
    return ServiceApp(
        name="usage",
        services=(ServiceRegistration(SERVICE_NAME, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
        registry=metrics,
    )


plugin = ServicePlugin(name="usage", default_port=50055, build=build, settings_model=UsageSettings)
