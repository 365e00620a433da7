"""The HTTP transport shared by adapters: pooled connections, timeouts, error mapping.

One :class:`ProviderHttp` per deployment keeps a connection pool (HTTP/1.1
keep-alive) and applies the deployment's :class:`~provider_adapters.base.Timeouts`:
``connect`` to connection set-up, ``first_byte`` to the wait for response headers,
``between_chunks`` to every read of the body, ``total`` to the whole exchange.
Transport failures and non-2xx answers leave this module only as
:mod:`provider_adapters.errors` exceptions. Cancelling a caller closes the
upstream connection: the response is closed in a ``finally``.

Stream framings live here too: :func:`sse_events` (Server-Sent Events) and
:func:`ndjson_objects` (newline-delimited JSON), both over decoded lines, so chunk
boundaries that split a line or a UTF-8 character are handled by the decoder.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from provider_adapters.errors import (
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    error_for_status,
)

Json = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UpstreamError:
    """What a provider's error body says: message, context case, refused credentials, retry delay.

    ``auth_failed`` is for providers that refuse credentials with a 400 (see
    :func:`~provider_adapters.errors.error_for_status`). ``retry_after_seconds``
    (from the body) is used only when the answer has no ``retry-after`` header.
    """

    message: str
    context_window: bool = False
    retry_after_seconds: float | None = None
    auth_failed: bool = False


ErrorParser = Callable[[int, bytes], UpstreamError]
"""Reads a provider's error body (status, raw bytes) into an :class:`UpstreamError`."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Connection settings of one deployment.

    ``default_headers`` usually carry credentials, and ``secrets`` are the
    credential values themselves: neither is shown by ``repr``, and every
    secret is masked in the messages of the errors raised from provider bodies
    (some servers echo the key they refused).
    """

    base_url: str
    provider: str
    connect_timeout: float
    first_byte_timeout: float
    between_chunks_timeout: float
    total_timeout: float
    max_connections: int = 100
    default_headers: Mapping[str, str] | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)


class ProviderHttp:
    """A pooled HTTP client for one deployment; see the module docstring."""

    def __init__(
        self,
        settings: HttpSettings,
        parse_error: ErrorParser,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._parse_error = parse_error
        self._client = httpx.AsyncClient(
            base_url=settings.base_url,
            headers=dict(settings.default_headers or {}),
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.between_chunks_timeout,
                write=settings.between_chunks_timeout,
                pool=settings.connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            transport=transport,
        )

    async def post_json(
        self, path: str, body: Json, headers: Mapping[str, str] | None = None
    ) -> Json:
        """POST ``body`` as JSON and return the decoded JSON object of a 2xx answer."""
        try:
            async with asyncio.timeout(self._settings.total_timeout):
                async with self._open("POST", path, body, headers) as response:
                    raw = await self._guard(response.aread())
        except TimeoutError as exc:
            raise self._timeout("total") from exc
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise self._malformed(f"response body is not JSON: {exc}") from exc
        if not isinstance(decoded, dict):
            raise self._malformed("response body is not a JSON object")
        return decoded

    async def stream_lines(
        self, path: str, body: Json, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        """POST ``body`` and yield the decoded lines of a 2xx streamed answer."""
        deadline = time.monotonic() + self._settings.total_timeout
        async with self._open("POST", path, body, headers, deadline) as response:
            lines = response.aiter_lines()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timeout("total")
                try:
                    async with asyncio.timeout(remaining):
                        line = await self._guard(anext(lines))
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise self._timeout("total") from exc
                yield line

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        body: Json,
        headers: Mapping[str, str] | None,
        deadline: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        request = self._client.build_request(method, path, json=body, headers=headers)
        limit = self._settings.first_byte_timeout
        if deadline is not None:
            limit = min(limit, deadline - time.monotonic())
        try:
            async with asyncio.timeout(limit):
                response = await self._guard(self._client.send(request, stream=True))
        except TimeoutError as exc:
            raise self._timeout("first byte") from exc
        try:
            if response.status_code >= 300:
                raw = await self._guard(response.aread())
                raise self._status_error(response, raw)
            yield response
        finally:
            await response.aclose()

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, turning transport exceptions into provider errors."""
        try:
            result: T = await awaitable
        except httpx.TimeoutException as exc:
            raise self._timeout(type(exc).__name__) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise ProviderConnectionError(
                f"connection to {self._settings.provider} failed: {type(exc).__name__}",
                provider=self._settings.provider,
            ) from exc
        return result

    def _status_error(self, response: httpx.Response, raw: bytes) -> ProviderError:
        parsed = self._parse_error(response.status_code, raw)
        return error_for_status(
            response.status_code,
            masked(parsed.message, self._settings.secrets),
            provider=self._settings.provider,
            retry_after_seconds=_first_known(
                retry_after(response.headers), parsed.retry_after_seconds
            ),
            context_window=parsed.context_window,
            auth_failed=parsed.auth_failed,
        )

    def _timeout(self, which: str) -> ProviderTimeout:
        return ProviderTimeout(
            f"{self._settings.provider} did not answer in time ({which})",
            provider=self._settings.provider,
        )

    def _malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(what, provider=self._settings.provider)


def masked(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _first_known(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One Server-Sent Event: its ``event`` type (default ``message``) and ``data``."""

    event: str
    data: str


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Parse SSE framing: ``field: value`` lines, events ended by a blank line."""
    event = "message"
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SseEvent(event, "\n".join(data))


async def ndjson_objects(lines: AsyncIterator[str], provider: str) -> AsyncIterator[Json]:
    """Parse newline-delimited JSON objects, skipping blank lines."""
    async for line in lines:
        if line.strip():
            yield parse_json_object(line, provider)


def parse_json_object(text: str, provider: str) -> Json:
    """Decode one JSON object from a stream, or raise :class:`MalformedResponse`."""
    try:
        decoded = json.loads(text)
    except ValueError as exc:
        raise MalformedResponse(
            f"{provider} sent unparsable JSON in its stream: {exc}", provider=provider
        ) from exc
    if not isinstance(decoded, dict):
        raise MalformedResponse(f"{provider} sent a non-object in its stream", provider=provider)
    return decoded
