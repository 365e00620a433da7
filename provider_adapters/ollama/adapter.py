"""The Ollama native API adapter (``POST /api/chat``, ``POST /api/embed``).

No authentication by default; with an API key (e.g. behind a proxy or for
ollama.com) requests carry ``Authorization: Bearer <key>``. Images must be
inline base64 (data URLs), so VISION is not declared.

Deployment options (any other key is refused at construction):

``num_ctx``
    Context window to load the model with (``options.num_ctx``); unset uses
    the model's default.
``keep_alive``
    How long the server keeps the model loaded after a request (``"5m"``,
    ``"-1"``...); unset uses the server default.
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
from provider_adapters.http import ndjson_objects
from provider_adapters.ollama.embeddings import embed_body, embed_response
from provider_adapters.ollama.errors import parse_error
from provider_adapters.ollama.identity import DEFAULT_BASE_URL, PROVIDER
from provider_adapters.ollama.request import chat_body
from provider_adapters.ollama.response import completion_result
from provider_adapters.ollama.stream import StreamTranslator
from provider_adapters.support.json_values import Json
from provider_adapters.support.options import OptionReader
from provider_adapters.support.streams import closing
from provider_adapters.support.transport import provider_http

CAPABILITIES = frozenset(
    {Capability.STREAMING, Capability.TOOLS, Capability.JSON_SCHEMA, Capability.EMBEDDINGS}
)


class OllamaAdapter(ProviderAdapter):
    """One Ollama deployment; see the module docstring for its options."""

    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES

    def __init__(
        self, deployment: Deployment, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        options = OptionReader(PROVIDER, deployment.options, {"num_ctx", "keep_alive"})
        num_ctx = options.optional_positive_int("num_ctx")
        self._runner_options: Json = {} if num_ctx is None else {"num_ctx": num_ctx}
        self._keep_alive = options.text("keep_alive")
        self._model = deployment.model
        headers = {}
        if deployment.api_key is not None:
            headers["authorization"] = f"Bearer {deployment.api_key.value}"
        self._http = provider_http(
            deployment,
            provider=PROVIDER,
            default_base_url=DEFAULT_BASE_URL,
            headers=headers,
            parse_error=parse_error,
            transport=transport,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """One ``/api/chat`` call with ``stream: false``."""
        answer = await self._http.post_json("/api/chat", self._body(request, stream=False))
        result = completion_result(answer, model=self._model)
        result.request_id = request.request_id
        return result

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """One ``/api/chat`` call with ``stream: true``: deltas, then the result.

        The body is read to its end before the result is yielded, so the
        connection goes back to the pool.
        """
        translator = StreamTranslator(self._model)
        lines = self._http.stream_lines("/api/chat", self._body(request, stream=True))
        async with closing(lines), closing(ndjson_objects(lines, PROVIDER)) as objects:
            async for payload in objects:
                for item in translator.feed(payload):
                    yield item
        result = translator.result()
        result.request_id = request.request_id
        yield result

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """One ``/api/embed`` call for all of ``request.inputs``."""
        if not request.inputs:
            return EmbedResponse(request_id=request.request_id)
        body = embed_body(
            request,
            model=self._model,
            runner_options=self._runner_options,
            keep_alive=self._keep_alive,
        )
        answer = await self._http.post_json("/api/embed", body)
        response = embed_response(answer, model=self._model, count=len(request.inputs))
        response.request_id = request.request_id
        return response

    async def aclose(self) -> None:
        """Close the deployment's pooled connections."""
        await self._http.aclose()

    def _body(self, request: CompletionRequest, *, stream: bool) -> Json:
        return chat_body(
            request,
            model=self._model,
            stream=stream,
            runner_options=self._runner_options,
            keep_alive=self._keep_alive,
        )
