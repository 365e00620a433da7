"""The simulated provider: a model that needs no network, for ``make run``, demos and benchmarks.

It behaves like a remote LLM in the ways that matter to a gateway: time to first
token, a steady token rate, a configurable answer length, injected failures, and
output that is a pure function of the prompt and the seed, so tests and benchmarks
are reproducible. Options (all optional, in ``Deployment.options``):

=======================  =======  ==========================================================
key                      default  meaning
=======================  =======  ==========================================================
``ttft_ms``              ``0``    delay before the first token (and before a unary answer)
``tokens_per_second``    ``0``    generation rate; ``0`` means as fast as possible
``output_tokens``        ``16``   answer length in tokens, capped by ``max_output_tokens``
``error_rate``           ``0``    probability (0..1) that a request fails
``error_status``         ``503``  the HTTP status the injected failure simulates
``seed``                 ``0``    seed used when the request sets none
``embedding_dimensions`` ``256``  vector size when the request sets none
=======================  =======  ==========================================================

Tokens are words. Input tokens are estimated as one per four characters of text
(rounded up), the documented estimate for providers that report none.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from llmgw.common.v1 import common_pb2
from llmgw.inference.v1 import inference_pb2
from provider_adapters.base import (
    Capability,
    CompletionChunk,
    CompletionRequest,
    CompletionResult,
    Deployment,
    EmbedRequest,
    EmbedResponse,
    ProviderAdapter,
    StreamEvent,
)
from provider_adapters.errors import ProviderBadRequest, error_for_status

PROVIDER = "simulated"
CAPABILITIES = frozenset(
    {Capability.STREAMING, Capability.TOOLS, Capability.JSON_SCHEMA, Capability.EMBEDDINGS}
)
_VOCABULARY = (
    "the gateway routes each request to a healthy deployment and streams tokens back "
    "while usage cost and limits are tracked for every key project and model across "
    "replicas with retries fallbacks and a cache in front of the provider"
)
_WORDS = tuple(_VOCABULARY.split())


@dataclass(frozen=True, slots=True)
class SimulatedOptions:
    """The simulated provider's knobs, validated from ``Deployment.options``."""

    ttft_ms: float = 0.0
    tokens_per_second: float = 0.0
    output_tokens: int = 16
    error_rate: float = 0.0
    error_status: int = 503
    seed: int = 0
    embedding_dimensions: int = 256

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> SimulatedOptions:
        """Read and check ``options``; unknown keys and bad values raise ProviderBadRequest."""
        fields = cls.__dataclass_fields__
        known = set(fields)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ProviderBadRequest(
                f"unknown simulated option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
                provider=PROVIDER,
            )
        values: dict[str, Any] = {}
        for key, raw in options.items():
            kind: type[Any] = type(fields[key].default)
            try:
                values[key] = kind(raw)
            except ValueError as exc:
                raise ProviderBadRequest(
                    f"simulated option {key}={raw!r} is not a {kind.__name__}", provider=PROVIDER
                ) from exc
        parsed = cls(**values)
        if not 0.0 <= parsed.error_rate <= 1.0:
            raise ProviderBadRequest("simulated error_rate must be within 0..1", provider=PROVIDER)
        if parsed.output_tokens < 0 or parsed.embedding_dimensions <= 0:
            raise ProviderBadRequest(
                "simulated output_tokens and embedding_dimensions must be positive",
                provider=PROVIDER,
            )
        return parsed


class SimulatedAdapter(ProviderAdapter):
    """A deterministic, network-free model; see the module docstring."""

    capabilities = CAPABILITIES

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment
        self._options = SimulatedOptions.parse(deployment.options)

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        plan = self._plan(request)
        await asyncio.sleep(self._options.ttft_ms / 1000)
        await asyncio.sleep(_generation_seconds(len(plan.words), self._options.tokens_per_second))
        message = inference_pb2.Message(role=common_pb2.ROLE_ASSISTANT)
        if plan.tool_call is not None:
            message.tool_calls.append(plan.tool_call)
        else:
            message.content.append(inference_pb2.ContentPart(text=" ".join(plan.words)))
        return self._result(request, plan, message)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        plan = self._plan(request)
        await asyncio.sleep(self._options.ttft_ms / 1000)
        if plan.tool_call is not None:
            yield CompletionChunk(
                role=common_pb2.ROLE_ASSISTANT,
                tool_call_deltas=[
                    inference_pb2.ToolCallDelta(
                        index=0,
                        id=plan.tool_call.id,
                        function_name=plan.tool_call.function.name,
                        arguments_delta=plan.tool_call.function.arguments,
                    )
                ],
            )
        else:
            delay = _generation_seconds(1, self._options.tokens_per_second)
            for index, word in enumerate(plan.words):
                text = word if index == 0 else " " + word
                role = common_pb2.ROLE_ASSISTANT if index == 0 else common_pb2.ROLE_UNSPECIFIED
                yield CompletionChunk(role=role, text_delta=text)
                await asyncio.sleep(delay)
        yield self._result(request, plan, None)

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self._maybe_fail(_rng(self._options.seed, list(request.inputs)))
        dimensions = (
            request.dimensions
            if request.HasField("dimensions")
            else self._options.embedding_dimensions
        )
        response = EmbedResponse(request_id=request.request_id)
        input_tokens = 0
        for index, text in enumerate(request.inputs):
            rng = _rng(self._options.seed, text)
            vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            response.embeddings.add(index=index, values=[v / norm for v in vector])
            input_tokens += estimate_tokens(text)
        response.usage.CopyFrom(_usage(input_tokens, 0))
        response.served_by.CopyFrom(self._served_by())
        return response

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        return sum(estimate_tokens(text) for text in _texts(request))

    def _plan(self, request: CompletionRequest) -> _Plan:
        seed = request.sampling.seed if request.sampling.HasField("seed") else self._options.seed
        prompt = list(_texts(request))
        rng = _rng(seed, prompt)
        self._maybe_fail(rng)
        input_tokens = sum(estimate_tokens(text) for text in prompt)
        tool_call = _tool_call(request, rng)
        if tool_call is not None:
            return _Plan([], tool_call, input_tokens, common_pb2.FINISH_REASON_TOOL_CALLS)
        length = self._options.output_tokens
        finish = common_pb2.FINISH_REASON_STOP
        if (
            request.sampling.HasField("max_output_tokens")
            and request.sampling.max_output_tokens < length
        ):
            length = request.sampling.max_output_tokens
            finish = common_pb2.FINISH_REASON_LENGTH
        words = [rng.choice(_WORDS) for _ in range(length)]
        if request.response_format.HasField("json_schema") or request.response_format.HasField(
            "json_object"
        ):
            words = [json.dumps({"answer": " ".join(words)})]
        return _Plan(words, None, input_tokens, finish)

    def _maybe_fail(self, rng: random.Random) -> None:
        if self._options.error_rate and rng.random() < self._options.error_rate:
            raise error_for_status(
                self._options.error_status,
                f"simulated failure (status {self._options.error_status})",
                provider=PROVIDER,
                retry_after_seconds=1.0 if self._options.error_status == 429 else None,
            )

    def _result(
        self, request: CompletionRequest, plan: _Plan, message: inference_pb2.Message | None
    ) -> CompletionResult:
        output_tokens = len(plan.words) if plan.tool_call is None else 1
        result = CompletionResult(
            request_id=request.request_id,
            finish_reason=plan.finish_reason,
            usage=_usage(plan.input_tokens, output_tokens),
            served_by=self._served_by(),
        )
        if message is not None:
            result.message.CopyFrom(message)
        return result

    def _served_by(self) -> common_pb2.ServingInfo:
        return common_pb2.ServingInfo(provider=PROVIDER, provider_model_id=self._deployment.model)


@dataclass(frozen=True, slots=True)
class _Plan:
    words: list[str]
    tool_call: inference_pb2.ToolCall | None
    input_tokens: int
    finish_reason: common_pb2.FinishReason.ValueType


def estimate_tokens(text: str) -> int:
    """The documented estimate: one token per four characters, rounded up."""
    return math.ceil(len(text) / 4)


def _texts(request: CompletionRequest) -> list[str]:
    texts: list[str] = []
    for message in request.messages:
        texts.extend(part.text for part in message.content if part.HasField("text"))
        texts.extend(call.function.arguments for call in message.tool_calls)
    return texts


def _rng(seed: int, material: object) -> random.Random:
    digest = hashlib.sha256(json.dumps([seed, material]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _generation_seconds(tokens: int, tokens_per_second: float) -> float:
    return tokens / tokens_per_second if tokens_per_second > 0 else 0.0


def _usage(input_tokens: int, output_tokens: int) -> common_pb2.Usage:
    return common_pb2.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        source=common_pb2.USAGE_SOURCE_ESTIMATED,
    )


def _tool_call(request: CompletionRequest, rng: random.Random) -> inference_pb2.ToolCall | None:
    """Call a tool when tools are offered, allowed, and the last turn is the user's."""
    if not request.tools or not request.messages:
        return None
    if request.messages[-1].role != common_pb2.ROLE_USER:
        return None
    choice = request.tool_choice
    if choice.HasField("mode") and choice.mode == inference_pb2.TOOL_CHOICE_MODE_NONE:
        return None
    functions = [tool.function for tool in request.tools if tool.HasField("function")]
    if choice.HasField("function_name"):
        functions = [f for f in functions if f.name == choice.function_name]
    if not functions:
        return None
    function = functions[0]
    schema = json_format.MessageToDict(function.parameters)
    arguments = {
        name: _sample_value(spec, rng)
        for name, spec in schema.get("properties", {}).items()
        if isinstance(spec, dict)
    }
    return inference_pb2.ToolCall(
        id=f"call_{rng.getrandbits(48):012x}",
        function=inference_pb2.FunctionCall(name=function.name, arguments=json.dumps(arguments)),
    )


def _sample_value(spec: Mapping[str, Any], rng: random.Random) -> Any:
    if spec.get("enum"):
        return rng.choice(list(spec["enum"]))
    sample = _SAMPLERS.get(str(spec.get("type")))
    return rng.choice(_WORDS) if sample is None else sample(rng)


_SAMPLERS: Mapping[str, Callable[[random.Random], Any]] = {
    "integer": lambda r: r.randint(1, 10),
    "number": lambda r: round(r.uniform(1, 10), 2),
    "boolean": lambda r: r.random() < 0.5,
    "array": lambda r: [],
    "object": lambda r: {},
}
