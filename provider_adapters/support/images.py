"""Image references in message content: data URLs split into media type and base64 data."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from urllib.parse import urlsplit

from provider_adapters.errors import ProviderBadRequest


@dataclass(frozen=True, slots=True)
class InlineImage:
    """An image carried in the request itself, as base64."""

    media_type: str
    data: str


def inline_image(url: str, *, provider: str) -> InlineImage | None:
    """The image of a ``data:<type>;base64,<data>`` URL; None for any other URL.

    A data URL that is not base64 encoded raises :class:`ProviderBadRequest`.
    """
    if not url.startswith("data:"):
        return None
    header, comma, data = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding.lower() != "base64" or not data:
        raise ProviderBadRequest("image data URLs must be base64 encoded", provider=provider)
    return InlineImage(media_type=media_type or "application/octet-stream", data=data)


def guess_media_type(url: str, default: str = "image/jpeg") -> str:
    """The media type an image URL's path suggests, or ``default``."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed if guessed and guessed.startswith("image/") else default
