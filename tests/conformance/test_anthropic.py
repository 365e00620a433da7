"""The conformance kit on the ``anthropic`` adapter."""

from __future__ import annotations

import pytest

from provider_adapters.conformance.suite import AdapterConformance
from provider_adapters.conformance.wire import ProviderWire
from provider_adapters.conformance.wires.anthropic import AnthropicWire


class TestAnthropic(AdapterConformance):
    @pytest.fixture
    def wire(self) -> ProviderWire:
        return AnthropicWire()
