"""A scripted HTTP/1.1 server on loopback: the stand-in for a provider in the conformance kit.

:class:`FakeServer` listens on ``127.0.0.1`` (port chosen by the system) with
:func:`asyncio.start_server` and answers each request with the next
:class:`ScriptedResponse` of its queue, in order, across all connections. It
records every request as a :class:`RecordedRequest` (method, path, query,
headers, raw and decoded body) and tracks its connections:

* keep-alive: a connection serves requests until the client closes it (or sends
  ``Connection: close``); :attr:`FakeServer.connections_opened` counts them, so
  a test can tell pooled reuse from fresh connections;
* client disconnects are seen at any moment (a reader task watches every
  connection for end-of-file, and failed writes count too) and set
  :attr:`RecordedRequest.client_closed` of the request being served, so a test
  can assert that cancelling a call closed its upstream connection.

A scripted response is either a ``Content-Length`` body or a
``Transfer-Encoding: chunked`` body, written in the pieces the script gives
(each piece a separate write, optionally delayed), and may stall forever or
reset the connection after some pieces. When the queue is empty the server
asks its ``responder`` (a function of the request, for fakes that keep state,
e.g. a provider's jobs API) or, without one, answers ``599`` with a plain-text
explanation, which no adapter maps to success.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import socket
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """One reply of the fake server.

    ``pieces`` gives the sizes (in bytes) of the successive writes of ``body``;
    the sizes repeat cyclically and the last piece takes what is left. Empty
    means one write. With ``chunked`` each piece is one HTTP chunk, otherwise the
    body goes with a ``Content-Length``. ``delay_before_headers`` delays the
    status line; ``delay_between_pieces`` is slept before every piece but the
    first. ``stall_after_pieces`` stops writing after that many pieces and keeps
    the connection open until the client leaves; ``reset_after_pieces`` aborts
    the connection with a TCP reset instead. Header names are sent as given.
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunked: bool = False
    pieces: Sequence[int] = ()
    delay_before_headers: float = 0.0
    delay_between_pieces: float = 0.0
    stall_after_pieces: int | None = None
    reset_after_pieces: int | None = None

    def split_body(self) -> list[bytes]:
        """``body`` cut into the scripted pieces (at least one, possibly empty)."""
        if not self.pieces:
            return [self.body]
        parts: list[bytes] = []
        offset = 0
        index = 0
        while offset < len(self.body):
            size = max(self.pieces[index % len(self.pieces)], 1)
            parts.append(self.body[offset : offset + size])
            offset += size
            index += 1
        return parts or [b""]


@dataclass(slots=True)
class RecordedRequest:
    """What a client sent, plus an event set when it closed the connection afterwards."""

    method: str
    target: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    connection_number: int
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def json(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.body)

    def query_value(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None


class _ClientGone(Exception):
    """The client closed the connection or sent something that is not HTTP."""


class _Connection:
    """One accepted connection: a buffered view of what the client sent."""

    def __init__(self, reader: asyncio.StreamReader, number: int) -> None:
        self.number = number
        self._reader = reader
        self._buffer = bytearray()
        self._changed = asyncio.Condition()
        self.eof = asyncio.Event()
        self.current: RecordedRequest | None = None

    async def pump(self) -> None:
        """Move bytes from the socket into the buffer until end-of-file."""
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                async with self._changed:
                    self._buffer.extend(data)
                    self._changed.notify_all()
        except (ConnectionError, OSError):
            pass
        finally:
            self.mark_closed()
            async with self._changed:
                self._changed.notify_all()

    def mark_closed(self) -> None:
        """Record that the client is gone (also for the request being served)."""
        self.eof.set()
        if self.current is not None:
            self.current.client_closed.set()

    async def read_until(self, marker: bytes) -> bytes:
        """Bytes up to and including ``marker``."""
        async with self._changed:
            while True:
                at = self._buffer.find(marker)
                if at >= 0:
                    return self._take(at + len(marker))
                if len(self._buffer) > _MAX_HEAD:
                    raise _ClientGone("request head too large")
                if self.eof.is_set():
                    raise _ClientGone("client closed the connection")
                await self._changed.wait()

    async def read_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes."""
        async with self._changed:
            while len(self._buffer) < size:
                if self.eof.is_set():
                    raise _ClientGone("client closed the connection mid-body")
                await self._changed.wait()
            return self._take(size)

    def _take(self, size: int) -> bytes:
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken


class FakeServer:
    """The scripted server; use as ``async with FakeServer() as server:``.

    Responses are queued with :meth:`enqueue` and consumed one per request;
    ``responder`` answers requests the queue has no response for.
    ``requests`` lists what was received, in arrival order.
    """

    def __init__(
        self, responder: Callable[[RecordedRequest], ScriptedResponse] | None = None
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self._responder = responder or _unscripted
        self.connections_opened = 0
        self._script: deque[ScriptedResponse] = deque()
        self._arrivals = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        return f"http://127.0.0.1:{self._port}"

    def enqueue(self, *responses: ScriptedResponse) -> None:
        """Append responses to the script; each answers one future request."""
        self._script.extend(responses)

    @property
    def pending(self) -> int:
        """Scripted responses not yet used."""
        return len(self._script)

    async def wait_for_requests(self, count: int) -> None:
        """Return once at least ``count`` requests have arrived (wrap it in a timeout)."""
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(self.requests) >= count)

    async def start(self) -> None:
        """Start listening on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            # Aborted connections end their handlers; cancelling is the last resort.
            _, stuck = await asyncio.wait(list(self._tasks), timeout=1.0)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections_opened += 1
        self._writers.add(writer)
        connection = _Connection(reader, self.connections_opened)
        pump = asyncio.create_task(connection.pump())
        try:
            await self._serve(connection, writer)
        except (_ClientGone, ConnectionError, OSError):
            connection.mark_closed()
        finally:
            pump.cancel()
            # asyncio.wait does not raise the pump's CancelledError, so a cancel of
            # this handler itself still propagates instead of being swallowed.
            await asyncio.wait([pump])
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, connection: _Connection, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await self._read_request(connection)
            connection.current = request
            self.requests.append(request)
            async with self._arrivals:
                self._arrivals.notify_all()
            script = self._script.popleft() if self._script else self._responder(request)
            keep_open = await _write_response(script, connection, writer)
            if not keep_open or request.headers.get("connection", "").lower() == "close":
                return

    async def _read_request(self, connection: _Connection) -> RecordedRequest:
        head = await connection.read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError as exc:
            raise _ClientGone(f"bad request line {lines[0]!r}") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(connection)
        else:
            body = await connection.read_exactly(int(headers.get("content-length", "0")))
        parts = urlsplit(target)
        return RecordedRequest(
            method=method,
            target=target,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=headers,
            body=body,
            connection_number=connection.number,
        )


async def _read_chunked(connection: _Connection) -> bytes:
    body = bytearray()
    while True:
        size_line = await connection.read_until(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while await connection.read_until(b"\r\n") != b"\r\n":
                pass
            return bytes(body)
        body.extend(await connection.read_exactly(size))
        await connection.read_until(b"\r\n")


def _unscripted(request: RecordedRequest) -> ScriptedResponse:
    text = f"fake server: no scripted response left for {request.method} {request.target}\n"
    return ScriptedResponse(status=599, body=text.encode(), headers={"content-type": "text/plain"})


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Site Overloaded" if status == 529 else "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


def _head(script: ScriptedResponse, body_length: int) -> bytes:
    lines = [_status_line(script.status)]
    names = {name.lower() for name in script.headers}
    for name, value in script.headers.items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    if script.chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif "content-length" not in names:
        lines.append(f"Content-Length: {body_length}\r\n".encode("latin-1"))
    lines.append(b"\r\n")
    return b"".join(lines)


async def _write_response(
    script: ScriptedResponse, connection: _Connection, writer: asyncio.StreamWriter
) -> bool:
    """Send ``script``; True if the connection may serve another request."""
    if script.delay_before_headers:
        await _sleep_unless_gone(script.delay_before_headers, connection)
    pieces = script.split_body()
    await _send(writer, connection, _head(script, len(script.body)))
    for number, piece in enumerate(pieces):
        if number == script.stall_after_pieces:
            await connection.eof.wait()
            return False
        if number == script.reset_after_pieces:
            await _reset(writer)
            return False
        if number and script.delay_between_pieces:
            await _sleep_unless_gone(script.delay_between_pieces, connection)
        if script.chunked:
            if piece:
                await _send(writer, connection, b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            await _send(writer, connection, piece)
    if script.stall_after_pieces is not None and script.stall_after_pieces >= len(pieces):
        await connection.eof.wait()
        return False
    if script.reset_after_pieces is not None and script.reset_after_pieces >= len(pieces):
        await _reset(writer)
        return False
    if script.chunked:
        await _send(writer, connection, b"0\r\n\r\n")
    return True


async def _send(writer: asyncio.StreamWriter, connection: _Connection, data: bytes) -> None:
    if connection.eof.is_set():
        raise _ClientGone("client closed the connection")
    writer.write(data)
    await writer.drain()


async def _sleep_unless_gone(seconds: float, connection: _Connection) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connection.eof.wait(), seconds)
    if connection.eof.is_set():
        raise _ClientGone("client closed the connection")


async def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with RST once what was written has left the buffer."""
    transport = writer.transport
    for _ in range(100):
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.005)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
