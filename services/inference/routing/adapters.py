"""Provider adapters of the routing table: built once per version, shared across tables.

An adapter is built from a version's provider, ``provider_model_id``, endpoint,
credential, ``provider_options`` and timeouts through the adapter plugin registry.
A new table reuses the adapter of every version whose connection settings did not
change, so a registry update does not drop warm connection pools. An adapter no
table uses any more is closed (after the requests of the old table finished).

A credential is read from the environment variable it names, or decrypted from
its ``encrypted_value`` with the keyring the same environment configures
(:mod:`services.kernel.secrets`); the plaintext lives only in the adapter's
``Deployment.api_key``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from google.protobuf import duration_pb2

from llmgw.models.v1 import models_pb2
from provider_adapters.base import (
    AdapterPlugin,
    Deployment,
    ProviderAdapter,
    Secret,
    Timeouts,
)
from services.kernel.errors import LlmgwError
from services.kernel.plugins import PluginError, PluginRegistry
from services.kernel.secrets import Keyring, Sealed, SecretsError, version_binding


class TargetUnavailable(Exception):
    """A version cannot be served (unknown provider, missing credential, bad options).

    The message names the version and the cause, never a secret value.
    """


@dataclass(slots=True)
class _Entry:
    adapter: ProviderAdapter
    tables: int


class AdapterPool:
    """Adapters by connection settings, counted by the tables that use them.

    ``env`` is where ``CredentialRef.env_var`` references are looked up and
    where the secrets keys that open ``CredentialRef.encrypted_value`` are read
    (once, on the first encrypted credential).
    """

    def __init__(self, registry: PluginRegistry[AdapterPlugin], env: Mapping[str, str]) -> None:
        self._registry = registry
        self._env = env
        self._entries: dict[tuple[object, ...], _Entry] = {}

    def acquire(
        self, version: models_pb2.ModelVersion
    ) -> tuple[tuple[object, ...], ProviderAdapter]:
        """The adapter for ``version`` and its key; the caller must :meth:`release` the key.

        Raises :class:`TargetUnavailable` when it cannot be built.
        """
        deployment = self._deployment(version)
        key = _fingerprint(deployment)
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(self._create(version, deployment), 0)
            self._entries[key] = entry
        entry.tables += 1
        return key, entry.adapter

    def release(self, keys: Iterable[tuple[object, ...]]) -> list[ProviderAdapter]:
        """Drop one table's use of ``keys``; returns the adapters nobody uses any more."""
        unused: list[ProviderAdapter] = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            entry.tables -= 1
            if entry.tables <= 0:
                del self._entries[key]
                unused.append(entry.adapter)
        return unused

    def drain(self) -> list[ProviderAdapter]:
        """Forget every adapter and return them all (for closing on shutdown)."""
        adapters = [entry.adapter for entry in self._entries.values()]
        self._entries.clear()
        return adapters

    def _create(self, version: models_pb2.ModelVersion, deployment: Deployment) -> ProviderAdapter:
        name = _version_name(version)
        try:
            plugin = self._registry.get(version.provider)
        except PluginError as exc:
            raise TargetUnavailable(f"{name}: {exc}") from None
        try:
            return plugin.create(deployment)
        except (LlmgwError, ValueError, TypeError) as exc:
            raise TargetUnavailable(
                f"{name}: provider {version.provider!r} refused the deployment: {exc}"
            ) from None

    def _deployment(self, version: models_pb2.ModelVersion) -> Deployment:
        return Deployment(
            provider=version.provider,
            model=version.provider_model_id or version.model,
            base_url=version.endpoint,
            api_key=self._secret(version),
            options=dict(version.provider_options),
            timeouts=_timeouts(version.timeouts) if version.HasField("timeouts") else Timeouts(),
        )

    def _secret(self, version: models_pb2.ModelVersion) -> Secret | None:
        credential = version.credential
        source = credential.WhichOneof("source")
        if source is None:
            return None
        if source == "env_var":
            value = self._env.get(credential.env_var)
            if not value:
                raise TargetUnavailable(
                    f"{_version_name(version)}: credential variable "
                    f"{credential.env_var!r} is not set"
                )
            return Secret(value)
        if source == "encrypted_value":
            return Secret(self._decrypt(version))
        raise TargetUnavailable(
            f"{_version_name(version)}: credential source {source!r} is not readable here; "
            "expose the secret to the inference service as an environment variable"
        )

    @cached_property
    def _keyring(self) -> Keyring:
        return Keyring.from_env(self._env)

    def _decrypt(self, version: models_pb2.ModelVersion) -> str:
        value = version.credential.encrypted_value
        try:
            return self._keyring.decrypt(
                Sealed(key_id=value.key_id, ciphertext=value.ciphertext),
                version_binding(version.model, version.version, version.provider, version.endpoint),
            )
        except SecretsError as exc:
            raise TargetUnavailable(
                f"{_version_name(version)}: cannot decrypt the credential: {exc}"
            ) from None


def _timeouts(config: models_pb2.UpstreamTimeouts) -> Timeouts:
    default = Timeouts()

    def seconds(value: duration_pb2.Duration, present: bool, fallback: float) -> float:
        return value.ToNanoseconds() / 1e9 if present else fallback

    return Timeouts(
        connect=seconds(config.connect, config.HasField("connect"), default.connect),
        first_byte=seconds(config.first_byte, config.HasField("first_byte"), default.first_byte),
        between_chunks=seconds(
            config.between_chunks, config.HasField("between_chunks"), default.between_chunks
        ),
        total=seconds(config.total, config.HasField("total"), default.total),
    )


def _fingerprint(deployment: Deployment) -> tuple[object, ...]:
    # A digest, so the key never holds the credential itself.
    secret = (
        hashlib.sha256(deployment.api_key.value.encode()).hexdigest()
        if deployment.api_key is not None
        else None
    )
    return (
        deployment.provider,
        deployment.model,
        deployment.base_url,
        secret,
        tuple(sorted(deployment.options.items())),
        deployment.timeouts,
        deployment.max_connections,
    )


def _version_name(version: models_pb2.ModelVersion) -> str:
    return f"{version.model}/versions/{version.version}"
