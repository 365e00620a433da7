"""Who the provider is and where its API lives."""

from __future__ import annotations

PROVIDER = "anthropic"
"""The plugin name, also reported as ``served_by.provider``."""

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header this adapter's wire format follows."""
