"""Token limits of one deployment: context window, input maximum, output maximum.

A request is admitted by a candidate when

* its input tokens are at most the deployment's ``max_input_tokens`` (when set);
* input tokens plus the requested ``max_output_tokens`` (when set) fit the
  version's ``context_window`` (when set);
* the requested ``max_output_tokens`` is at most the version's ``max_output_tokens``.

Each refusal is a :class:`~services.kernel.errors.FieldViolation` naming the limit.
Refusals of the first two kinds make the router try the context-window fallbacks.
When the request sets no ``max_output_tokens``, the version's maximum is applied.
"""

from __future__ import annotations

from llmgw.inference.v1 import inference_pb2
from llmgw.models.v1 import models_pb2
from services.kernel.errors import FieldViolation

CONTEXT_WINDOW_EXCEEDED = "CONTEXT_WINDOW_EXCEEDED"
MAX_INPUT_TOKENS_EXCEEDED = "MAX_INPUT_TOKENS_EXCEEDED"
MAX_OUTPUT_TOKENS_EXCEEDED = "MAX_OUTPUT_TOKENS_EXCEEDED"
WINDOW_REASONS = frozenset({CONTEXT_WINDOW_EXCEEDED, MAX_INPUT_TOKENS_EXCEEDED})
"""Violations a model with a larger context window may cure."""


def violations(
    version: models_pb2.ModelVersion,
    max_input_tokens: int,
    input_tokens: int,
    requested_output: int | None,
    where: str,
) -> tuple[FieldViolation, ...]:
    """The limits of ``version`` (deployment ``where``) the request breaks; empty if none."""
    found: list[FieldViolation] = []
    if max_input_tokens > 0 and input_tokens > max_input_tokens:
        found.append(
            FieldViolation(
                "messages",
                f"{input_tokens} input tokens exceed the limit of {max_input_tokens} of {where}",
                MAX_INPUT_TOKENS_EXCEEDED,
            )
        )
    window = version.context_window
    if window > 0:
        if input_tokens > window:
            found.append(
                FieldViolation(
                    "messages",
                    f"{input_tokens} input tokens exceed the context window of "
                    f"{window} tokens of {where}",
                    CONTEXT_WINDOW_EXCEEDED,
                )
            )
        elif requested_output is not None and input_tokens + requested_output > window:
            found.append(
                FieldViolation(
                    "sampling.max_output_tokens",
                    f"{input_tokens} input tokens plus {requested_output} output tokens exceed "
                    f"the context window of {window} tokens of {where}",
                    CONTEXT_WINDOW_EXCEEDED,
                )
            )
    ceiling = version.max_output_tokens
    if ceiling > 0 and requested_output is not None and requested_output > ceiling:
        found.append(
            FieldViolation(
                "sampling.max_output_tokens",
                f"{requested_output} output tokens exceed the maximum of {ceiling} of {where}",
                MAX_OUTPUT_TOKENS_EXCEEDED,
            )
        )
    return tuple(found)


def requested_output(request: inference_pb2.CompletionRequest) -> int | None:
    """The request's ``max_output_tokens``, or None when unset."""
    if request.sampling.HasField("max_output_tokens"):
        return request.sampling.max_output_tokens
    return None


def capped(
    request: inference_pb2.CompletionRequest, version: models_pb2.ModelVersion
) -> inference_pb2.CompletionRequest:
    """``request`` with ``max_output_tokens`` set to the version's maximum when unset.

    Returns ``request`` itself when nothing changes (no copy on the common path).
    """
    if request.sampling.HasField("max_output_tokens") or version.max_output_tokens <= 0:
        return request
    copy = inference_pb2.CompletionRequest()
    copy.CopyFrom(request)
    copy.sampling.max_output_tokens = version.max_output_tokens
    return copy
