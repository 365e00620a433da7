"""Per-call context shared by interceptors and logs: the request id of the current call."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
"""Metadata key carrying a caller-chosen request id; one is generated when absent."""

_request_id: ContextVar[str] = ContextVar("llmgw_request_id", default="")


def current_request_id() -> str:
    """The request id of the call being served by this task, or ``""`` outside a call."""
    return _request_id.get()


def bind_request_id(request_id: str) -> None:
    """Set the request id for the current task (and tasks it spawns from now on)."""
    _request_id.set(request_id)


def new_request_id() -> str:
    """A fresh, unguessable request id."""
    return uuid.uuid4().hex
