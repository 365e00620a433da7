"""Cursor page tokens: opaque strings wrapping the position after the last item returned."""

from __future__ import annotations

import base64

from services.kernel.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def page_size_of(page_size: int) -> int:
    """The number of items to return; INVALID_ARGUMENT when negative."""
    if page_size < 0:
        raise InvalidArgument(
            "page_size must not be negative", [FieldViolation("page_size", "must not be negative")]
        )
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode(kind: str, *parts: object) -> str:
    """A token for the position ``parts`` in a listing of ``kind``."""
    raw = ":".join([kind, *(str(part) for part in parts)])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode(token: str, kind: str, count: int) -> list[str] | None:
    """The ``count`` parts of ``token`` (None for an empty token); INVALID_ARGUMENT when
    it is not a token of ``kind``."""
    if not token:
        return None
    try:
        parts = base64.urlsafe_b64decode(token.encode()).decode().split(":", count)
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != count + 1 or parts[0] != kind:
        raise InvalidArgument(
            "page_token is not valid",
            [FieldViolation("page_token", "is not a token of this listing")],
        )
    return parts[1:]


def decode_int(token: str, kind: str) -> int:
    """A one-number cursor (0 for an empty token)."""
    parts = decode(token, kind, 1)
    if parts is None:
        return 0
    return _int64(parts[0])


def decode_created(token: str, kind: str) -> tuple[int, str] | None:
    """A (created, id) cursor of a newest-first listing."""
    parts = decode(token, kind, 2)
    if parts is None:
        return None
    return _int64(parts[0]), parts[1]


def _int64(part: str) -> int:
    """A cursor number, which SQL compares as a 64-bit integer; INVALID_ARGUMENT when
    it is not a number or out of that range (a forged token)."""
    try:
        number = int(part)
    except ValueError:
        number = None
    if number is None or not _INT64_MIN <= number <= _INT64_MAX:
        raise InvalidArgument(
            "page_token is not valid",
            [FieldViolation("page_token", "is not a token of this listing")],
        )
    return number
