"""The exact-match response cache, as an engine wrapped around any other engine.

The key is the SHA-256 of a canonical serialization (deterministic protobuf)
of exactly the fields that decide the answer: model, messages, tools,
tool choice, parallel tool calls, sampling and response format. The request
id and the gateway options are left out, so two callers asking the same thing
share an entry.

Per request (``RequestOptions``): ``bypass_cache`` skips the lookup (the result
may still be stored); ``cache_ttl`` overrides the configured TTL, zero means
"do not store".

A hit is returned as a result with ``cached=true``, the usage the provider
originally reported and a zero cost; a streamed request replays the stored
answer as chunks, then that result, and notes its placement as cached (so a
replay cancelled half-way is still flagged cached and free). A miss is stored
only when it finished normally (stop, length or tool calls, no error); a stream is stored once its
final result arrived, assembled from its chunks. Redis failures never fail a
request: the cache is then skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as redis
from google.protobuf.message import DecodeError
from redis.exceptions import RedisError

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from services.inference.engine import (
    CallContext,
    CompletionChunk,
    CompletionEngine,
    CompletionRequest,
    CompletionResult,
    Placement,
    StreamEvent,
)

_log = logging.getLogger(__name__)

KEY_VERSION = b"llmgw-completion-cache-v1\x00"
"""Mixed into every key, so a change of the key recipe cannot read old entries."""

_STORABLE = frozenset(
    {
        common_pb2.FINISH_REASON_STOP,
        common_pb2.FINISH_REASON_LENGTH,
        common_pb2.FINISH_REASON_TOOL_CALLS,
    }
)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Key prefix and default time to live of cache entries."""

    key_prefix: str = "llmgw:cache:v1:"
    ttl_seconds: float = 3600.0


def cache_key(request: CompletionRequest, resolution: str = "") -> str:
    """Hex SHA-256 of the answer-deciding fields of ``request``.

    ``resolution`` names the versions the model resolves to, so that moving an
    alias to a new version does not serve the old version's answers.
    """
    canonical = CompletionRequest(
        model=request.model,
        messages=request.messages,
        tools=request.tools,
        tool_choice=request.tool_choice,
        sampling=request.sampling,
        response_format=request.response_format,
    )
    if request.HasField("parallel_tool_calls"):
        canonical.parallel_tool_calls = request.parallel_tool_calls
    digest = hashlib.sha256(KEY_VERSION)
    digest.update(resolution.encode())
    digest.update(b"\0")
    digest.update(canonical.SerializeToString(deterministic=True))
    return digest.hexdigest()


class CachingEngine:
    """A :class:`~services.inference.engine.CompletionEngine` with a Redis cache in front.

    Embeddings, token counts and the model list pass straight through.
    """

    def __init__(self, inner: CompletionEngine, client: redis.Redis, config: CacheConfig) -> None:
        """Cache ``inner``'s completions in ``client`` (owned by the caller)."""
        self._inner = inner
        self._client = client
        self._config = config

    async def complete(self, request: CompletionRequest, call: CallContext) -> CompletionResult:
        """A cached result, or the inner engine's (stored when it finished normally)."""
        key = self._key(request)
        hit = await self._lookup(key, request)
        if hit is not None:
            return _as_hit(hit, call)
        result = await self._inner.complete(request, call)
        await self._store(key, request, result)
        return result

    async def stream(
        self, request: CompletionRequest, call: CallContext
    ) -> AsyncIterator[StreamEvent]:
        """A replayed stream for a hit, else the inner stream (stored once complete)."""
        key = self._key(request)
        hit = await self._lookup(key, request)
        if hit is not None:
            final = _as_hit(hit, call)
            final.ClearField("message")
            call.placement.place(
                Placement(
                    final.served_by,
                    common_pb2.Pricing(currency_code=final.cost.currency_code),
                    cached=True,
                )
            )
            for chunk in replay_chunks(hit.message):
                yield chunk
            yield final
            return
        assembler = MessageAssembler()
        async for event in self._inner.stream(request, call):
            if isinstance(event, CompletionChunk):
                assembler.add(event)
            elif _storable(event):
                stored = CompletionResult()
                stored.CopyFrom(event)
                stored.message.CopyFrom(assembler.message())
                await self._store(key, request, stored)
            yield event

    async def embed(
        self, request: inference_pb2.EmbedRequest, call: CallContext
    ) -> inference_pb2.EmbedResponse:
        """Not cached."""
        return await self._inner.embed(request, call)

    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest
    ) -> inference_pb2.CountTokensResponse:
        """Not cached."""
        return await self._inner.count_tokens(request)

    def list_models(self) -> list[inference_pb2.ModelInfo]:
        """The inner engine's models."""
        return self._inner.list_models()

    async def aclose(self) -> None:
        """Close the inner engine (the Redis client belongs to the caller)."""
        await self._inner.aclose()

    def resolution_of(self, model: str) -> str:
        """The inner engine's resolution of ``model``."""
        return self._inner.resolution_of(model)

    def _key(self, request: CompletionRequest) -> str:
        resolution = self._inner.resolution_of(request.model)
        return self._config.key_prefix + cache_key(request, resolution)

    async def _lookup(self, key: str, request: CompletionRequest) -> CompletionResult | None:
        if request.options.bypass_cache:
            return None
        try:
            raw = await self._client.get(key)
        except (RedisError, OSError) as exc:
            _log.warning("cache lookup failed, asking the provider: %r", exc)
            return None
        if raw is None:
            return None
        result = CompletionResult()
        try:
            result.ParseFromString(raw if isinstance(raw, bytes) else raw.encode())
        except DecodeError:
            _log.warning("ignoring an unreadable cache entry")
            return None
        return result

    async def _store(self, key: str, request: CompletionRequest, result: CompletionResult) -> None:
        if not _storable(result):
            return
        ttl = self._config.ttl_seconds
        if request.options.HasField("cache_ttl"):
            ttl = request.options.cache_ttl.ToNanoseconds() / 1e9
        milliseconds = round(ttl * 1000)
        if milliseconds <= 0:
            return
        entry = CompletionResult(
            message=result.message,
            finish_reason=result.finish_reason,
            usage=result.usage,
            served_by=result.served_by,
        )
        entry.cost.currency_code = result.cost.currency_code
        try:
            await self._client.set(key, entry.SerializeToString(), px=milliseconds)
        except (RedisError, OSError) as exc:
            _log.warning("cache store failed: %r", exc)


def _storable(result: CompletionResult) -> bool:
    return result.finish_reason in _STORABLE and not result.HasField("error")


def _as_hit(entry: CompletionResult, call: CallContext) -> CompletionResult:
    """The result of a hit: the stored answer and usage, cached, zero cost."""
    result = CompletionResult()
    result.CopyFrom(entry)
    result.request_id = call.request_id
    result.cached = True
    result.cost.CopyFrom(common_pb2.Cost(currency_code=entry.cost.currency_code))
    result.served_by.attempt_count = 0
    return result


def replay_chunks(message: inference_pb2.Message) -> list[CompletionChunk]:
    """A stored assistant message as stream chunks: reasoning, text, tool calls, refusal."""
    chunks: list[CompletionChunk] = []
    if message.reasoning_text:
        chunks.append(CompletionChunk(reasoning_delta=message.reasoning_text))
    text = "".join(part.text for part in message.content if part.HasField("text"))
    if text:
        chunks.append(CompletionChunk(text_delta=text))
    if message.tool_calls:
        chunks.append(
            CompletionChunk(
                tool_call_deltas=[
                    inference_pb2.ToolCallDelta(
                        index=index,
                        id=call.id,
                        function_name=call.function.name,
                        arguments_delta=call.function.arguments,
                    )
                    for index, call in enumerate(message.tool_calls)
                ]
            )
        )
    if message.refusal:
        chunks.append(CompletionChunk(refusal_delta=message.refusal))
    if not chunks:
        chunks.append(CompletionChunk())
    chunks[0].role = common_pb2.ROLE_ASSISTANT
    return chunks


class MessageAssembler:
    """Builds the whole assistant message from the chunks of a stream."""

    def __init__(self) -> None:
        """Start with nothing."""
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, inference_pb2.ToolCall] = {}

    def add(self, chunk: CompletionChunk) -> None:
        """Append the pieces ``chunk`` carries."""
        if chunk.text_delta:
            self._text.append(chunk.text_delta)
        if chunk.reasoning_delta:
            self._reasoning.append(chunk.reasoning_delta)
        if chunk.refusal_delta:
            self._refusal.append(chunk.refusal_delta)
        for delta in chunk.tool_call_deltas:
            call = self._calls.get(delta.index)
            if call is None:
                call = self._calls[delta.index] = inference_pb2.ToolCall()
            if delta.id:
                call.id = delta.id
            if delta.function_name:
                call.function.name = delta.function_name
            call.function.arguments += delta.arguments_delta

    def message(self) -> inference_pb2.Message:
        """The assistant message so far."""
        message = inference_pb2.Message(
            role=common_pb2.ROLE_ASSISTANT,
            reasoning_text="".join(self._reasoning),
            refusal="".join(self._refusal),
        )
        if self._text:
            message.content.append(inference_pb2.ContentPart(text="".join(self._text)))
        message.tool_calls.extend(self._calls[index] for index in sorted(self._calls))
        return message
