"""Closing async iterators that may be generators, whatever their annotated type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


@asynccontextmanager
async def closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Yield ``iterator`` and ``aclose()`` it on exit (if it has ``aclose``).

    Used around a provider's streamed body so that leaving the stream early, or
    being cancelled, closes the upstream response at once instead of at garbage
    collection.
    """
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
