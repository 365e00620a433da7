"""The one exception tree of llmgw, and its mapping to ``google.rpc.Status``.

Domain code raises these; the server interceptor (``services.kernel.interceptors``)
turns them into gRPC status codes with rich details. Nothing else maps errors.

::

    LlmgwError                      (abstract; never raised itself)
     +-- InvalidArgument            INVALID_ARGUMENT  + BadRequest field violations
     +-- NotFound                   NOT_FOUND         + ResourceInfo
     +-- AlreadyExists              ALREADY_EXISTS    + ResourceInfo
     +-- FailedPrecondition         FAILED_PRECONDITION
     +-- Unauthenticated            UNAUTHENTICATED
     +-- PermissionDenied           PERMISSION_DENIED
     +-- ResourceExhausted          RESOURCE_EXHAUSTED + RetryInfo
     +-- Unavailable                UNAVAILABLE       + RetryInfo (optional)
     +-- DeadlineExceeded           DEADLINE_EXCEEDED
     +-- Cancelled                  CANCELLED
     +-- Unimplemented              UNIMPLEMENTED
     +-- Internal                   INTERNAL (message never shown to the caller)

Every error carries a stable machine-readable ``reason`` (UPPER_SNAKE_CASE) that is
sent as ``google.rpc.ErrorInfo.reason`` with domain :data:`ERROR_DOMAIN`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "llmgw.dev"
"""The ``ErrorInfo.domain`` of every error llmgw raises."""

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""Trailing-metadata key that carries the serialized ``google.rpc.Status``."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request: a dotted path and what is wrong with it."""

    field: str
    description: str
    reason: str = ""


class LlmgwError(Exception):
    """Base of every domain error. Subclasses fix the gRPC status code."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    default_reason: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})

    def public_message(self) -> str:
        """The text the caller sees; subclasses that may hold secrets override it."""
        return self.message

    def details(self) -> list[any_pb2.Any]:
        """Rich ``google.rpc`` details, ``ErrorInfo`` first, then subclass extras."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        return [_pack(info), *self._extra_details()]

    def _extra_details(self) -> list[any_pb2.Any]:
        return []

    def to_status(self) -> status_pb2.Status:
        """This error as a ``google.rpc.Status`` (usable inside a stream, too)."""
        return status_pb2.Status(
            code=self.code.value[0], message=self.public_message(), details=self.details()
        )


class InvalidArgument(LlmgwError):
    """The request is malformed; ``violations`` name each offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = tuple(violations)

    def _extra_details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in self.violations
            ]
        )
        return [_pack(bad)]


class _ResourceError(LlmgwError):
    """An error about one named resource, reported as ``google.rpc.ResourceInfo``."""

    def __init__(
        self,
        resource_type: str,
        resource_name: str,
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            message or f"{resource_type} {resource_name!r}: {self.default_reason.lower()}",
            reason=reason,
            metadata=metadata,
        )
        self.resource_type = resource_type
        self.resource_name = resource_name

    def _extra_details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ResourceInfo(
            resource_type=self.resource_type,
            resource_name=self.resource_name,
            description=self.message,
        )
        return [_pack(info)]


class NotFound(_ResourceError):
    """The named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(_ResourceError):
    """A resource with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(LlmgwError):
    """The system is not in a state that allows the operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unauthenticated(LlmgwError):
    """No valid credential. The message must never hint at which credentials exist."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(LlmgwError):
    """The caller is known but not allowed to do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class _RetryableError(LlmgwError):
    """An error the caller may retry after ``retry_after_seconds`` (sent as RetryInfo)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds

    def _extra_details(self) -> list[any_pb2.Any]:
        if self.retry_after_seconds is None:
            return []
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(max(self.retry_after_seconds, 0.0) * 1e9))
        return [_pack(error_details_pb2.RetryInfo(retry_delay=delay))]


class ResourceExhausted(_RetryableError):
    """A limit or budget is used up; ``retry_after_seconds`` says when it frees."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(_RetryableError):
    """A dependency is down or overloaded; the call may succeed if retried."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(LlmgwError):
    """The deadline ran out before the work finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Cancelled(LlmgwError):
    """The caller cancelled the work."""

    code = grpc.StatusCode.CANCELLED
    default_reason = "CANCELLED"


class Unimplemented(LlmgwError):
    """The method or feature is not implemented by this server."""

    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"


class Internal(LlmgwError):
    """A bug or invariant violation. The caller sees a generic message only."""

    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def public_message(self) -> str:
        return "internal error"


def status_from_exception(exc: BaseException) -> status_pb2.Status:
    """Map any exception to the ``google.rpc.Status`` a caller may see.

    Domain errors keep their code and details; ``NotImplementedError`` (raised by the
    generated base servicers) is UNIMPLEMENTED; anything else becomes a generic
    INTERNAL without the exception's text, which may hold secrets.
    """
    if isinstance(exc, LlmgwError):
        return exc.to_status()
    if isinstance(exc, NotImplementedError):
        return Unimplemented("method not implemented").to_status()
    return Internal(str(exc)).to_status()


def grpc_code_of(status: status_pb2.Status) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` for a ``google.rpc.Status`` code number."""
    return _CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODE_BY_NUMBER: Mapping[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}
