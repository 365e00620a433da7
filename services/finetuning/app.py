"""The ``finetuning`` process: FineTuningService on the kernel's server bootstrap.

Its resources (database, blob store, event bus, registry client, backends,
event relay, job runner) are opened by one lifespan, see
:mod:`services.finetuning.runtime`; its settings are
:class:`~services.finetuning.settings.FineTuningSettings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from llmgw.finetuning.v1 import finetuning_pb2
from services.finetuning.runtime import FineTuningRuntime
from services.finetuning.settings import FineTuningSettings
from services.kernel.config import Settings
from services.kernel.process import ServicePlugin
from services.kernel.server import ServiceApp, ServiceRegistration

SERVICE_NAME = finetuning_pb2.DESCRIPTOR.services_by_name["FineTuningService"].full_name


def build(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    env: Mapping[str, str] | None = None,
) -> ServiceApp:
    """The finetuning process for ``settings``; ``registry`` receives its metrics,
    ``env`` is where SASL variables and backend keys are read."""
    metrics = registry if registry is not None else CollectorRegistry()
    runtime = FineTuningRuntime(
        FineTuningSettings.of(settings), dict(os.environ) if env is None else env, None, metrics
    )
    return ServiceApp(
        name="finetuning",
        services=(ServiceRegistration(SERVICE_NAME, runtime.add_to_server),),
        lifespans=(runtime.lifespan,),
        registry=metrics,
    )


plugin = ServicePlugin(
    name="finetuning", default_port=50054, build=build, settings_model=FineTuningSettings
)
