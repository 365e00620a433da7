"""The request tracker: one outcome per request, cut-short requests priced where they ran."""

from __future__ import annotations

from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2
from services.inference.engine import CallContext, Placement
from services.inference.outcome import Outcome, RequestInfo, RequestTracker
from services.kernel.errors import Cancelled, DeadlineExceeded, Unavailable

PRICING = common_pb2.Pricing(
    currency_code="EUR", input_per_million_nanos=3_000_000_000, output_per_million_nanos=0
)
SERVED_BY = common_pb2.ServingInfo(provider="simulated", model="small", model_version="2")


def tracker(call: CallContext, outcomes: list[Outcome]) -> RequestTracker:
    """A tracker of a Chat request for ``big`` (a 40-character prompt: 10 tokens)."""
    request = inference_pb2.CompletionRequest(
        request_id=call.request_id,
        model="big",
        messages=[inference_pb2.Message(content=[inference_pb2.ContentPart(text="x" * 40)])],
    )
    info = RequestInfo(
        operation=events_pb2.INFERENCE_OPERATION_CHAT,
        method="Chat",
        requested_model="big",
        call=call,
        completion=request,
    )
    return RequestTracker(info, [_Log(outcomes)])


class _Log:
    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes

    def observe(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def test_a_cut_short_stream_is_priced_at_the_placed_deployment() -> None:
    call = CallContext("r-1")
    outcomes: list[Outcome] = []
    requested = tracker(call, outcomes)
    call.placement.place(Placement(SERVED_BY, PRICING))
    requested.saw_chunk(inference_pb2.CompletionChunk(text_delta="abcdefgh"))
    final = requested.cancelled()
    assert final.finish_reason == common_pb2.FINISH_REASON_CANCELLED
    assert final.served_by == SERVED_BY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 2)
    assert final.cost.currency_code == "EUR" and final.cost.input_nanos == 30_000
    (outcome,) = outcomes
    assert outcome.served_by == SERVED_BY and outcome.cost == final.cost


def test_a_cut_short_cache_replay_stays_cached_and_free() -> None:
    call = CallContext("r-2")
    requested = tracker(call, [])
    call.placement.place(Placement(SERVED_BY, common_pb2.Pricing(currency_code="EUR"), cached=True))
    requested.saw_chunk(inference_pb2.CompletionChunk(text_delta="abcdefgh"))
    final = requested.failed(DeadlineExceeded("late"))
    assert final.cached and final.cost.total_nanos == 0
    assert final.usage.output_tokens == 2


def test_a_request_never_placed_costs_nothing_and_reports_once() -> None:
    outcomes: list[Outcome] = []
    requested = tracker(CallContext("r-3"), outcomes)
    final = requested.failed(Unavailable("no deployment"))
    requested.cancelled()  # a second ending is not reported
    assert final.finish_reason == common_pb2.FINISH_REASON_ERROR
    assert not final.HasField("served_by") and not final.HasField("cost")
    assert [o.status.name for o in outcomes] == ["UNAVAILABLE"]
    assert not tracker(CallContext("r-4"), []).failed(Cancelled("gone")).HasField("usage")
