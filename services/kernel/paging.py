"""Offset page tokens and field masks shared by the list and update operations of the APIs."""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from services.kernel.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Page:
    """A window of a listing: skip ``offset`` rows, return at most ``limit``."""

    offset: int
    limit: int


def page_of(page_size: int, page_token: str) -> Page:
    """The window a list request asks for; raises InvalidArgument for bad values."""
    if page_size < 0:
        raise InvalidArgument(
            "page_size must not be negative",
            [FieldViolation("page_size", "must not be negative")],
        )
    offset = 0
    if page_token:
        try:
            offset = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            offset = -1
        if offset < 0:
            raise InvalidArgument(
                "page_token is not valid", [FieldViolation("page_token", "is not a token")]
            )
    return Page(offset, min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE))


def next_token(page: Page, returned: int) -> str:
    """The token of the page after ``page``, empty when ``returned`` did not fill it."""
    if returned < page.limit:
        return ""
    return base64.urlsafe_b64encode(f"o:{page.offset + returned}".encode()).decode()


def apply_mask(
    target: Message,
    source: Message,
    mask: field_mask_pb2.FieldMask,
    allowed: Collection[str],
    *,
    prefix: str,
) -> list[str]:
    """Copy the fields named by ``mask`` (all of ``allowed`` when empty) from ``source``.

    Maps, lists and messages are replaced, not merged. Raises InvalidArgument
    naming every path that is not in ``allowed``. Returns the paths applied.
    """
    paths = list(mask.paths) or sorted(allowed)
    bad = [path for path in paths if path.split(".")[0] not in allowed]
    if bad:
        raise InvalidArgument(
            "update_mask names fields that cannot be updated",
            [
                FieldViolation("update_mask.paths", f"{prefix}{path} cannot be updated")
                for path in bad
            ],
        )
    applied = field_mask_pb2.FieldMask(paths=paths)
    try:
        applied.MergeMessage(
            source, target, replace_message_field=True, replace_repeated_field=True
        )
    except ValueError as exc:  # a path into a field that has no sub-fields
        raise InvalidArgument(
            "update_mask names a path that does not exist",
            [FieldViolation("update_mask.paths", str(exc))],
        ) from exc
    return paths
