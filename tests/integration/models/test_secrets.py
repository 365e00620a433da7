"""Encrypted credentials: the registry stores, returns and publishes only ciphertext.

A version created or updated with ``credential.plaintext_value`` is sealed with
the registry's secrets key; the plaintext must appear in no response, no
WatchRegistry message, no event, no audit entry, no export and no database row,
while the inference side's keyring still opens the stored value.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest
import yaml
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from sqlalchemy import text

from llmgw.models.v1 import models_pb2 as pb
from services.kernel.secrets import KEYS_VARIABLE, Keyring, Sealed, version_binding
from services.kernel.sql import Database, DatabaseConfig
from services.models.caller import SYSTEM
from services.models.portable import export_registry, import_registry
from tests.integration.models.conftest import ACTOR, Running, serving, version
from tests.integration.models.rpc_errors import failure, reason, rich_status, violations

pytestmark = pytest.mark.integration

PLAINTEXT = "sk-live-Q7x2b9Rk4mZp"
ROTATED = "sk-live-N3w8Kc1vT6yh"
TABLES = (
    "registry_state",
    "registry_models",
    "registry_versions",
    "registry_aliases",
    "registry_alias_history",
    "registry_groups",
    "registry_changes",
)


def new_key() -> str:
    """A fresh base64 256-bit key."""
    return base64.b64encode(os.urandom(32)).decode()


def keys_env(*pairs: tuple[str, str]) -> dict[str, str]:
    """The environment configuring ``(id, key)`` pairs, the first encrypting."""
    return {KEYS_VARIABLE: ",".join(f"{key_id}={key}" for key_id, key in pairs)}


def secret_version(model: str, version_id: str, plaintext: str = PLAINTEXT) -> pb.ModelVersion:
    """A valid version whose credential is given in plain text."""
    message = version(model, version_id)
    message.credential.plaintext_value = plaintext
    return message


def opened(env: dict[str, str], stored: pb.ModelVersion) -> str:
    """What the inference side decrypts from ``stored`` with the keys of ``env``."""
    value = stored.credential.encrypted_value
    return Keyring.from_env(env).decrypt(
        Sealed(value.key_id, value.ciphertext),
        version_binding(stored.model, stored.version, stored.provider, stored.endpoint),
    )


def assert_hidden(messages: Iterable[Message | bytes | str], *secrets: str) -> None:
    """No secret in the serialized bytes (nor the text form) of any of ``messages``."""
    for message in messages:
        if isinstance(message, Message):
            blobs = [message.SerializeToString(), str(message).encode()]
        elif isinstance(message, str):
            blobs = [message.encode()]
        else:
            blobs = [message]
        for blob in blobs:
            for secret in secrets:
                assert secret.encode() not in blob, f"secret found in {type(message).__name__}"


async def database_rows(database_url: str) -> list[bytes]:
    """Every value of every registry table, as bytes."""
    database = await Database.connect(DatabaseConfig(database_url))
    found: list[bytes] = []
    try:
        async with database.connection() as conn:
            for table in TABLES:
                for row in await conn.execute(text(f"SELECT * FROM {table}")):
                    for value in row:
                        found.append(
                            bytes(value)
                            if isinstance(value, bytes | memoryview)
                            else str(value).encode()
                        )
    finally:
        await database.close()
    return found


async def next_message(
    stream: grpc.aio.UnaryStreamCall[pb.WatchRegistryRequest, pb.WatchRegistryResponse],
) -> pb.WatchRegistryResponse:
    """The next message of a WatchRegistry stream, failing after 5 s."""
    message = await asyncio.wait_for(stream.read(), 5)
    assert isinstance(message, pb.WatchRegistryResponse)
    return message


async def wait_for_events(registry: Running, count: int) -> None:
    """Wait until the relay published ``count`` events, failing after 5 s."""
    deadline = asyncio.get_running_loop().time() + 5
    while len(registry.events.published) < count:
        assert asyncio.get_running_loop().time() < deadline, "events not published in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def env() -> dict[str, str]:
    """One encrypting key, "k1"."""
    return keys_env(("k1", new_key()))


@pytest.fixture
async def keyed(database_url: str, env: dict[str, str]) -> AsyncIterator[Running]:
    """A registry with the secrets key of ``env``."""
    async with serving(database_url, env=env) as running:
        yield running


async def test_plaintext_is_encrypted_and_never_shown(
    keyed: Running, env: dict[str, str], database_url: str
) -> None:
    stub = keyed.stub
    watch = stub.WatchRegistry(pb.WatchRegistryRequest())
    first = await next_message(watch)
    await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="bot")), metadata=ACTOR)
    created = (
        await stub.CreateModelVersion(
            pb.CreateModelVersionRequest(version=secret_version("bot", "")), metadata=ACTOR
        )
    ).version
    assert created.credential.WhichOneof("source") == "encrypted_value"
    assert created.credential.encrypted_value.key_id == "k1"
    assert opened(env, created) == PLAINTEXT

    updated = (
        await stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=secret_version("bot", created.version, ROTATED),
                update_mask=field_mask_pb2.FieldMask(paths=["credential"]),
            ),
            metadata=ACTOR,
        )
    ).version
    assert (
        updated.credential.encrypted_value.ciphertext
        != created.credential.encrypted_value.ciphertext
    )
    assert opened(env, updated) == ROTATED

    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version=created.version, alias="production"),
        metadata=ACTOR,
    )
    changes = [await next_message(watch) for _ in range(5)]
    watch.cancel()
    replay = stub.WatchRegistry(pb.WatchRegistryRequest())
    snapshot = await next_message(replay)
    replay.cancel()
    assert [c.WhichOneof("event") for c in changes] == ["change"] * 5
    assert snapshot.snapshot.versions[0].credential == updated.credential

    responses: list[Message] = [
        created,
        updated,
        await stub.GetModelVersion(pb.GetModelVersionRequest(model="bot", version="1")),
        await stub.ListModelVersions(pb.ListModelVersionsRequest(model="bot")),
        await stub.Resolve(pb.ResolveRequest(ref="bot@production")),
        await stub.ListAliasHistory(pb.ListAliasHistoryRequest(model="bot", alias="production")),
    ]
    await wait_for_events(keyed, 10)
    published = [event for _, event in keyed.events.published]
    assert len(published) == 10
    exported = await export_registry(keyed.runtime.registry)
    assert "encrypted_value" in exported
    assert_hidden([first, *changes, snapshot, *responses, *published, exported], PLAINTEXT, ROTATED)
    assert_hidden(await database_rows(database_url), PLAINTEXT, ROTATED)


async def test_without_a_key_plaintext_is_refused(database_url: str) -> None:
    async with serving(database_url) as running:
        stub = running.stub
        await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="bot")))
        error = await failure(
            stub.CreateModelVersion(
                pb.CreateModelVersionRequest(version=secret_version("bot", "1"))
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(error) == "NO_SECRETS_KEY"
        assert "bot/versions/1" in (error.details() or "")
        assert_hidden([rich_status(error), error.details() or ""], PLAINTEXT)
        listed = await stub.ListModelVersions(pb.ListModelVersionsRequest(model="bot"))
        assert not listed.versions
        await asyncio.sleep(0.5)
        assert_hidden([event for _, event in running.events.published], PLAINTEXT)


async def test_an_encrypted_value_is_accepted_back_only_for_its_own_version(
    keyed: Running,
) -> None:
    stub = keyed.stub
    await stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="bot")))
    first = (
        await stub.CreateModelVersion(
            pb.CreateModelVersionRequest(version=secret_version("bot", "1"))
        )
    ).version
    echoed = (
        await stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=first, update_mask=field_mask_pb2.FieldMask(paths=["credential"])
            )
        )
    ).version
    assert echoed.credential == first.credential

    copied = version("bot", "2")
    copied.credential.CopyFrom(first.credential)
    error = await failure(stub.CreateModelVersion(pb.CreateModelVersionRequest(version=copied)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "UNDECRYPTABLE_CREDENTIAL"
    assert "version.credential.encrypted_value" in violations(error)

    unknown = version("bot", "3")
    unknown.credential.CopyFrom(first.credential)
    unknown.credential.encrypted_value.key_id = "retired"
    error = await failure(stub.CreateModelVersion(pb.CreateModelVersionRequest(version=unknown)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "UNKNOWN_SECRETS_KEY"
    assert "'retired' is not configured" in (error.details() or "")

    empty = version("bot", "4")
    empty.credential.plaintext_value = " "
    error = await failure(stub.CreateModelVersion(pb.CreateModelVersionRequest(version=empty)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "version.credential.plaintext_value" in violations(error)


async def test_import_encrypts_once_and_the_export_imports_back_unchanged(
    keyed: Running, env: dict[str, str]
) -> None:
    registry = keyed.runtime.registry
    entry = {
        "model": "bot",
        "version": "1",
        "provider": "simulated",
        "provider_model_id": "sim-bot",
        "credential": {"plaintext_value": PLAINTEXT},
    }
    document = yaml.safe_dump({"versions": [entry]})
    assert (await import_registry(registry, document, SYSTEM)).changed == 1
    assert (await import_registry(registry, document, SYSTEM)).changed == 0
    exported = await export_registry(registry)
    assert_hidden([exported], PLAINTEXT)
    assert (await import_registry(registry, exported, SYSTEM)).changed == 0
    stored = await registry.get_version("bot", "1")
    assert opened(env, stored) == PLAINTEXT

    entry["credential"] = {"plaintext_value": ROTATED}
    changed = await import_registry(registry, yaml.safe_dump({"versions": [entry]}), SYSTEM)
    assert changed.changed == 1
    assert opened(env, await registry.get_version("bot", "1")) == ROTATED


async def test_rotation_keeps_old_values_readable(database_url: str) -> None:
    old = ("old", new_key())
    async with serving(database_url, env=keys_env(old)) as running:
        await running.stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="bot")))
        before = (
            await running.stub.CreateModelVersion(
                pb.CreateModelVersionRequest(version=secret_version("bot", "1"))
            )
        ).version
    rotated = keys_env(("new", new_key()), old)
    async with serving(database_url, env=rotated) as running:
        stub = running.stub
        kept = (
            await stub.GetModelVersion(pb.GetModelVersionRequest(model="bot", version="1"))
        ).version
        assert kept.credential == before.credential
        assert kept.credential.encrypted_value.key_id == "old"
        assert opened(rotated, kept) == PLAINTEXT
        after = (
            await stub.CreateModelVersion(
                pb.CreateModelVersionRequest(version=secret_version("bot", "2", ROTATED))
            )
        ).version
        assert after.credential.encrypted_value.key_id == "new"
        assert opened(rotated, after) == ROTATED
        resealed = (
            await stub.UpdateModelVersion(
                pb.UpdateModelVersionRequest(
                    version=secret_version("bot", "1"),
                    update_mask=field_mask_pb2.FieldMask(paths=["credential"]),
                )
            )
        ).version
        assert resealed.credential.encrypted_value.key_id == "new"
        assert opened(rotated, resealed) == PLAINTEXT
