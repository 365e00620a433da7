"""llmgw embeddings <-> Gemini ``batchEmbedContents``.

One ``EmbedContentRequest`` per input text, in order; ``dimensions`` becomes
``outputDimensionality``. The answer's ``embeddings[i].values`` is the vector of
input ``i``. Usage is taken from ``usageMetadata.promptTokenCount`` when the
answer has it; otherwise usage is left empty for the gateway to estimate.
"""

from __future__ import annotations

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.errors import MalformedResponse
from provider_adapters.gemini.identity import PROVIDER, model_resource
from provider_adapters.support.json_values import Json
from provider_adapters.support.usage import provider_usage


def embed_body(request: inference_pb2.EmbedRequest, *, model: str) -> Json:
    """The ``batchEmbedContents`` body for ``request``."""
    resource = model_resource(model)
    requests: list[Json] = []
    for text in request.inputs:
        entry: Json = {"model": resource, "content": {"parts": [{"text": text}]}}
        if request.HasField("dimensions"):
            entry["outputDimensionality"] = request.dimensions
        requests.append(entry)
    return {"requests": requests}


def embed_response(body: Json, *, model: str, count: int) -> inference_pb2.EmbedResponse:
    """The llmgw response for a ``batchEmbedContents`` answer to ``count`` inputs."""
    embeddings = body.get("embeddings")
    if not isinstance(embeddings, list) or len(embeddings) != count:
        raise MalformedResponse(f"gemini returned no list of {count} embeddings", provider=PROVIDER)
    response = inference_pb2.EmbedResponse(
        served_by=common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=model)
    )
    for index, embedding in enumerate(embeddings):
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list) or not all(
            isinstance(value, int | float) for value in values
        ):
            raise MalformedResponse(f"gemini embedding {index} has no values", provider=PROVIDER)
        response.embeddings.add(index=index, values=values)
    usage = body.get("usageMetadata")
    tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    if isinstance(tokens, int):
        response.usage.CopyFrom(provider_usage(tokens))
    return response
