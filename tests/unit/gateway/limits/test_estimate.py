from __future__ import annotations

import math

from gateway import api_descriptors
from gateway.limits.estimate import TokenEstimator
from llmgw.inference.v1 import inference_pb2

assert api_descriptors.API_FILES
INFERENCE = "/llmgw.inference.v1.InferenceService"
ESTIMATOR = TokenEstimator(chars_per_token=4, default_max_output_tokens=100)


def _completion(max_output_tokens: int | None = None) -> inference_pb2.CompletionRequest:
    completion = inference_pb2.CompletionRequest(
        model="m",
        messages=[inference_pb2.Message(content=[inference_pb2.ContentPart(text="x" * 40)])],
    )
    if max_output_tokens is not None:
        completion.sampling.max_output_tokens = max_output_tokens
    return completion


def test_input_is_length_over_four_plus_the_requested_output() -> None:
    message = inference_pb2.CompleteRequest(completion=_completion(max_output_tokens=7))
    data = message.SerializeToString()
    assert ESTIMATOR.estimate(f"{INFERENCE}/Complete", data) == math.ceil(len(data) / 4) + 7


def test_the_default_output_applies_when_the_request_sets_none() -> None:
    chat = inference_pb2.ChatRequest(start=_completion()).SerializeToString()
    assert ESTIMATOR.estimate(f"{INFERENCE}/Chat", chat) == math.ceil(len(chat) / 4) + 100


def test_embeddings_and_unknown_methods_reserve_input_only() -> None:
    embed = inference_pb2.EmbedRequest(model="e", inputs=["a" * 30]).SerializeToString()
    assert ESTIMATOR.estimate(f"{INFERENCE}/Embed", embed) == math.ceil(len(embed) / 4)
    assert ESTIMATOR.estimate("/x.Y/Z", b"12345678") == 2


def test_an_undecodable_message_reserves_the_default_output() -> None:
    garbage = b"\x0a\xff\xff\xff"
    assert ESTIMATOR.estimate(f"{INFERENCE}/Complete", garbage) == 1 + 100
