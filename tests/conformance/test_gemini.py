"""The conformance kit on the ``gemini`` adapter."""

from __future__ import annotations

import pytest

from provider_adapters.conformance.suite import AdapterConformance
from provider_adapters.conformance.wire import ProviderWire
from provider_adapters.conformance.wires.gemini import GeminiWire


class TestGemini(AdapterConformance):
    @pytest.fixture
    def wire(self) -> ProviderWire:
        return GeminiWire()
