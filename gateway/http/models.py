"""``ListModels`` as OpenAI's model list and model objects."""

from __future__ import annotations

from typing import Any

import orjson

from llmgw.inference.v1 import inference_pb2

OWNER = "llmgw"


def model_object(model: inference_pb2.ModelInfo) -> dict[str, Any]:
    """One ``model`` object."""
    return {"id": model.name, "object": "model", "created": 0, "owned_by": OWNER}


def models_body(models: list[inference_pb2.ModelInfo]) -> bytes:
    """The ``list`` of every model the caller may use."""
    return orjson.dumps({"object": "list", "data": [model_object(m) for m in models]})
