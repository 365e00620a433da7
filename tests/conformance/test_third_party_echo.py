"""A provider adapter from another distribution, found by entry point, passes the kit.

``llmgw-echo-adapter`` (in ``tests/conformance/third_party/llmgw-echo-adapter``) is a
separate pip package declaring ``echo = "llmgw_echo_adapter:plugin"`` in the
``llmgw.provider_adapters`` group. ``make test`` installs it (see the Makefile); these
tests fail, rather than skip, when it is missing.
"""

from __future__ import annotations

from importlib.metadata import distribution

import pytest
from llmgw_echo_adapter.wire import EchoWire

from provider_adapters.base import adapter_registry
from provider_adapters.conformance.suite import AdapterConformance
from provider_adapters.conformance.wire import ProviderWire

DISTRIBUTION = "llmgw-echo-adapter"


def test_the_plugin_comes_from_the_separate_distribution() -> None:
    entry = next(
        ep
        for ep in distribution(DISTRIBUTION).entry_points
        if ep.group == "llmgw.provider_adapters"
    )
    assert (entry.name, entry.value) == ("echo", "llmgw_echo_adapter:plugin")
    assert "echo" in adapter_registry().names()


class TestEchoAdapter(AdapterConformance):
    @pytest.fixture
    def wire(self) -> ProviderWire:
        return EchoWire()
