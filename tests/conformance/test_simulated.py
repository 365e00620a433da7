"""The conformance kit for network-free adapters, on the built-in ``simulated`` provider."""

from __future__ import annotations

import pytest

from provider_adapters.base import Capability, Deployment
from provider_adapters.conformance.offline import OfflineAdapterConformance, OfflineScenarios
from provider_adapters.simulated import CAPABILITIES, PROVIDER


class SimulatedScenarios:
    """Healthy, failing and slow deployments of the simulated provider."""

    provider: str = PROVIDER
    capabilities: frozenset[Capability] = CAPABILITIES

    def healthy(self) -> Deployment:
        return Deployment(PROVIDER, "sim-1", options={"output_tokens": "8"})

    def failing(self, http_status: int) -> Deployment:
        options = {"error_rate": "1", "error_status": str(http_status)}
        return Deployment(PROVIDER, "sim-1", options=options)

    def slow(self) -> Deployment:
        options = {"output_tokens": "500", "tokens_per_second": "100"}
        return Deployment(PROVIDER, "sim-1", options=options)


class TestSimulated(OfflineAdapterConformance):
    @pytest.fixture
    def offline(self) -> OfflineScenarios:
        return SimulatedScenarios()
