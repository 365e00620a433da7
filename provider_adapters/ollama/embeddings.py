"""llmgw embeddings <-> Ollama ``POST /api/embed``.

The request sends every input text in ``input`` (and ``dimensions`` when set);
the answer's ``embeddings[i]`` is the vector of input ``i`` and
``prompt_eval_count`` the input tokens.
"""

from __future__ import annotations

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import MalformedResponse
from provider_adapters.ollama.identity import PROVIDER
from provider_adapters.support.json_values import Json
from provider_adapters.support.usage import provider_usage


def embed_body(
    request: inference_pb2.EmbedRequest, *, model: str, runner_options: Json, keep_alive: str | None
) -> Json:
    """The ``/api/embed`` body for ``request``."""
    body: Json = {"model": model, "input": list(request.inputs)}
    if request.HasField("dimensions"):
        body["dimensions"] = request.dimensions
    if runner_options:
        body["options"] = dict(runner_options)
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    return body


def embed_response(body: Json, *, model: str, count: int) -> inference_pb2.EmbedResponse:
    """The llmgw response for an ``/api/embed`` answer to ``count`` inputs."""
    vectors = body.get("embeddings")
    if not isinstance(vectors, list) or len(vectors) != count:
        raise MalformedResponse(f"ollama returned no list of {count} embeddings", provider=PROVIDER)
    reported = body.get("model")
    response = inference_pb2.EmbedResponse(
        served_by=common_pb2.ServingInfo(
            provider=PROVIDER,
            provider_model_id=reported if isinstance(reported, str) and reported else model,
        )
    )
    for index, vector in enumerate(vectors):
        if not isinstance(vector, list) or not all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in vector
        ):
            raise MalformedResponse(f"ollama embedding {index} is not numbers", provider=PROVIDER)
        response.embeddings.add(index=index, values=vector)
    tokens = body.get("prompt_eval_count")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        response.usage.CopyFrom(provider_usage(tokens))
    return response
