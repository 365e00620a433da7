"""The conformance kit on the ``openai`` adapter: OpenAI itself and the Azure flavour."""

from __future__ import annotations

import pytest

from provider_adapters.conformance.suite import AdapterConformance
from provider_adapters.conformance.wire import ProviderWire
from provider_adapters.conformance.wires.openai import AzureOpenAIWire, OpenAIWire


class TestOpenAI(AdapterConformance):
    @pytest.fixture
    def wire(self) -> ProviderWire:
        return OpenAIWire()


class TestAzureOpenAI(AdapterConformance):
    @pytest.fixture
    def wire(self) -> ProviderWire:
        return AzureOpenAIWire()
