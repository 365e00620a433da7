"""Anthropic (Messages API) provider adapter plugin."""

from __future__ import annotations

from provider_adapters.anthropic.adapter import CAPABILITIES, AnthropicAdapter
from provider_adapters.anthropic.identity import PROVIDER
from provider_adapters.base import AdapterPlugin

plugin = AdapterPlugin(name=PROVIDER, create=AnthropicAdapter, capabilities=CAPABILITIES)
"""The entry point ``anthropic = "provider_adapters.anthropic:plugin"``."""

__all__ = ["AnthropicAdapter", "plugin"]
