"""Upstream failures, mapped at the adapter boundary into the kernel's exception tree.

Every failure an adapter can meet becomes exactly one of these, each a subclass of
a :mod:`services.kernel.errors` class (so it already has its gRPC status) that
also says what the inference service may do about it:

==========================  ==========================  =========  =========
error                       upstream cause              retry      fall back
==========================  ==========================  =========  =========
ContextWindowExceeded       400 "context length" case   no         yes (larger window)
ProviderBadRequest          400, 422                    no         no
ProviderAuthFailed          401, 403, 400 "bad key"     no         yes
ProviderModelNotFound       404                         no         yes
ProviderConflict            409                         yes        yes
ProviderRateLimited         429 (retry-after kept)      yes        yes
ProviderServerError         500, 502, 503, other 5xx    yes        yes
ProviderOverloaded          529                         yes        yes
ProviderTimeout             408, connect/first-byte/    yes        yes
                            between-chunk/total timeout
ProviderConnectionError     refused, reset, closed      yes        yes
MalformedResponse           unparsable body or stream   yes        yes
UnsupportedOperation        feature not offered         no         yes
==========================  ==========================  =========  =========

"Retry" and "fall back" are only allowed before the first streamed token; after it,
the error is reported inside the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from services.kernel import errors as kernel


class ProviderError(kernel.LlmgwError):
    """Mixin of every upstream error: which provider, which HTTP status, what to do."""

    retryable: ClassVar[bool] = False
    fallback: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        http_status: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        metadata: Mapping[str, str] = {"provider": provider} if provider else {}
        if http_status is not None:
            metadata = {**metadata, "http_status": str(http_status)}
        super().__init__(message, metadata=metadata)
        self.provider = provider
        self.http_status = http_status
        # Read by the kernel's RetryInfo detail on the retryable classes.
        self.retry_after_seconds = retry_after_seconds


class ContextWindowExceeded(ProviderError, kernel.InvalidArgument):
    """The prompt (plus requested output) does not fit the model's context window."""

    default_reason = "CONTEXT_WINDOW_EXCEEDED"


class ProviderBadRequest(ProviderError, kernel.InvalidArgument):
    """The provider rejected the request as invalid (400 or 422)."""

    default_reason = "PROVIDER_BAD_REQUEST"
    fallback = False


class ProviderAuthFailed(ProviderError, kernel.FailedPrecondition):
    """The deployment's credentials were refused (401 or 403): a configuration fault."""

    default_reason = "PROVIDER_AUTH_FAILED"


class ProviderModelNotFound(ProviderError, kernel.FailedPrecondition):
    """The provider does not know the deployment's model (404)."""

    default_reason = "PROVIDER_MODEL_NOT_FOUND"


class ProviderConflict(ProviderError, kernel.Unavailable):
    """The provider reported a conflict (409); a retry may succeed."""

    default_reason = "PROVIDER_CONFLICT"
    retryable = True


class ProviderRateLimited(ProviderError, kernel.ResourceExhausted):
    """The provider's rate limit was hit (429); ``retry_after_seconds`` as it said."""

    default_reason = "PROVIDER_RATE_LIMITED"
    retryable = True


class ProviderServerError(ProviderError, kernel.Unavailable):
    """The provider failed (500, 502, 503 or another 5xx)."""

    default_reason = "PROVIDER_SERVER_ERROR"
    retryable = True


class ProviderOverloaded(ProviderError, kernel.Unavailable):
    """The provider is overloaded (529)."""

    default_reason = "PROVIDER_OVERLOADED"
    retryable = True


class ProviderTimeout(ProviderError, kernel.DeadlineExceeded):
    """An upstream time limit ran out (408 or one of the deployment's timeouts)."""

    default_reason = "PROVIDER_TIMEOUT"
    retryable = True


class ProviderConnectionError(ProviderError, kernel.Unavailable):
    """The connection was refused, reset or closed early."""

    default_reason = "PROVIDER_CONNECTION_ERROR"
    retryable = True


class MalformedResponse(ProviderError, kernel.Unavailable):
    """The provider's body or stream could not be parsed, or ended without its end."""

    default_reason = "PROVIDER_MALFORMED_RESPONSE"
    retryable = True


class UnsupportedOperation(ProviderError, kernel.FailedPrecondition):
    """The adapter does not offer this operation (e.g. embeddings)."""

    default_reason = "UNSUPPORTED_OPERATION"


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    retry_after_seconds: float | None = None,
    context_window: bool = False,
    auth_failed: bool = False,
) -> ProviderError:
    """The error for an upstream HTTP ``status``.

    ``context_window`` marks the 400 whose body says the prompt is too long;
    ``auth_failed`` marks a 400 whose body says the credentials were refused
    (Gemini answers an invalid API key with 400 ``API_KEY_INVALID``): both are
    4xx refinements and change nothing for other statuses.
    """
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ProviderServerError if status >= 500 else ProviderBadRequest
    if context_window and status in {400, 413, 422}:
        cls = ContextWindowExceeded
    if auth_failed and status == 400:
        cls = ProviderAuthFailed
    return cls(
        message, provider=provider, http_status=status, retry_after_seconds=retry_after_seconds
    )


_BY_STATUS: Mapping[int, type[ProviderError]] = {
    400: ProviderBadRequest,
    401: ProviderAuthFailed,
    403: ProviderAuthFailed,
    404: ProviderModelNotFound,
    408: ProviderTimeout,
    409: ProviderConflict,
    413: ProviderBadRequest,
    422: ProviderBadRequest,
    429: ProviderRateLimited,
    500: ProviderServerError,
    502: ProviderServerError,
    503: ProviderServerError,
    504: ProviderTimeout,
    529: ProviderOverloaded,
}
