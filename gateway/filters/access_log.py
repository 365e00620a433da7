"""The ``access_log`` filter: one JSON line per call.

Each line holds the request id, method, API key id, model, status code, latency,
upstream latency, cluster and endpoint, bytes and messages both ways, and the token
counts the upstream reported in its trailers. It never holds metadata values or
message bodies unless the config names them; secret-bearing metadata keys cannot
be named at all.

Config::

    - name: access_log
      config:
        output: stderr            # stderr, stdout, or a file path (appended to)
        log_model: true           # read the model from the first request message
        include_metadata: [x-client-name]
        include_request_body: false
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import descriptor_pool, json_format, message_factory
from pydantic import field_validator

from gateway.filters.base import Call, CallOutcome, FilterContext, FilterPlugin, GatewayFilter
from gateway.model_field import ModelFieldReader
from services.kernel.config import Section
from services.kernel.context import current_request_id

SECRET_METADATA_KEYS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
"""Metadata keys whose values are credentials; the access log refuses to include them."""


class AccessLogConfig(Section):
    """Config of the access log; see the module docstring."""

    output: str = "stderr"
    log_model: bool = True
    include_metadata: tuple[str, ...] = ()
    include_request_body: bool = False
    input_tokens_trailer: str = "llmgw-usage-input-tokens"
    output_tokens_trailer: str = "llmgw-usage-output-tokens"

    @field_validator("include_metadata")
    @classmethod
    def _no_secrets(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(key.lower() for key in keys)
        refused = sorted(set(lowered) & SECRET_METADATA_KEYS)
        if refused:
            raise ValueError(f"metadata keys carrying credentials cannot be logged: {refused}")
        return lowered


class AccessLog(GatewayFilter):
    """Writes one JSON object per call to its output, at the end of the call."""

    def __init__(self, config: AccessLogConfig, output: TextIO, owns_output: bool) -> None:
        self._config = config
        self._output = output
        self._owns_output = owns_output
        self._models = ModelFieldReader()

    def reads_first_message_of(self, method: str) -> bool:
        """The body when configured; else only methods whose requests name a model."""
        if self._config.include_request_body:
            return True
        return self._config.log_model and self._models.path(method) is not None

    async def on_first_message(self, call: Call, message: bytes) -> None:
        """Note the model (and, when configured, the body) of the first request."""
        if self._config.log_model and not call.model:
            call.model = self._models.read(call.method, message)
        if self._config.include_request_body:
            call.annotations["request_body"] = _render_body(call.method, message)

    def on_call_end(self, call: Call, outcome: CallOutcome) -> None:
        """Write the line of the call."""
        self._output.write(json.dumps(self.entry(call, outcome), separators=(",", ":")) + "\n")
        self._output.flush()

    def entry(self, call: Call, outcome: CallOutcome) -> dict[str, Any]:
        """The fields logged for one call."""
        entry: dict[str, Any] = {
            "ts": _timestamp(),
            "request_id": current_request_id(),
            "method": call.method,
            "shape": call.shape.value,
            "peer": call.peer,
            "key_id": call.key_id,
            "model": call.model,
            "code": outcome.code.name,
            "latency_ms": round(outcome.duration_seconds * 1000, 3),
            "upstream_latency_ms": round(outcome.upstream_seconds * 1000, 3),
            "cluster": outcome.cluster,
            "upstream": outcome.endpoint,
            "attempts": outcome.attempts,
            "request_messages": outcome.request_messages,
            "response_messages": outcome.response_messages,
            "request_bytes": outcome.request_bytes,
            "response_bytes": outcome.response_bytes,
            "input_tokens": _count(outcome.trailer(self._config.input_tokens_trailer)),
            "output_tokens": _count(outcome.trailer(self._config.output_tokens_trailer)),
        }
        if outcome.code.name != "OK":
            entry["message"] = outcome.message
        if outcome.stopped_by:
            entry["stopped_by"] = outcome.stopped_by
        if self._config.include_metadata:
            entry["metadata"] = {
                key: _text(value)
                for key, value in call.metadata
                if key in self._config.include_metadata
            }
        entry.update(call.annotations)
        return entry

    def close(self) -> None:
        """Close the log file, if the filter opened one."""
        if self._owns_output:
            self._output.close()


def _count(value: str | bytes | None) -> int | None:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else base64.b64encode(value).decode()


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _render_body(method: str, message: bytes) -> str:
    """The request as JSON when its type is known, else its bytes in base64."""
    service, _, name = method.lstrip("/").rpartition("/")
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
        request = message_factory.GetMessageClass(descriptor.input_type).FromString(message)
        return json.dumps(json_format.MessageToDict(request), separators=(",", ":"))
    except Exception:
        return base64.b64encode(message).decode()


def build(config: AccessLogConfig, context: FilterContext) -> AccessLog:
    """An access log writing to ``config.output``."""
    if config.output == "stderr":
        return AccessLog(config, sys.stderr, owns_output=False)
    if config.output == "stdout":
        return AccessLog(config, sys.stdout, owns_output=False)
    path = Path(config.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    return AccessLog(config, path.open("a", encoding="utf-8"), owns_output=True)


plugin = FilterPlugin(config_model=AccessLogConfig, build=build)
