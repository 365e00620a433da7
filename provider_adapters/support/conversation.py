"""Reading llmgw conversations: text of a message, ids of tool calls, generated ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from llmgw.inference.v1 import inference_pb2


def message_text(message: inference_pb2.Message) -> str:
    """The text parts of ``message`` joined in order (images are skipped)."""
    return "".join(part.text for part in message.content if part.WhichOneof("part") == "text")


def tool_call_names(messages: Iterable[inference_pb2.Message]) -> dict[str, str]:
    """Function name of every tool call in ``messages``, by call id."""
    return {
        call.id: call.function.name
        for message in messages
        for call in message.tool_calls
        if call.WhichOneof("call") == "function"
    }


def new_tool_call_id() -> str:
    """A fresh id for a tool call the provider did not name."""
    return f"call_{uuid.uuid4().hex[:24]}"
