"""The conformance kit on the ``ollama`` adapter."""

from __future__ import annotations

import pytest

from provider_adapters.conformance.suite import AdapterConformance
from provider_adapters.conformance.wire import ProviderWire
from provider_adapters.conformance.wires.ollama import OllamaWire


class TestOllama(AdapterConformance):
    @pytest.fixture
    def wire(self) -> ProviderWire:
        return OllamaWire()
