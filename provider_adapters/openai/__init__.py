"""The ``openai`` provider plugin: OpenAI, Azure OpenAI and OpenAI-compatible servers."""

from __future__ import annotations

from provider_adapters.base import AdapterPlugin
from provider_adapters.openai.adapter import CAPABILITIES, PROVIDER, OpenAIAdapter

plugin = AdapterPlugin(name=PROVIDER, create=OpenAIAdapter, capabilities=CAPABILITIES)
"""What the ``llmgw.provider_adapters`` entry point ``openai`` names."""

__all__ = ["OpenAIAdapter", "plugin"]
