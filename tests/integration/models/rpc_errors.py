"""Reading the rich status of a failed registry call."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.kernel.errors import STATUS_DETAILS_KEY


async def failure(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """Await ``call`` and return the error it must raise."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` in the error's trailing metadata."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    raise AssertionError("no rich status in the trailers")


def reason(error: grpc.aio.AioRpcError) -> str:
    """``ErrorInfo.reason`` of the error."""
    for detail in rich_status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """``BadRequest`` field violations of the error: field -> description."""
    found: dict[str, str] = {}
    for detail in rich_status(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found
