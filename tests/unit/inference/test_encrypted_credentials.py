"""The adapter pool opens encrypted credentials into the adapter's api key, or names the version."""

from __future__ import annotations

import base64
import os
from importlib.metadata import EntryPoint

import pytest

from llmgw.models.v1 import models_pb2
from provider_adapters.base import ADAPTERS, AdapterPlugin, Deployment
from provider_adapters.simulated import CAPABILITIES, PROVIDER, SimulatedAdapter
from services.inference.routing.adapters import AdapterPool, TargetUnavailable
from services.kernel.plugins import PluginRegistry
from services.kernel.secrets import KEYS_VARIABLE, Keyring, version_binding

PLAINTEXT = "sk-live-5e8d1c2a"


class KeyedSimulatedAdapter(SimulatedAdapter):
    """The simulated adapter, keeping the deployment it was built from for inspection."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        self.deployment = deployment


keyed = AdapterPlugin(name=PROVIDER, create=KeyedSimulatedAdapter, capabilities=CAPABILITIES)


def plugins() -> PluginRegistry[AdapterPlugin]:
    """Only the keyed simulated adapter."""
    return PluginRegistry(
        ADAPTERS,
        available=[EntryPoint(PROVIDER, f"{__name__}:keyed", ADAPTERS.group)],
    )


def new_key() -> str:
    """A fresh base64 256-bit key."""
    return base64.b64encode(os.urandom(32)).decode()


def sealed_version(env: dict[str, str], plaintext: str = PLAINTEXT) -> models_pb2.ModelVersion:
    """Version 1 of "bot" whose credential the keys of ``env`` sealed, as the registry does."""
    version = models_pb2.ModelVersion(
        model="bot", version="1", provider=PROVIDER, provider_model_id="sim-bot"
    )
    sealed = Keyring.from_env(env).encrypt(
        plaintext, version_binding("bot", "1", PROVIDER, version.endpoint)
    )
    version.credential.encrypted_value.key_id = sealed.key_id
    version.credential.encrypted_value.ciphertext = sealed.ciphertext
    return version


def api_key(pool: AdapterPool, version: models_pb2.ModelVersion) -> str:
    """The api key the adapter of ``version`` was built with."""
    _, adapter = pool.acquire(version)
    assert isinstance(adapter, KeyedSimulatedAdapter)
    assert adapter.deployment.api_key is not None
    return adapter.deployment.api_key.value


def test_the_adapter_gets_the_decrypted_key() -> None:
    env = {KEYS_VARIABLE: f"k1={new_key()}"}
    assert api_key(AdapterPool(plugins(), env), sealed_version(env)) == PLAINTEXT


def test_an_old_key_listed_second_still_opens_its_credentials() -> None:
    old = {KEYS_VARIABLE: f"old={new_key()}"}
    version = sealed_version(old)
    rotated = {KEYS_VARIABLE: f"new={new_key()},{old[KEYS_VARIABLE]}"}
    assert api_key(AdapterPool(plugins(), rotated), version) == PLAINTEXT


def test_a_wrong_key_names_the_version_and_not_the_secret() -> None:
    version = sealed_version({KEYS_VARIABLE: f"k1={new_key()}"})
    pool = AdapterPool(plugins(), {KEYS_VARIABLE: f"k1={new_key()}"})
    with pytest.raises(TargetUnavailable, match=r"bot/versions/1: cannot decrypt") as caught:
        pool.acquire(version)
    assert PLAINTEXT not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({KEYS_VARIABLE: f"k2={new_key()}"}, "'k1' is not configured"),
        ({}, r"configured: none"),
        ({KEYS_VARIABLE: "k1=???"}, "not valid base64"),
    ],
)
def test_missing_or_malformed_keys_name_the_version(env: dict[str, str], message: str) -> None:
    version = sealed_version({KEYS_VARIABLE: f"k1={new_key()}"})
    with pytest.raises(TargetUnavailable, match=rf"bot/versions/1: .*{message}"):
        AdapterPool(plugins(), env).acquire(version)


def test_a_credential_copied_to_another_version_does_not_open() -> None:
    env = {KEYS_VARIABLE: f"k1={new_key()}"}
    copied = sealed_version(env)
    copied.version = "2"
    with pytest.raises(TargetUnavailable, match="bot/versions/2: cannot decrypt"):
        AdapterPool(plugins(), env).acquire(copied)
