"""Where dataset contents live: a small blob-store interface and its local directory.

A blob is written once under a key, read whole, and deleted. Keys are server
assigned (dataset ids), never taken from a caller. File I/O runs in a thread,
so the event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    """Stores immutable byte strings by key."""

    async def put(self, key: str, content: bytes) -> None:
        """Store ``content`` under ``key`` durably (replacing nothing: keys are new)."""
        ...

    async def get(self, key: str) -> bytes:
        """The content stored under ``key``; :class:`KeyError` when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Forget ``key``; no error when it is absent."""
        ...


class LocalBlobStore:
    """:class:`BlobStore` in one directory, a file per key, written atomically."""

    def __init__(self, root: Path) -> None:
        """Keep blobs under ``root`` (created on first write)."""
        self._root = root

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return self._root / key

    async def put(self, key: str, content: bytes) -> None:
        """Write to a temporary file, fsync, then rename into place."""
        await asyncio.to_thread(self._put, self._path(key), content)

    def _put(self, path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)

    async def get(self, key: str) -> bytes:
        """Read the whole blob."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None

    async def delete(self, key: str) -> None:
        """Remove the file if present."""
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)
