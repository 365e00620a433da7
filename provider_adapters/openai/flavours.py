"""Where an OpenAI-style API lives and how it wants to be called: one class per flavour.

A flavour turns a :class:`~provider_adapters.base.Deployment` into the base URL,
the request path of each operation and the fixed headers (credentials). The
default flavour is OpenAI itself; every other server speaking the Chat
Completions API is the same flavour with another ``base_url``. Azure OpenAI
differs in paths and credentials only, so :class:`AzureFlavour` overrides just
those. Each flavour names the option keys it reads; any other key is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import quote

from provider_adapters.base import Deployment
from provider_adapters.support.options import InvalidDeploymentOptions, OptionReader

CHAT_COMPLETIONS = "chat/completions"
EMBEDDINGS = "embeddings"

DEFAULT_AZURE_API_VERSION = "2024-10-21"
"""The Azure OpenAI data-plane GA version used when ``api_version`` is not set."""


class OpenAIFlavour:
    """OpenAI's own API and every OpenAI-compatible server (``Authorization: Bearer``).

    Options: ``flavour`` (``openai``, the default), ``organization`` and
    ``project`` (sent as ``OpenAI-Organization`` / ``OpenAI-Project``).
    """

    name: ClassVar[str] = "openai"
    option_keys: ClassVar[frozenset[str]] = frozenset({"flavour", "organization", "project"})
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"

    def __init__(self, deployment: Deployment) -> None:
        OptionReader(f"openai ({self.name} flavour)", deployment.options, self.option_keys)
        self.deployment = deployment
        self.options = deployment.options
        self.base_url = (deployment.base_url or self.default_base_url).rstrip("/")
        if not self.base_url:
            raise InvalidDeploymentOptions(
                f"the {self.name} flavour of the openai adapter needs a base_url"
            )

    def path(self, operation: str) -> str:
        """The request path of ``operation`` (e.g. ``chat/completions``), relative to base_url."""
        return operation

    def headers(self) -> dict[str, str]:
        """Headers sent with every request: credentials and account selection."""
        headers: dict[str, str] = {}
        if self.deployment.api_key is not None:
            headers["Authorization"] = f"Bearer {self.deployment.api_key.value}"
        if "organization" in self.options:
            headers["OpenAI-Organization"] = self.options["organization"]
        if "project" in self.options:
            headers["OpenAI-Project"] = self.options["project"]
        return headers


class AzureFlavour(OpenAIFlavour):
    """Azure OpenAI: ``base_url`` is the resource endpoint, the key goes in ``api-key``.

    Requests go to ``/openai/deployments/{azure_deployment}/{operation}?api-version=...``.
    Options: ``flavour`` (``azure``), ``api_version`` (default
    :data:`DEFAULT_AZURE_API_VERSION`), ``azure_deployment`` (default: the
    deployment's ``model``).
    """

    name: ClassVar[str] = "azure"
    option_keys: ClassVar[frozenset[str]] = frozenset(
        {"flavour", "api_version", "azure_deployment"}
    )
    default_base_url: ClassVar[str] = ""

    def path(self, operation: str) -> str:
        deployment_name = self.options.get("azure_deployment") or self.deployment.model
        version = self.options.get("api_version") or DEFAULT_AZURE_API_VERSION
        return (
            f"openai/deployments/{quote(deployment_name, safe='')}/{operation}"
            f"?api-version={quote(version, safe='')}"
        )

    def headers(self) -> dict[str, str]:
        if self.deployment.api_key is None:
            return {}
        return {"api-key": self.deployment.api_key.value}


FLAVOURS: Mapping[str, type[OpenAIFlavour]] = MappingProxyType(
    {OpenAIFlavour.name: OpenAIFlavour, AzureFlavour.name: AzureFlavour}
)
"""Every flavour, by the value of the ``flavour`` option."""


def flavour_for(deployment: Deployment) -> OpenAIFlavour:
    """The flavour ``deployment.options["flavour"]`` names (default ``openai``), validated."""
    name = deployment.options.get("flavour", OpenAIFlavour.name)
    flavour = FLAVOURS.get(name)
    if flavour is None:
        raise InvalidDeploymentOptions(
            f"unknown flavour {name!r} of the openai adapter (known: {', '.join(sorted(FLAVOURS))})"
        )
    return flavour(deployment)
