"""``llmgw-echo-adapter``: a provider plugin that lives outside llmgw's own distribution.

It is found through its ``llmgw.provider_adapters`` entry point (``echo``) and
passes the conformance kit with :class:`~llmgw_echo_adapter.wire.EchoWire`.
"""

from __future__ import annotations

from llmgw_echo_adapter.adapter import CAPABILITIES, PROVIDER, EchoAdapter
from provider_adapters.base import AdapterPlugin

plugin = AdapterPlugin(name=PROVIDER, create=EchoAdapter, capabilities=CAPABILITIES)

__all__ = ["EchoAdapter", "plugin"]
