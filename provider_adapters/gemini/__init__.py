"""Gemini API provider adapter plugin."""

from __future__ import annotations

from provider_adapters.base import AdapterPlugin
from provider_adapters.gemini.adapter import CAPABILITIES, GeminiAdapter
from provider_adapters.gemini.identity import PROVIDER

plugin = AdapterPlugin(name=PROVIDER, create=GeminiAdapter, capabilities=CAPABILITIES)
"""The entry point ``gemini = "provider_adapters.gemini:plugin"``."""

__all__ = ["GeminiAdapter", "plugin"]
