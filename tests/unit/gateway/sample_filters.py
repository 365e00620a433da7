"""Filters used by the tests, installed through entry points the tests pass in."""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint

from gateway.filters.base import Call, FilterContext, FilterPlugin, GatewayFilter, Stop
from gateway.model_field import ModelFieldReader
from services.kernel.config import Section
from services.kernel.errors import PermissionDenied, ResourceExhausted, Unauthenticated


class KeyGateConfig(Section):
    """Refuses calls without the header; records the key id from it."""

    header: str = "x-test-key"


class KeyGate(GatewayFilter):
    def __init__(self, config: KeyGateConfig) -> None:
        self._header = config.header

    async def on_request(self, call: Call) -> Stop | None:
        key = call.header(self._header)
        if not isinstance(key, str) or not key:
            return Stop.of(PermissionDenied("no key", reason="KEY_MISSING"))
        call.key_id = key
        return None


class ModelGateConfig(Section):
    """Refuses calls whose first request names ``model``."""

    model: str


class ModelGate(GatewayFilter):
    reads_first_message = True

    def __init__(self, config: ModelGateConfig) -> None:
        self._model = config.model
        self._reader = ModelFieldReader()

    async def on_first_message(self, call: Call, message: bytes) -> Stop | None:
        call.model = call.model or self._reader.read(call.method, message)
        if call.model == self._model:
            return Stop.of(ResourceExhausted("model quota used up", retry_after_seconds=2))
        return None


class BearerGateConfig(Section):
    """Admits only calls whose metadata holds ``authorization: Bearer <token>``."""

    token: str


class BearerGate(GatewayFilter):
    def __init__(self, config: BearerGateConfig) -> None:
        self._expected = f"Bearer {config.token}"

    async def on_request(self, call: Call) -> Stop | None:
        if call.header("authorization") != self._expected:
            return Stop.of(Unauthenticated("invalid API key", reason="INVALID_API_KEY"))
        call.key_id = "bearer"
        return None


class SlowGateConfig(Section):
    """Waits ``seconds`` in ``on_request`` (a filter awaiting a remote check)."""

    seconds: float = 1.0


class SlowGate(GatewayFilter):
    def __init__(self, config: SlowGateConfig) -> None:
        self._seconds = config.seconds

    async def on_request(self, call: Call) -> Stop | None:
        await asyncio.sleep(self._seconds)
        return None


def _slow_gate(config: SlowGateConfig, context: FilterContext) -> SlowGate:
    return SlowGate(config)


def _bearer_gate(config: BearerGateConfig, context: FilterContext) -> BearerGate:
    return BearerGate(config)


def _key_gate(config: KeyGateConfig, context: FilterContext) -> KeyGate:
    return KeyGate(config)


def _model_gate(config: ModelGateConfig, context: FilterContext) -> ModelGate:
    return ModelGate(config)


key_gate = FilterPlugin(config_model=KeyGateConfig, build=_key_gate)
model_gate = FilterPlugin(config_model=ModelGateConfig, build=_model_gate)
bearer_gate = FilterPlugin(config_model=BearerGateConfig, build=_bearer_gate)
slow_gate = FilterPlugin(config_model=SlowGateConfig, build=_slow_gate)

ENTRY_POINTS = (
    EntryPoint("key_gate", f"{__name__}:key_gate", "llmgw.gateway_filters"),
    EntryPoint("model_gate", f"{__name__}:model_gate", "llmgw.gateway_filters"),
    EntryPoint("bearer_gate", f"{__name__}:bearer_gate", "llmgw.gateway_filters"),
    EntryPoint("slow_gate", f"{__name__}:slow_gate", "llmgw.gateway_filters"),
)
