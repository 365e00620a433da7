"""Who the provider is and where its API lives."""

from __future__ import annotations

PROVIDER = "gemini"
"""The plugin name, also reported as ``served_by.provider``."""

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"


def model_resource(model: str) -> str:
    """The resource name of ``model``: ``models/<id>`` for a bare id, else as given.

    A name with a collection already (``models/...``, ``tunedModels/...``) is kept.
    """
    return model if "/" in model else f"models/{model}"
