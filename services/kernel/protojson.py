"""Messages stored as text: compact proto JSON with proto field names, and back."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def to_json(message: Message) -> str:
    """The stored form of a message: compact proto JSON with proto field names."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, indent=None, sort_keys=True
    )


def from_json(body: str, message_type: type[M]) -> M:
    """Parse a stored body back into ``message_type``."""
    message = message_type()
    json_format.Parse(body, message)
    return message
