"""Field checks of registry resources that need no database.

Each ``check_*`` returns the :class:`~services.kernel.errors.FieldViolation` list
of one resource, with paths under ``prefix`` (``"version."`` for an RPC,
``"versions[3]."`` for an import entry), so one call reports every problem.
Descriptions never echo a value that could be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmgw.models.v1 import models_pb2
from services.kernel.errors import FieldViolation
from services.models.refs import ALIAS_NAME, ENV_VAR_NAME, MODEL_NAME, VERSION_ID, parse_ref

_SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "token", "credential", "credentials", "auth", "bearer"}
)
_SECRET_RUNS = ("apikey", "accesskey", "privatekey")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PRICE_FIELDS = (
    "input_per_million_nanos",
    "output_per_million_nanos",
    "cached_input_per_million_nanos",
    "cache_creation_input_per_million_nanos",
)


def looks_like_secret(option_key: str) -> bool:
    """Whether a provider option's name says it holds a secret.

    Whole words count (``access_token``, ``auth``, ``api-key``), not parts of
    words, so ``output_tokens`` or ``max_tokens`` are ordinary options.
    """
    words = [word for word in re.split(r"[^a-z0-9]+", option_key.lower()) if word]
    joined = "".join(words)
    return any(word in _SECRET_WORDS for word in words) or any(
        run in joined for run in _SECRET_RUNS
    )


@dataclass(frozen=True, slots=True)
class Rules:
    """What the checks need to know about the deployment: the provider adapters it has."""

    providers: frozenset[str]


def check_model(model: models_pb2.Model, prefix: str) -> list[FieldViolation]:
    """Name syntax, default alias syntax and fallback reference syntax."""
    problems: list[FieldViolation] = []
    if not MODEL_NAME.match(model.name):
        problems.append(_bad(prefix, "name", "must be 1 to 63 of a-z, 0-9, '-', '_', '.'"))
    if model.default_alias and not ALIAS_NAME.match(model.default_alias):
        problems.append(_bad(prefix, "default_alias", "must be 1 to 63 of a-z, 0-9, '-'"))
    problems.extend(_check_refs(model.context_window_fallbacks, prefix, "context_window_fallbacks"))
    return problems


def check_version(
    version: models_pb2.ModelVersion, prefix: str, rules: Rules
) -> list[FieldViolation]:
    """Provider, ids, limits, prices, credential, endpoint and options of a version."""
    problems: list[FieldViolation] = []
    if not MODEL_NAME.match(version.model):
        problems.append(_bad(prefix, "model", "must name a model"))
    if version.version and not VERSION_ID.match(version.version):
        problems.append(_bad(prefix, "version", "must be 1 to 63 of A-Z, a-z, 0-9, '.', '_', '-'"))
    if version.provider not in rules.providers:
        known = ", ".join(sorted(rules.providers))
        problems.append(
            _bad(prefix, "provider", f"unknown provider (known: {known})", "UNKNOWN_PROVIDER")
        )
    if not version.provider_model_id:
        problems.append(_bad(prefix, "provider_model_id", "is required"))
    problems.extend(check_limits(version, prefix))
    problems.extend(check_pricing(version, prefix))
    problems.extend(_check_credential(version.credential, prefix))
    problems.extend(_check_endpoint(version.endpoint, prefix))
    for key in version.provider_options:
        if looks_like_secret(key):
            problems.append(
                _bad(
                    prefix,
                    f"provider_options[{key}]",
                    "looks like a secret; use credential instead",
                    "SECRET_IN_OPTIONS",
                )
            )
    origin = version.origin
    if origin.type == models_pb2.VERSION_ORIGIN_TYPE_FINE_TUNE and not origin.fine_tune_job_id:
        problems.append(_bad(prefix, "origin.fine_tune_job_id", "is required for FINE_TUNE"))
    return problems


def check_limits(version: models_pb2.ModelVersion, prefix: str) -> list[FieldViolation]:
    """Context window and max output: not negative, output within the window."""
    problems: list[FieldViolation] = []
    if version.context_window < 0:
        problems.append(_bad(prefix, "context_window", "must not be negative"))
    if version.max_output_tokens < 0:
        problems.append(_bad(prefix, "max_output_tokens", "must not be negative"))
    if 0 < version.context_window < version.max_output_tokens:
        problems.append(_bad(prefix, "max_output_tokens", "must not exceed context_window"))
    return problems


def check_pricing(version: models_pb2.ModelVersion, prefix: str) -> list[FieldViolation]:
    """Prices are not negative and carry an ISO 4217 currency when any is set."""
    problems: list[FieldViolation] = []
    pricing = version.pricing
    for name in _PRICE_FIELDS:
        if getattr(pricing, name) < 0:
            problems.append(
                _bad(prefix, f"pricing.{name}", "must not be negative", "NEGATIVE_PRICE")
            )
    priced = any(getattr(pricing, name) for name in _PRICE_FIELDS)
    if (priced or pricing.currency_code) and not _CURRENCY.match(pricing.currency_code):
        problems.append(_bad(prefix, "pricing.currency_code", "must be an ISO 4217 code"))
    return problems


def check_split(
    alias: models_pb2.Alias, prefix: str, *, require_version: bool = True
) -> list[FieldViolation]:
    """The alias's target and traffic split: names, weight 1..99, two distinct versions."""
    problems: list[FieldViolation] = []
    if require_version and not alias.version:
        problems.append(_bad(prefix, "version", "is required"))
    split = alias.traffic_split
    if split.version or split.weight_percent:
        if not split.version:
            problems.append(_bad(prefix, "traffic_split.version", "is required with a weight"))
        if not 1 <= split.weight_percent <= 99:
            problems.append(
                _bad(
                    prefix,
                    "traffic_split.weight_percent",
                    "must be 1 to 99 so that the two versions add up to 100",
                    "INVALID_TRAFFIC_SPLIT",
                )
            )
        if split.version and split.version == alias.version:
            problems.append(
                _bad(
                    prefix,
                    "traffic_split.version",
                    "must differ from version",
                    "INVALID_TRAFFIC_SPLIT",
                )
            )
    return problems


def check_alias(alias: models_pb2.Alias, prefix: str) -> list[FieldViolation]:
    """Names and split of an alias."""
    problems: list[FieldViolation] = []
    if not MODEL_NAME.match(alias.model):
        problems.append(_bad(prefix, "model", "must name a model"))
    if not ALIAS_NAME.match(alias.alias):
        problems.append(_bad(prefix, "alias", "must be 1 to 63 of a-z, 0-9, '-'"))
    problems.extend(check_split(alias, prefix))
    return problems


def check_group(group: models_pb2.ModelGroup, prefix: str) -> list[FieldViolation]:
    """Name, deployments (unique ids, references, non-negative numbers) and fallbacks."""
    problems: list[FieldViolation] = []
    if not MODEL_NAME.match(group.name):
        problems.append(_bad(prefix, "name", "must be 1 to 63 of a-z, 0-9, '-', '_', '.'"))
    if not group.deployments:
        problems.append(_bad(prefix, "deployments", "needs at least one deployment"))
    seen: set[str] = set()
    for index, deployment in enumerate(group.deployments):
        at = f"deployments[{index}]"
        if not deployment.id:
            problems.append(_bad(prefix, f"{at}.id", "is required"))
        elif deployment.id in seen:
            problems.append(_bad(prefix, f"{at}.id", "is a duplicate"))
        seen.add(deployment.id)
        if parse_ref(deployment.model_ref) is None:
            problems.append(_bad(prefix, f"{at}.model_ref", "is not a model reference"))
        for number in ("weight", "priority", "requests_per_minute", "tokens_per_minute"):
            if getattr(deployment, number) < 0:
                problems.append(_bad(prefix, f"{at}.{number}", "must not be negative"))
        if deployment.max_input_tokens < 0:
            problems.append(_bad(prefix, f"{at}.max_input_tokens", "must not be negative"))
    if group.max_retries < 0:
        problems.append(_bad(prefix, "max_retries", "must not be negative"))
    problems.extend(_check_refs(group.fallbacks, prefix, "fallbacks"))
    problems.extend(_check_refs(group.context_window_fallbacks, prefix, "context_window_fallbacks"))
    return problems


def _check_refs(refs: Collection[str], prefix: str, field: str) -> list[FieldViolation]:
    return [
        _bad(prefix, f"{field}[{index}]", "is not a model reference")
        for index, ref in enumerate(refs)
        if parse_ref(ref) is None
    ]


def _check_credential(credential: models_pb2.CredentialRef, prefix: str) -> list[FieldViolation]:
    source = credential.WhichOneof("source")
    if source == "env_var" and not ENV_VAR_NAME.match(credential.env_var):
        return [_bad(prefix, "credential.env_var", "must be an environment variable name")]
    if source == "secret_key_ref":
        ref = credential.secret_key_ref
        return [
            _bad(prefix, f"credential.secret_key_ref.{name}", "is required")
            for name in ("name", "key")
            if not getattr(ref, name)
        ]
    if source == "plaintext_value" and not credential.plaintext_value.strip():
        return [_bad(prefix, "credential.plaintext_value", "must not be empty")]
    if source == "encrypted_value":
        value = credential.encrypted_value
        return [
            _bad(prefix, f"credential.encrypted_value.{name}", "is required")
            for name in ("key_id", "ciphertext")
            if not getattr(value, name)
        ]
    return []


def _check_endpoint(endpoint: str, prefix: str) -> list[FieldViolation]:
    if not endpoint:
        return []
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [_bad(prefix, "endpoint", "must be an http(s) URL")]
    if parts.username or parts.password:
        return [_bad(prefix, "endpoint", "must not carry credentials", "SECRET_IN_ENDPOINT")]
    return []


def _bad(prefix: str, field: str, description: str, reason: str = "") -> FieldViolation:
    return FieldViolation(f"{prefix}{field}", description, reason)
