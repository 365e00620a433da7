"""The ``inference`` process: InferenceService on the kernel's server bootstrap.

Its resources (Redis, event bus, usage recorder, router, cache) are opened by one
lifespan, see :mod:`services.inference.runtime`; its settings are
:class:`~services.inference.settings.InferenceSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from llmgw.inference.v1 import inference_pb2
from services.inference.runtime import InferenceRuntime
from services.inference.settings import InferenceSettings
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, ServiceRegistration

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def build(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> ServiceApp:
    """The inference process for ``settings``.

    ``registry`` receives the inference metrics (it should be the one the server
    exposes); ``env`` is where credential variables are read (default: a copy of
    the process environment, taken now).
    """
    metrics = registry if registry is not None else CollectorRegistry()
    runtime = InferenceRuntime(
        InferenceSettings.of(settings), metrics, dict(os.environ) if env is None else env
    )
    return ServiceApp(
        name="inference",
        services=(ServiceRegistration(SERVICE_NAME, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
        registry=metrics,
    )


plugin = ServicePlugin(
    name="inference", default_port=50052, build=build, settings_model=InferenceSettings
)
