"""Building a deployment's :class:`~provider_adapters.http.ProviderHttp`."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from provider_adapters.base import Deployment
from provider_adapters.http import ErrorParser, HttpSettings, ProviderHttp


def provider_http(
    deployment: Deployment,
    *,
    provider: str,
    default_base_url: str,
    headers: Mapping[str, str],
    parse_error: ErrorParser,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProviderHttp:
    """One pooled client for ``deployment`` (its base URL, or ``default_base_url``).

    The deployment's API key is handed on as a secret, masked in error messages.
    """
    timeouts = deployment.timeouts
    settings = HttpSettings(
        base_url=(deployment.base_url or default_base_url).rstrip("/"),
        provider=provider,
        connect_timeout=timeouts.connect,
        first_byte_timeout=timeouts.first_byte,
        between_chunks_timeout=timeouts.between_chunks,
        total_timeout=timeouts.total,
        max_connections=deployment.max_connections,
        default_headers=dict(headers),
        secrets=() if deployment.api_key is None else (deployment.api_key.value,),
    )
    return ProviderHttp(settings, parse_error, transport)
