"""A fast fake of OpenAI's Chat Completions endpoint, for the benchmarks.

``python -m bench.fake_openai_server TOKENS`` answers every ``POST
.../chat/completions`` over keep-alive HTTP/1.1 with the same precomputed
answer of ``TOKENS`` words: a JSON completion, or (when the request body asks
to stream) server-sent events with one delta per word, a usage event and
``[DONE]``. It does no per-request work beyond reading the request, so it
stands for an upstream with zero latency. It prints ``PORT <n>`` once serving
and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

MODEL = "gpt-bench"
PROMPT_TOKENS = 8


def unary_response(tokens: int) -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _text(tokens)},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(tokens),
        }
    ).encode()
    return _http(body, "application/json")


def stream_response(tokens: int) -> bytes:
    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[object] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f" w{n}" if n else "w0"}) for n in range(tokens)]
    events.append(chunk({}, "stop"))
    events.append(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
            "choices": [],
            "usage": _usage(tokens),
        }
    )
    body = b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)
    return _http(body + b"data: [DONE]\n\n", "text/event-stream")


def _text(tokens: int) -> str:
    return " ".join(f"w{n}" for n in range(tokens))


def _usage(tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": tokens,
        "total_tokens": PROMPT_TOKENS + tokens,
    }


def _http(body: bytes, content_type: str) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class FakeOpenAI:
    """Serves the canned answers; one instance per server."""

    def __init__(self, tokens: int) -> None:
        self._unary = unary_response(tokens)
        self._stream = stream_response(tokens)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                streaming = b'"stream":true' in body.replace(b" ", b"")
                writer.write(self._stream if streaming else self._unary)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(tokens: int) -> None:
    server = await asyncio.start_server(FakeOpenAI(tokens).handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
