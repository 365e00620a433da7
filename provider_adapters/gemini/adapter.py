"""The Gemini API adapter (``generateContent``, ``streamGenerateContent``, embeddings).

Endpoints, under ``{base_url}/{api_version}/models/{model}``:
``:generateContent``, ``:streamGenerateContent?alt=sse``, ``:countTokens`` and
``:batchEmbedContents``. The API key goes in the ``x-goog-api-key`` header.

Deployment options (any other key is refused at construction):

``api_version``
    The API version path segment; default ``v1beta``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import httpx

from provider_adapters.base import (
    Capability,
    CompletionRequest,
    CompletionResult,
    Deployment,
    EmbedRequest,
    EmbedResponse,
    ProviderAdapter,
    StreamEvent,
)
from provider_adapters.errors import MalformedResponse
from provider_adapters.gemini.embeddings import embed_body, embed_response
from provider_adapters.gemini.errors import parse_error
from provider_adapters.gemini.identity import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    PROVIDER,
    model_resource,
)
from provider_adapters.gemini.request import generate_body
from provider_adapters.gemini.response import completion_result
from provider_adapters.gemini.stream import StreamTranslator
from provider_adapters.http import sse_events
from provider_adapters.support.options import OptionReader
from provider_adapters.support.streams import closing
from provider_adapters.support.transport import provider_http

CAPABILITIES = frozenset(
    {
        Capability.STREAMING,
        Capability.TOOLS,
        Capability.JSON_SCHEMA,
        Capability.VISION,
        Capability.EMBEDDINGS,
    }
)


class GeminiAdapter(ProviderAdapter):
    """One Gemini deployment; see the module docstring for its options."""

    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES

    def __init__(
        self, deployment: Deployment, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        options = OptionReader(PROVIDER, deployment.options, {"api_version"})
        version = (options.text("api_version") or DEFAULT_API_VERSION).strip("/")
        self._model = deployment.model.removeprefix("models/")
        self._prefix = f"/{version}/{model_resource(self._model)}"
        headers = {}
        if deployment.api_key is not None:
            headers["x-goog-api-key"] = deployment.api_key.value
        self._http = provider_http(
            deployment,
            provider=PROVIDER,
            default_base_url=DEFAULT_BASE_URL,
            headers=headers,
            parse_error=parse_error,
            transport=transport,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """One ``generateContent`` call, its answer translated whole."""
        answer = await self._http.post_json(
            f"{self._prefix}:generateContent", generate_body(request)
        )
        result = completion_result(answer, model=self._model)
        result.request_id = request.request_id
        return result

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """A ``streamGenerateContent`` call; ends with the result once the body ends."""
        translator = StreamTranslator(self._model)
        path = f"{self._prefix}:streamGenerateContent?alt=sse"
        async with (
            closing(self._http.stream_lines(path, generate_body(request))) as lines,
            closing(sse_events(lines)) as events,
        ):
            async for event in events:
                for item in translator.feed(event):
                    yield item
        result = translator.result()
        result.request_id = request.request_id
        yield result

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """One ``batchEmbedContents`` call for all of ``request.inputs``."""
        if not request.inputs:
            return EmbedResponse(request_id=request.request_id)
        answer = await self._http.post_json(
            f"{self._prefix}:batchEmbedContents", embed_body(request, model=self._model)
        )
        response = embed_response(answer, model=self._model, count=len(request.inputs))
        response.request_id = request.request_id
        return response

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        """Input tokens as ``countTokens`` counts them for the whole request."""
        body = {
            "generateContentRequest": {
                "model": model_resource(self._model),
                **generate_body(request),
            }
        }
        answer = await self._http.post_json(f"{self._prefix}:countTokens", body)
        count = answer.get("totalTokens")
        if not isinstance(count, int):
            raise MalformedResponse("gemini token count has no totalTokens", provider=PROVIDER)
        return count

    async def aclose(self) -> None:
        """Close the deployment's pooled connections."""
        await self._http.aclose()
