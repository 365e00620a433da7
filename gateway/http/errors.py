"""gRPC statuses as OpenAI error responses: the JSON body, the HTTP status and headers.

Every call the HTTP edge makes ends either with a response or with a
``google.rpc.Status`` (a filter's :class:`~gateway.filters.base.Stop`, an upstream's
status with its ``grpc-status-details-bin`` trailer, or a request the edge itself
refused). That status becomes OpenAI's error shape::

    {"error": {"message": "...", "type": "...", "param": "...", "code": "..."}}

==========================  ====  ============================
gRPC code                   HTTP  ``type``
==========================  ====  ============================
INVALID_ARGUMENT            400   invalid_request_error
FAILED_PRECONDITION         400   invalid_request_error
OUT_OF_RANGE                400   invalid_request_error
UNAUTHENTICATED             401   authentication_error
PERMISSION_DENIED           403   permission_error
NOT_FOUND                   404   not_found_error
ALREADY_EXISTS, ABORTED     409   conflict_error
RESOURCE_EXHAUSTED          429   rate_limit_error
CANCELLED                   499   cancelled
UNIMPLEMENTED               501   not_implemented_error
UNAVAILABLE                 503   service_unavailable_error
DEADLINE_EXCEEDED           504   timeout_error
INTERNAL, UNKNOWN, others   500   server_error
==========================  ====  ============================

``param`` is the first ``BadRequest`` field violation, ``code`` the ``ErrorInfo``
reason in lower case, and a ``RetryInfo`` delay becomes the ``retry-after``
(whole seconds, rounded up) and ``retry-after-ms`` headers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from google.rpc import error_details_pb2, status_pb2

from gateway.filters.base import MetadataValue
from services.kernel.errors import STATUS_DETAILS_KEY


@dataclass(frozen=True, slots=True)
class _Kind:
    http_status: int
    type: str


_SERVER_ERROR = _Kind(500, "server_error")
_KINDS: Mapping[grpc.StatusCode, _Kind] = {
    grpc.StatusCode.INVALID_ARGUMENT: _Kind(400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: _Kind(400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: _Kind(400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: _Kind(401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: _Kind(403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: _Kind(404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: _Kind(409, "conflict_error"),
    grpc.StatusCode.ABORTED: _Kind(409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: _Kind(429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: _Kind(499, "cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: _Kind(501, "not_implemented_error"),
    grpc.StatusCode.UNAVAILABLE: _Kind(503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: _Kind(504, "timeout_error"),
}
_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class OpenAIError:
    """One error as the HTTP edge answers it."""

    http_status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None
    retry_after_seconds: float | None = None

    def payload(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object (also the data of an SSE error event)."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        """:meth:`payload` as JSON."""
        return orjson.dumps(self.payload())

    def headers(self) -> dict[str, str]:
        """``retry-after`` and ``retry-after-ms`` when the status said when to retry."""
        if self.retry_after_seconds is None:
            return {}
        seconds = max(self.retry_after_seconds, 0.0)
        return {
            "retry-after": str(math.ceil(seconds)),
            "retry-after-ms": str(round(seconds * 1000)),
        }


def error_of_status(status: status_pb2.Status) -> OpenAIError:
    """The OpenAI error for a non-OK ``google.rpc.Status`` (details read where present)."""
    kind = _KINDS.get(_CODES.get(status.code, grpc.StatusCode.UNKNOWN), _SERVER_ERROR)
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            code = code or info.reason.lower() or None
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations and param is None:
                param = bad.field_violations[0].field
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    return OpenAIError(
        http_status=kind.http_status,
        type=kind.type,
        message=status.message or kind.type.replace("_", " "),
        param=param,
        code=code,
        retry_after_seconds=retry_after,
    )


def status_of_call(
    code: grpc.StatusCode, message: str, trailers: Iterable[tuple[str, MetadataValue]]
) -> status_pb2.Status:
    """The rich status a call ended with: its ``grpc-status-details-bin`` trailer when it
    has one that agrees with ``code``, else a plain status of ``code`` and ``message``."""
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer: fall back to the bare status
                break
            if status.code == code.value[0]:
                return status
            break
    return status_pb2.Status(code=code.value[0], message=message)
