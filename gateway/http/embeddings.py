"""OpenAI Embeddings bodies to ``Embed`` requests, and ``EmbedResponse`` back.

``input`` may be a string or an array of strings (token arrays are refused);
``encoding_format`` ``float`` gives arrays of numbers and ``base64`` (what the
``openai`` package asks for by default) little-endian float32 bytes in base64.
"""

from __future__ import annotations

import base64
import sys
from array import array
from dataclasses import dataclass

import orjson

from gateway.http.fields import as_integer, as_object, as_string, bad
from llmgw.inference.v1 import inference_pb2

ENCODINGS = frozenset({"float", "base64"})


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    """A parsed Embeddings request."""

    embed: inference_pb2.EmbedRequest
    base64: bool


def parse_embeddings(body: object) -> EmbeddingsRequest:
    """The ``Embed`` request an Embeddings body asks for; InvalidArgument when it is wrong."""
    body = as_object(body, "body")
    embed = inference_pb2.EmbedRequest(model=as_string(body.get("model"), "model"))
    raw = body.get("input")
    if isinstance(raw, str):
        embed.inputs.append(raw)
    elif isinstance(raw, list) and raw:
        embed.inputs.extend(as_string(item, f"input[{i}]") for i, item in enumerate(raw))
    else:
        raise bad("input", "must be a string or a non-empty array of strings")
    if body.get("dimensions") is not None:
        embed.dimensions = as_integer(body["dimensions"], "dimensions")
    if body.get("user") is not None:
        embed.options.end_user_id = as_string(body["user"], "user")
    encoding = body.get("encoding_format") or "float"
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise bad("encoding_format", "must be float or base64")
    return EmbeddingsRequest(embed, encoding == "base64")


def embeddings_body(response: inference_pb2.EmbedResponse, model: str, *, b64: bool) -> bytes:
    """The ``list`` of ``embedding`` objects for an ``EmbedResponse``."""
    data = [
        {
            "object": "embedding",
            "index": embedding.index,
            "embedding": _base64(embedding.values) if b64 else list(embedding.values),
        }
        for embedding in response.embeddings
    ]
    tokens = response.usage.input_tokens
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _base64(values: object) -> str:
    floats = array("f", values)  # type: ignore[call-overload]
    if sys.byteorder == "big":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")
