"""Relaying an upstream stream after its first event, so that it never ends silently.

:meth:`StreamOutcome.open` waits for the first event of an adapter's stream (the
router retries and falls back while that fails). :func:`relay` then passes the
events on and guarantees exactly one final :class:`CompletionResult`: the
adapter's own, or, when the upstream fails, ends without a result, or the deadline
passes, one with ``error`` set (usage is filled in by the caller from
:meth:`StreamOutcome.text`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from provider_adapters.errors import MalformedResponse
from services.inference.engine import CompletionChunk, CompletionResult, StreamEvent, chunk_text
from services.inference.routing.clock import Clock
from services.kernel.errors import DeadlineExceeded, LlmgwError, status_from_exception

_log = logging.getLogger("llmgw.inference.routing")


@dataclass(slots=True)
class StreamOutcome:
    """An upstream stream that produced its first event, and what it sent so far."""

    first: StreamEvent
    events: AsyncIterator[StreamEvent]
    chunks: int = 0
    failure: Exception | None = None
    _text: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, events: AsyncIterator[StreamEvent]) -> StreamOutcome:
        """Wait for the first event of ``events``; closes them if that fails.

        An upstream that ends without any event raises ``MalformedResponse``.
        """
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise MalformedResponse("the upstream stream ended without any event") from None
        except BaseException:
            await close(events)
            raise
        return cls(first, events)

    def text(self) -> str:
        """The text and tool-call arguments streamed so far (for counting tokens)."""
        return "".join(self._text)

    def _record(self, chunk: CompletionChunk) -> None:
        self.chunks += 1
        self._text.append(chunk_text(chunk))


async def relay(
    outcome: StreamOutcome, deadline: float | None, clock: Clock
) -> AsyncGenerator[StreamEvent, None]:
    """The stream's events, ending with exactly one result; closes the upstream.

    When the result reports a failure, :attr:`StreamOutcome.failure` holds it.
    """
    event: StreamEvent | None = outcome.first
    try:
        while event is not None:
            if isinstance(event, CompletionResult):
                yield event
                return
            outcome._record(event)
            yield event
            event = await _next(outcome.events, deadline, clock)
        raise MalformedResponse("the upstream stream ended without a final result")
    except Exception as exc:
        if not isinstance(exc, LlmgwError):
            _log.exception("upstream stream failed unexpectedly")
        outcome.failure = exc
        yield CompletionResult(error=status_from_exception(exc))
    finally:
        await close(outcome.events)


async def _next(
    events: AsyncIterator[StreamEvent], deadline: float | None, clock: Clock
) -> StreamEvent | None:
    remaining = None if deadline is None else deadline - clock.monotonic()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("deadline passed while streaming")
    try:
        async with asyncio.timeout(remaining):
            return await anext(events)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise DeadlineExceeded("deadline passed while streaming") from None


async def close(events: AsyncIterator[StreamEvent]) -> None:
    """Close ``events`` if it can be closed (async generators can)."""
    closer = getattr(events, "aclose", None)
    if closer is not None:
        await closer()
