"""A disk spool: records that could not be sent yet, kept until they are.

The spool is a directory of append-only segment files named by an increasing
sequence number. A record on disk is ``length (4 bytes, big endian) | CRC-32 of
the payload (4 bytes) | payload``. Every :meth:`Spool.append` ends with
``fsync``, so a record that was appended survives a crash of the process or
the machine. A reader stops at the first incomplete or damaged record (a write
torn by a crash) and ignores the rest of that segment.

Replaying is at-least-once: a segment is removed only after all its records
were handed on, so a crash during replay sends some of them again. The writer
appends to the newest segment; :meth:`Spool.seal` closes it so that it can be
replayed and removed while later records go to a new one.

Methods are safe to call from several threads.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

_log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
_SUFFIX = ".spool"


class Spool:
    """Append-only, fsync'd segment files of opaque records under ``directory``."""

    def __init__(self, directory: Path, segment_bytes: int = 8 * 1024 * 1024) -> None:
        """Open (creating it if needed) the spool in ``directory``.

        Segments left by an earlier process are kept and count as sealed.
        """
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(directory.glob(f"*{_SUFFIX}"))
        self._next_sequence = int(self._segments[-1].stem) + 1 if self._segments else 1
        self._current: BinaryIO | None = None
        self._current_path: Path | None = None
        self._current_size = 0

    @property
    def directory(self) -> Path:
        """Where the segments live."""
        return self._directory

    def is_empty(self) -> bool:
        """True when no record waits on disk."""
        with self._lock:
            return not self._segments

    def append(self, records: Sequence[bytes]) -> None:
        """Write ``records`` to the current segment and fsync it.

        Raises :class:`OSError` when the disk refuses; nothing is half-counted then,
        though a torn record may be left behind (readers skip it).
        """
        if not records:
            return
        data = b"".join(_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records)
        with self._lock:
            current = self._open_current()
            current.write(data)
            current.flush()
            os.fsync(current.fileno())
            self._current_size += len(data)
            if self._current_size >= self._segment_bytes:
                self._close_current()

    def seal(self) -> list[Path]:
        """Close the segment being written and return every segment, oldest first."""
        with self._lock:
            self._close_current()
            return list(self._segments)

    def remove(self, segment: Path) -> None:
        """Delete a replayed segment."""
        with self._lock:
            if segment == self._current_path:
                self._close_current()
            segment.unlink(missing_ok=True)
            if segment in self._segments:
                self._segments.remove(segment)

    def close(self) -> None:
        """Close the open segment; the spool may be reopened later."""
        with self._lock:
            self._close_current()

    def _open_current(self) -> BinaryIO:
        if self._current is None:
            path = self._directory / f"{self._next_sequence:020d}{_SUFFIX}"
            self._next_sequence += 1
            self._current = path.open("ab")
            self._current_path = path
            self._current_size = 0
            self._segments.append(path)
            _fsync_directory(self._directory)
        return self._current

    def _close_current(self) -> None:
        if self._current is not None:
            self._current.close()
        self._current = None
        self._current_path = None
        self._current_size = 0


def read_segment(segment: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """The records of ``segment`` from byte offset ``start``: ``(offset after, payload)``.

    Stops quietly at the end, or with a warning at the first torn or damaged record.
    """
    try:
        data = segment.read_bytes()
    except FileNotFoundError:
        return
    offset = start
    while offset < len(data):
        if offset + _HEADER.size > len(data):
            _log.warning("spool segment %s ends in a torn record header", segment)
            return
        length, checksum = _HEADER.unpack_from(data, offset)
        body_start = offset + _HEADER.size
        payload = data[body_start : body_start + length]
        if len(payload) < length or zlib.crc32(payload) != checksum:
            _log.warning("spool segment %s has a damaged record at byte %d", segment, offset)
            return
        offset = body_start + length
        yield offset, payload


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
