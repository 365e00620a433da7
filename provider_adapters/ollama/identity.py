"""Who the provider is and where its API lives."""

from __future__ import annotations

PROVIDER = "ollama"
"""The plugin name, also reported as ``served_by.provider``."""

DEFAULT_BASE_URL = "http://localhost:11434"
