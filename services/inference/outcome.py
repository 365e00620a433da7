"""How one inference request ended, measured once and handed to every observer.

A :class:`RequestTracker` is created when a request starts. It notes the first
output, and when the request ends (result, error or cancellation) it stamps the
final :class:`CompletionResult` with create time, latency and time to first
token, builds one :class:`Outcome` and gives it to each :class:`OutcomeSink`
(the usage recorder, the metrics). It reports at most once, whatever happens
afterwards, which is what makes "exactly one usage event per request" hold.

A request that ends before the engine's result (cancelled, deadline passed,
disconnected) gets the deployment the engine noted in ``call.placement``: its
``served_by``, and, when output was streamed, an estimated usage priced at that
deployment's prices (zero for a cache replay). A request that was never placed
ran nowhere and costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import status_pb2

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2
from services.inference.engine import (
    CallContext,
    CompletionChunk,
    CompletionResult,
    chunk_text,
    failed_finish_reason,
)
from services.inference.routing.pricing import cost_of
from services.kernel.errors import Cancelled, DeadlineExceeded, grpc_code_of, status_from_exception

Operation: TypeAlias = events_pb2.InferenceOperation.ValueType

_CHARS_PER_TOKEN = 4
"""The documented estimate used when a request ends before the provider counted."""


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request asked for; fixed when it starts."""

    operation: Operation
    method: str
    requested_model: str
    call: CallContext
    end_user_id: str = ""
    completion: inference_pb2.CompletionRequest | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished request as the observers see it.

    ``error`` is None on success; ``time_to_first_token_seconds`` is None when no
    output was streamed.
    """

    request: RequestInfo
    start_time: timestamp_pb2.Timestamp
    served_by: common_pb2.ServingInfo
    usage: common_pb2.Usage
    cost: common_pb2.Cost
    cached: bool
    finish_reason: common_pb2.FinishReason.ValueType
    error: status_pb2.Status | None
    latency_seconds: float
    time_to_first_token_seconds: float | None

    @property
    def status(self) -> grpc.StatusCode:
        """The gRPC code of the request's own result (OK on success)."""
        return grpc.StatusCode.OK if self.error is None else grpc_code_of(self.error)


class OutcomeSink(Protocol):
    """Something told about every finished request; must not block or raise."""

    def observe(self, outcome: Outcome) -> None:
        """Take note of ``outcome``."""
        ...


DEADLINE_SLACK_SECONDS = 0.05
"""How early gRPC's own deadline may fire before the one the service computed."""


class RequestTracker:
    """Measures one request and reports its :class:`Outcome` exactly once."""

    __slots__ = (
        "_done",
        "_first_output",
        "_info",
        "_sinks",
        "_start_time",
        "_started",
        "_text",
    )

    def __init__(self, info: RequestInfo, sinks: Sequence[OutcomeSink]) -> None:
        """Start the clock for ``info``; report to each of ``sinks``."""
        self._info = info
        self._sinks = sinks
        self._started = time.monotonic()
        self._start_time = timestamp_pb2.Timestamp()
        self._start_time.GetCurrentTime()
        self._first_output: float | None = None
        self._text = 0
        self._done = False

    @property
    def info(self) -> RequestInfo:
        """What the request asked for."""
        return self._info

    @property
    def done(self) -> bool:
        """True once the outcome was reported."""
        return self._done

    def saw_chunk(self, chunk: CompletionChunk) -> None:
        """Note a streamed chunk: the first one fixes the time to first token."""
        if self._first_output is None:
            self._first_output = time.monotonic()
        self._text += len(chunk_text(chunk))

    def succeeded(self, result: CompletionResult) -> CompletionResult:
        """Stamp and report the engine's ``result`` (changed in place and returned)."""
        self._stamp(result)
        self._report(result)
        return result

    def failed(self, error: BaseException) -> CompletionResult:
        """The final result for a request that ended with ``error``, reported.

        Cancellations and deadlines get finish reason CANCELLED; anything else
        ERROR. ``served_by`` is the deployment noted in ``call.placement``. When
        output was streamed, usage is estimated from it (and from the prompt) and
        priced at that deployment's prices (see the module docstring).
        """
        status = status_from_exception(error)
        result = CompletionResult(
            request_id=self._info.call.request_id,
            finish_reason=failed_finish_reason(status),
            error=status,
        )
        placement = self._info.call.placement.placement
        if placement is not None:
            result.served_by.CopyFrom(placement.served_by)
            result.cached = placement.cached
        if self._first_output is not None:
            result.usage.CopyFrom(self._estimated_usage())
            if placement is not None:
                result.cost.CopyFrom(cost_of(result.usage, placement.pricing))
        self._stamp(result)
        self._report(result)
        return result

    def cancelled(self) -> CompletionResult:
        """The final result of a request stopped by its caller: CANCELLED, or
        DEADLINE_EXCEEDED once the request's deadline has passed.

        The deadline was derived from gRPC's remaining time when the call was
        picked up, a moment after gRPC started its own clock; a cancellation
        within :data:`DEADLINE_SLACK_SECONDS` of it is gRPC's deadline firing.
        """
        deadline = self._info.call.deadline
        if deadline is not None and time.monotonic() >= deadline - DEADLINE_SLACK_SECONDS:
            return self.failed(DeadlineExceeded("the request's deadline passed"))
        return self.failed(Cancelled("the request was cancelled"))

    def embedded(self, response: inference_pb2.EmbedResponse) -> None:
        """Report a successful embedding call."""
        self._report(
            CompletionResult(
                served_by=response.served_by,
                usage=response.usage,
                cost=response.cost,
                cached=response.cached,
                finish_reason=common_pb2.FINISH_REASON_STOP,
            )
        )

    def _stamp(self, result: CompletionResult) -> None:
        now = time.monotonic()
        result.request_id = self._info.call.request_id
        result.create_time.CopyFrom(self._start_time)
        result.latency.CopyFrom(_duration(now - self._started))
        if self._first_output is not None:
            result.time_to_first_token.CopyFrom(_duration(self._first_output - self._started))

    def _report(self, result: CompletionResult) -> None:
        if self._done:
            return
        self._done = True
        now = time.monotonic()
        outcome = Outcome(
            request=self._info,
            start_time=self._start_time,
            served_by=result.served_by,
            usage=result.usage,
            cost=result.cost,
            cached=result.cached,
            finish_reason=result.finish_reason,
            error=result.error if result.HasField("error") else None,
            latency_seconds=now - self._started,
            time_to_first_token_seconds=(
                None if self._first_output is None else self._first_output - self._started
            ),
        )
        for sink in self._sinks:
            sink.observe(outcome)

    def _estimated_usage(self) -> common_pb2.Usage:
        completion = self._info.completion
        prompt = 0 if completion is None else _prompt_chars(completion)
        input_tokens = math.ceil(prompt / _CHARS_PER_TOKEN)
        output_tokens = math.ceil(self._text / _CHARS_PER_TOKEN)
        return common_pb2.Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            source=common_pb2.USAGE_SOURCE_ESTIMATED,
        )


def _prompt_chars(request: inference_pb2.CompletionRequest) -> int:
    total = 0
    for message in request.messages:
        total += sum(len(part.text) for part in message.content if part.HasField("text"))
        total += sum(len(call.function.arguments) for call in message.tool_calls)
    return total


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(max(seconds, 0.0) * 1e9))
    return duration
