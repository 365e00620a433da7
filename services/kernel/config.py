"""Typed process configuration: a YAML file, then environment variables on top.

A process reads its settings once at start into frozen pydantic models and passes
them down; nothing reads the environment later. Precedence, lowest first:

1. the defaults declared on the models below (good for one laptop);
2. the YAML file given with ``--config`` or ``LLMGW_CONFIG``;
3. ``LLMGW_<SECTION>__<FIELD>`` variables, e.g. ``LLMGW_SERVER__PORT=50052``;
4. the conventional URLs ``DATABASE_URL``, ``REDIS_URL`` and ``KAFKA_BOOTSTRAP_SERVERS``.

Unknown keys are errors, so a typo in a config file fails loudly at start.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "LLMGW_"
ENV_NESTING = "__"
CONFIG_FILE_ENV = "LLMGW_CONFIG"
NOT_SETTINGS_ENV = frozenset({CONFIG_FILE_ENV, "LLMGW_SECRETS_KEYS", "LLMGW_SECRETS_KEY"})
"""``LLMGW_`` variables that are not settings: the config file and the secrets keyring
(:mod:`services.kernel.secrets`, read apart so keys never sit in a settings object)."""


class Section(BaseModel):
    """Base of every settings model: immutable, and strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(Section):
    """The gRPC listener of a process."""

    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    max_receive_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    max_send_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    keepalive_time_seconds: float = Field(default=30.0, gt=0)
    keepalive_timeout_seconds: float = Field(default=10.0, gt=0)
    min_client_ping_interval_seconds: float = Field(default=10.0, gt=0)
    max_connection_idle_seconds: float = Field(default=0.0, ge=0)
    grace_period_seconds: float = Field(default=10.0, ge=0)
    reflection: bool = True


class MetricsSettings(Section):
    """The Prometheus ``/metrics`` endpoint; port 0 picks a free port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


class LoggingSettings(Section):
    """Structured logs on stderr."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class KafkaSettings(Section):
    """Connection to a Kafka-protocol broker; empty ``bootstrap_servers`` means in-process."""

    bootstrap_servers: str = ""
    client_id: str = "llmgw"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username_env: str | None = None
    sasl_password_env: str | None = None
    ssl_cafile: str | None = None


class Settings(Section):
    """Everything one llmgw process needs to start."""

    service: str = "llmgw"
    server: ServerSettings = ServerSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    database_url: str = "sqlite+aiosqlite:///.llmgw/llmgw.db"
    redis_url: str | None = None
    kafka: KafkaSettings = KafkaSettings()


class ConfigError(ValueError):
    """The configuration could not be read or is invalid; the message says where."""


SettingsT = TypeVar("SettingsT", bound=Section)


def load_settings(
    model: type[SettingsT],
    *,
    path: Path | None = None,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    foreign_sections: Collection[str] = (),
) -> SettingsT:
    """Build ``model`` from ``path`` (or ``$LLMGW_CONFIG``), ``env`` and ``overrides``.

    ``overrides`` (nested dicts) win over everything; command-line flags use it.
    ``foreign_sections`` are top-level sections of other processes (one file may
    configure the whole suite): they are set aside, not refused as unknown.
    Raises :class:`ConfigError` naming the file, variable or field that is wrong.
    """
    data: dict[str, Any] = {}
    config_path = path or (Path(env[CONFIG_FILE_ENV]) if env.get(CONFIG_FILE_ENV) else None)
    if config_path is not None:
        data = _read_yaml(config_path)
    _merge(data, _from_env(env))
    _merge(data, _conventional_urls(env, model))
    _merge(data, dict(overrides or {}))
    for section in set(foreign_sections) - set(model.model_fields):
        data.pop(section, None)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        source = f" (file {config_path})" if config_path else ""
        raise ConfigError(f"invalid configuration{source}:\n{exc}") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``LLMGW_A__B=v`` becomes ``{"a": {"b": "v"}}``; pydantic converts the types.

    A value that starts with ``[`` or ``{`` is read as JSON, for lists and mappings
    (``LLMGW_GATEWAY__CLUSTERS__INFERENCE__ENDPOINTS='["10.0.0.7:50052"]'``).
    """
    data: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS_ENV:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another")
        node[path[-1]] = _env_value(name, value)
    return data


def _env_value(name: str, value: str) -> Any:
    if not value.lstrip().startswith(("[", "{")):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name} is not valid JSON: {exc}") from exc


def _conventional_urls(env: Mapping[str, str], model: type[Section]) -> dict[str, Any]:
    fields = model.model_fields
    data: dict[str, Any] = {}
    if env.get("DATABASE_URL") and "database_url" in fields:
        data["database_url"] = env["DATABASE_URL"]
    if env.get("REDIS_URL") and "redis_url" in fields:
        data["redis_url"] = env["REDIS_URL"]
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and "kafka" in fields:
        data["kafka"] = {"bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"]}
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _merge(current, value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
