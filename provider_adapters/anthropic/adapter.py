"""The Anthropic Messages API adapter (``POST {base_url}/v1/messages``).

Deployment options (any other key is refused at construction):

``default_max_tokens``
    ``max_tokens`` sent when a request sets no ``max_output_tokens`` (the API
    requires one); default 4096.
``beta``
    Value of the ``anthropic-beta`` header (comma-separated feature names);
    unset sends no such header.

Authentication is the ``x-api-key`` header; every request carries
``anthropic-version: 2023-06-01``. Token counting uses
``POST /v1/messages/count_tokens``. Embeddings are not offered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import httpx

from provider_adapters.anthropic.errors import parse_error
from provider_adapters.anthropic.identity import API_VERSION, DEFAULT_BASE_URL, PROVIDER
from provider_adapters.anthropic.request import conversation_body, messages_body
from provider_adapters.anthropic.response import completion_result
from provider_adapters.anthropic.stream import StreamTranslator
from provider_adapters.base import (
    Capability,
    CompletionRequest,
    CompletionResult,
    Deployment,
    ProviderAdapter,
    StreamEvent,
)
from provider_adapters.errors import MalformedResponse
from provider_adapters.http import sse_events
from provider_adapters.support.options import OptionReader
from provider_adapters.support.streams import closing
from provider_adapters.support.transport import provider_http

CAPABILITIES = frozenset({Capability.STREAMING, Capability.TOOLS, Capability.VISION})
DEFAULT_MAX_TOKENS = 4096


class AnthropicAdapter(ProviderAdapter):
    """One Anthropic deployment; see the module docstring for its options."""

    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES

    def __init__(
        self, deployment: Deployment, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        options = OptionReader(PROVIDER, deployment.options, {"default_max_tokens", "beta"})
        self._model = deployment.model
        self._default_max_tokens = options.positive_int("default_max_tokens", DEFAULT_MAX_TOKENS)
        headers = {"anthropic-version": API_VERSION}
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.value
        beta = options.text("beta")
        if beta:
            headers["anthropic-beta"] = beta
        self._http = provider_http(
            deployment,
            provider=PROVIDER,
            default_base_url=DEFAULT_BASE_URL,
            headers=headers,
            parse_error=parse_error,
            transport=transport,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """One ``/v1/messages`` call, its answer translated whole."""
        body = self._body(request)
        answer = await self._http.post_json("/v1/messages", body)
        result = completion_result(answer, model=self._model)
        result.request_id = request.request_id
        return result

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """A streamed ``/v1/messages`` call: deltas, then the result if ``message_stop`` came.

        The body is read to its end before the result is yielded, so the
        connection goes back to the pool.
        """
        body = {**self._body(request), "stream": True}
        translator = StreamTranslator(self._model)
        async with (
            closing(self._http.stream_lines("/v1/messages", body)) as lines,
            closing(sse_events(lines)) as events,
        ):
            async for event in events:
                for item in translator.feed(event):
                    yield item
        result = translator.result()
        result.request_id = request.request_id
        yield result

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        """Input tokens as ``/v1/messages/count_tokens`` counts them."""
        body = conversation_body(request, model=self._model)
        answer = await self._http.post_json("/v1/messages/count_tokens", body)
        count = answer.get("input_tokens")
        if not isinstance(count, int):
            raise MalformedResponse("anthropic token count has no input_tokens", provider=PROVIDER)
        return count

    async def aclose(self) -> None:
        """Close the deployment's pooled connections."""
        await self._http.aclose()

    def _body(self, request: CompletionRequest) -> dict[str, object]:
        return messages_body(
            request, model=self._model, default_max_tokens=self._default_max_tokens
        )
