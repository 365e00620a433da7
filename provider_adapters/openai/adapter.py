"""The OpenAI adapter: Chat Completions and Embeddings over pooled HTTP/1.1.

One adapter serves every server that speaks OpenAI's API; the deployment's
``options["flavour"]`` and ``base_url`` pick the server:

===================  ==========  ===============================================  ===========
server               flavour     base_url                                         credentials
===================  ==========  ===============================================  ===========
OpenAI               (default)   empty (``https://api.openai.com/v1``)            Bearer key
Azure OpenAI         ``azure``   ``https://<resource>.openai.azure.com``          ``api-key``
vLLM                 (default)   ``http://<host>:8000/v1``                        optional
Ollama               (default)   ``http://<host>:11434/v1``                       none
Together             (default)   ``https://api.together.xyz/v1``                  Bearer key
Groq                 (default)   ``https://api.groq.com/openai/v1``               Bearer key
===================  ==========  ===============================================  ===========

Option keys (anything else is refused when the adapter is built):

* default flavour: ``organization``, ``project``;
* ``azure``: ``api_version`` (default ``2024-10-21``), ``azure_deployment``
  (default: the deployment's model).

Requests are translated in :mod:`.request`, answers in :mod:`.response`, error
bodies in :mod:`.error_body`; paths and headers come from :mod:`.flavours`.
Streams ask for ``stream_options.include_usage`` so the final result carries
the provider's token counts; a stream must end with ``data: [DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

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
from provider_adapters.http import parse_json_object, sse_events
from provider_adapters.openai.error_body import parse_error
from provider_adapters.openai.flavours import CHAT_COMPLETIONS, EMBEDDINGS, flavour_for
from provider_adapters.openai.request import chat_body, embeddings_body
from provider_adapters.openai.response import (
    Shape,
    StreamState,
    completion_result,
    embed_response,
)
from provider_adapters.support.streams import closing
from provider_adapters.support.transport import provider_http

PROVIDER = "openai"
DONE = "[DONE]"

CAPABILITIES = frozenset(
    {
        Capability.STREAMING,
        Capability.TOOLS,
        Capability.JSON_SCHEMA,
        Capability.EMBEDDINGS,
        Capability.VISION,
    }
)


class OpenAIAdapter(ProviderAdapter):
    """One deployment of an OpenAI-style API; see the module docstring."""

    capabilities = CAPABILITIES

    def __init__(
        self, deployment: Deployment, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._flavour = flavour_for(deployment)
        self._model = deployment.model
        self._shape = Shape(PROVIDER)
        self._http = provider_http(
            deployment,
            provider=PROVIDER,
            default_base_url=self._flavour.base_url,
            headers=self._flavour.headers(),
            parse_error=parse_error,
            transport=transport,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """One Chat Completions call, answered whole."""
        body = chat_body(request, self._model, stream=False)
        answer = await self._http.post_json(self._flavour.path(CHAT_COMPLETIONS), body)
        result = completion_result(self._shape, answer)
        result.request_id = request.request_id
        result.served_by.provider = PROVIDER
        return result

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """One streamed Chat Completions call: deltas, then the result once ``[DONE]`` came.

        The rest of the body after ``[DONE]`` is read before the result is
        yielded, so the connection goes back to the pool.
        """
        body = chat_body(request, self._model, stream=True)
        state = StreamState(self._shape)
        done = False
        lines = self._http.stream_lines(self._flavour.path(CHAT_COMPLETIONS), body)
        async with closing(lines), closing(sse_events(lines)) as events:
            async for event in events:
                if done:
                    continue
                if event.data == DONE:
                    done = True
                    continue
                for delta in state.deltas(parse_json_object(event.data, PROVIDER)):
                    yield delta
        if not done:
            raise self._shape.malformed("the stream ended without [DONE]")
        result = state.result()
        result.request_id = request.request_id
        result.served_by.provider = PROVIDER
        yield result

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """One Embeddings call for every input, vectors in input order."""
        body = embeddings_body(request, self._model)
        answer = await self._http.post_json(self._flavour.path(EMBEDDINGS), body)
        response = embed_response(self._shape, answer)
        response.request_id = request.request_id
        response.served_by.provider = PROVIDER
        return response

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
