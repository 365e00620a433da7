"""The built-in ``simulated`` provider: no network, deterministic, configurable."""

from provider_adapters.base import AdapterPlugin, Deployment
from provider_adapters.simulated.adapter import CAPABILITIES, PROVIDER, SimulatedAdapter


def _create(deployment: Deployment) -> SimulatedAdapter:
    return SimulatedAdapter(deployment)


plugin = AdapterPlugin(name=PROVIDER, create=_create, capabilities=CAPABILITIES)

__all__ = ["CAPABILITIES", "PROVIDER", "SimulatedAdapter", "plugin"]
