"""Ollama (native API) provider adapter plugin."""

from __future__ import annotations

from provider_adapters.base import AdapterPlugin
from provider_adapters.ollama.adapter import CAPABILITIES, OllamaAdapter
from provider_adapters.ollama.identity import PROVIDER

plugin = AdapterPlugin(name=PROVIDER, create=OllamaAdapter, capabilities=CAPABILITIES)
"""The entry point ``ollama = "provider_adapters.ollama:plugin"``."""

__all__ = ["OllamaAdapter", "plugin"]
