"""Every way a call through the gateway is refused, with its status code and reason."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from grpc import aio

from gateway.auth.tokens import JwtSettings
from llmgw.admin.v1 import admin_pb2
from llmgw.common.v1 import common_pb2
from llmgw.events.v1 import events_pb2
from llmgw.inference.v1 import inference_pb2
from services.kernel.identity import principal_of
from tests.integration.gateway.auth.support import (
    SecureGateway,
    admin_key,
    bearer,
    completion,
    secure_gateway,
)
from tests.integration.models.rpc_errors import failure, reason
from tests.unit.gateway.auth.jwks import AUDIENCE, ISSUER, SigningKey, hs256_key, token, write_jwks
from tests.unit.gateway.conftest import eventually
from tests.unit.gateway.raw_upstream import INFERENCE, RawReplica

S = admin_pb2


async def _key(
    gateway: SecureGateway,
    admin: str,
    *scopes: admin_pb2.ApiKeyScope.ValueType,
    project: str = "default",
    models: tuple[str, ...] = (),
) -> admin_pb2.CreateApiKeyResponse:
    request = S.CreateApiKeyRequest(
        api_key=S.ApiKey(project_id=project, scopes=scopes, allowed_models=models)
    )
    reply: admin_pb2.CreateApiKeyResponse = await gateway.admin.CreateApiKey(
        request, metadata=bearer(admin), timeout=5
    )
    return reply


async def _refused(
    gateway: SecureGateway, metadata: tuple[tuple[str, str], ...], model: str = "chat"
) -> aio.AioRpcError:
    return await failure(gateway.complete()(completion(model), metadata=metadata, timeout=5))


@pytest.fixture
def signing_key() -> SigningKey:
    return hs256_key()


@pytest.fixture
async def gateway(
    sqlite_url: str, upstream: RawReplica, tmp_path: Path, signing_key: SigningKey
) -> AsyncIterator[SecureGateway]:
    jwt = JwtSettings(
        issuer=ISSUER, audience=AUDIENCE, jwks_file=write_jwks(tmp_path / "jwks.json", signing_key)
    )
    async with secure_gateway(
        sqlite_url, [upstream.address], tmp_path / "admin.key", jwt=jwt
    ) as running:
        yield running


async def test_a_valid_key_reaches_the_upstream_as_a_principal_without_its_secret(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    created = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    for metadata in (bearer(created.secret), (("x-api-key", created.secret),)):
        await gateway.complete()(completion(), metadata=metadata, timeout=5)
        seen = upstream.seen[-1].metadata
        assert seen["llmgw-actor-type"] == "api_key"
        assert seen["llmgw-actor-id"] == created.api_key.id
        assert seen["llmgw-project-id"] == "default"
        assert "authorization" not in seen and "x-api-key" not in seen


async def test_a_forged_principal_is_replaced_by_the_authenticated_one(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    created = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    forged = (*bearer(created.secret), ("llmgw-actor-id", "root"), ("llmgw-project-id", "x"))
    await gateway.complete()(completion(), metadata=forged, timeout=5)
    seen = upstream.seen[-1].metadata
    assert (seen["llmgw-actor-id"], seen["llmgw-project-id"]) == (created.api_key.id, "default")


async def test_missing_malformed_and_unknown_credentials_are_unauthenticated(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    unknown = admin[:15] + ("A" if admin[15] != "A" else "B") + admin[16:]
    cases = {
        (): "CREDENTIALS_MISSING",
        (("authorization", "Basic dXNlcjpwYXNz"),): "CREDENTIALS_MALFORMED",
        (("authorization", "Bearer"),): "CREDENTIALS_MALFORMED",
        bearer("not-a-key"): "CREDENTIALS_INVALID",
        bearer(unknown): "API_KEY_INVALID",
        bearer("llmgw_abcdefgh_" + "x" * 43): "API_KEY_INVALID",
    }
    for metadata, expected in cases.items():
        error = await _refused(gateway, metadata)
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED, metadata
        assert reason(error) == expected, metadata
        assert admin not in (error.details() or "")
    assert upstream.seen == []


async def test_a_revoked_key_and_an_expired_key_are_unauthenticated(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    revoked = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    await gateway.admin.RevokeApiKey(
        S.RevokeApiKeyRequest(api_key_id=revoked.api_key.id, reason="leaked"),
        metadata=bearer(admin),
    )
    expiring = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    soon = timestamp_pb2.Timestamp()
    soon.FromNanoseconds(time.time_ns() + 300_000_000)
    await gateway.admin.UpdateApiKey(
        S.UpdateApiKeyRequest(
            api_key=S.ApiKey(id=expiring.api_key.id, expire_time=soon),
            update_mask=field_mask_pb2.FieldMask(paths=["expire_time"]),
        ),
        metadata=bearer(admin),
    )
    await asyncio.sleep(max(soon.ToNanoseconds() - time.time_ns(), 0) / 1e9 + 0.05)
    for secret, expected in (
        (revoked.secret, "API_KEY_REVOKED"),
        (expiring.secret, "API_KEY_EXPIRED"),
    ):
        error = await _refused(gateway, bearer(secret))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert reason(error) == expected


async def test_a_key_without_the_scope_or_model_is_permission_denied(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    reader = await _key(gateway, admin, S.API_KEY_SCOPE_MODELS_READ)
    limited = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE, models=("chat", "sim-*"))
    await gateway.admin.CreateProject(
        S.CreateProjectRequest(project=S.Project(id="narrow", allowed_models=["sim-small"])),
        metadata=bearer(admin),
    )
    in_narrow = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE, project="narrow")

    error = await _refused(gateway, bearer(reader.secret))
    assert (error.code(), reason(error)) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")
    for secret, model in ((limited.secret, "gpt-4o"), (in_narrow.secret, "sim-large")):
        error = await _refused(gateway, bearer(secret), model)
        assert (error.code(), reason(error)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "MODEL_NOT_ALLOWED",
        )
    assert upstream.seen == []
    await gateway.complete()(completion("sim-large"), metadata=bearer(limited.secret), timeout=5)
    await gateway.complete()(completion("sim-small"), metadata=bearer(in_narrow.secret), timeout=5)
    assert len(upstream.seen) == 2


async def test_the_admin_api_needs_a_credential_with_the_admin_scope(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    user = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    error = await failure(gateway.admin.ListProjects(S.ListProjectsRequest(), timeout=5))
    assert (error.code(), reason(error)) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MISSING")
    error = await failure(
        gateway.admin.ListProjects(S.ListProjectsRequest(), metadata=bearer(user.secret))
    )
    assert (error.code(), reason(error)) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_MISSING")


async def test_jwts_are_accepted_and_refused_through_the_gateway(
    gateway: SecureGateway, upstream: RawReplica, signing_key: SigningKey
) -> None:
    await gateway.complete()(completion(), metadata=bearer(token(signing_key)), timeout=5)
    seen = upstream.seen[-1].metadata
    assert (seen["llmgw-actor-type"], seen["llmgw-actor-id"]) == ("user", "alice")
    now = int(time.time())
    for credential, code, expected in (
        (token(signing_key, exp=now - 600), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED"),
        (token(signing_key, aud="x"), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_AUDIENCE_INVALID"),
        (token(signing_key, kid="k9"), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_KEY_UNKNOWN"),
        (
            token(signing_key, scope="models.read"),
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPE_MISSING",
        ),
    ):
        error = await _refused(gateway, bearer(credential))
        assert (error.code(), reason(error)) == (code, expected)


async def test_every_refusal_is_an_audit_event_and_admin_writes_are_too(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    await _refused(gateway, ())
    created = await _key(gateway, admin, S.API_KEY_SCOPE_MODELS_READ)
    await _refused(gateway, bearer(created.secret))
    await failure(gateway.admin.GetProject(S.GetProjectRequest(project_id="x"), timeout=5))
    await gateway.security.audit.aclose()
    entries = [
        event.entry
        for topic, event in gateway.events.published
        if topic == "llmgw.audit.v1" and isinstance(event, events_pb2.AuditRecorded)
    ]
    actions = [(e.action, e.status.code) for e in entries]
    # the bootstrap key, made at start, is no call and not audited
    assert actions == [
        ("gateway.calls.authenticate", grpc.StatusCode.UNAUTHENTICATED.value[0]),
        ("admin.api_keys.create", 0),
        ("gateway.calls.authorize", grpc.StatusCode.PERMISSION_DENIED.value[0]),
        ("gateway.calls.authenticate", grpc.StatusCode.UNAUTHENTICATED.value[0]),
    ]
    create = entries[1]
    assert create.resource == f"api_keys/{created.api_key.id}"
    assert create.actor.type == common_pb2.ACTOR_TYPE_API_KEY
    assert created.secret not in str(entries)
    assert entries[2].actor.id == created.api_key.id
    assert entries[0].client_address


async def test_a_revocation_is_audited_with_its_reason(
    gateway: SecureGateway, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    created = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    await gateway.admin.RevokeApiKey(
        S.RevokeApiKeyRequest(api_key_id=created.api_key.id, reason="leaked in a log"),
        metadata=bearer(admin),
    )
    await gateway.security.audit.aclose()
    revoke = next(
        event.entry
        for _, event in gateway.events.published
        if isinstance(event, events_pb2.AuditRecorded)
        and event.entry.action == "admin.api_keys.revoke"
    )
    assert revoke.resource == f"api_keys/{created.api_key.id}"
    assert revoke.details["reason"] == "leaked in a log"


def _odd_metadata(seed: int, count: int) -> list[tuple[tuple[str, str | bytes], ...]]:
    """``count`` sets of malformed credential metadata, the same for a ``seed``."""
    rng = random.Random(seed)
    printable = "".join(chr(c) for c in range(0x20, 0x7F))  # what gRPC metadata may carry
    pieces = ["Bearer ", "bearer ", "Basic ", "llmgw_", "_", ".", "eyJ", "=", " ", "%00"]

    def text() -> str:
        parts = [
            rng.choice(pieces) if rng.random() < 0.5 else rng.choice(printable)
            for _ in range(rng.randint(0, 30))
        ]
        return "".join(parts)

    sets: list[tuple[tuple[str, str | bytes], ...]] = []
    for _ in range(count):
        pairs: list[tuple[str, str | bytes]] = []
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(["authorization", "x-api-key", "llmgw-actor-id", "authorization-bin"])
            if key.endswith("-bin"):
                pairs.append((key, rng.randbytes(rng.randint(0, 40))))
            else:
                pairs.append((key, text().strip() or "x"))
        sets.append(tuple(pairs))
    return sets


async def test_malformed_metadata_through_the_gateway_is_never_internal(
    gateway: SecureGateway, upstream: RawReplica
) -> None:
    for metadata in _odd_metadata(seed=7, count=150):
        try:
            await gateway.complete()(completion(), metadata=metadata, timeout=5)
        except aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED, (metadata, error)
            assert reason(error) in {
                "CREDENTIALS_MISSING",
                "CREDENTIALS_MALFORMED",
                "CREDENTIALS_INVALID",
                "API_KEY_INVALID",
                "TOKEN_INVALID",
                "TOKEN_KEY_UNKNOWN",
            }
        else:
            raise AssertionError(f"accepted {metadata}")
    assert upstream.seen == []


def _chat_start(model: str, request_id: str) -> bytes:
    return inference_pb2.ChatRequest(
        start=inference_pb2.CompletionRequest(model=model, request_id=request_id)
    ).SerializeToString()


async def test_a_later_chat_request_naming_a_forbidden_model_ends_the_stream(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    limited = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE, models=("chat",))
    chat: aio.StreamStreamMultiCallable[bytes, bytes] = gateway.channel.stream_stream(
        f"/{INFERENCE}/Chat"
    )
    stream = chat(metadata=bearer(limited.secret), timeout=5)
    await stream.write(_chat_start("chat", "r1"))
    echoed = await stream.read()
    assert isinstance(echoed, bytes) and echoed.endswith(_chat_start("chat", "r1"))
    cancel = inference_pb2.ChatRequest(cancel=inference_pb2.ChatCancel(request_id="r1"))
    await stream.write(cancel.SerializeToString())  # names no model: passes
    echoed = await stream.read()
    assert isinstance(echoed, bytes) and echoed.endswith(cancel.SerializeToString())
    await stream.write(_chat_start("gpt-4o", "r2"))
    error = await failure(stream.read())
    assert (error.code(), reason(error)) == (grpc.StatusCode.PERMISSION_DENIED, "MODEL_NOT_ALLOWED")
    await eventually(lambda: upstream.in_progress == 0)  # the upstream call ended too
    refusals = [
        event.entry
        for _, event in gateway.events.published
        if isinstance(event, events_pb2.AuditRecorded)
        and event.entry.action == "gateway.calls.authorize"
    ]
    assert refusals and refusals[-1].resource == f"/{INFERENCE}/Chat"


async def test_a_key_named_beyond_ascii_reaches_the_upstream_with_its_name(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    created = await gateway.admin.CreateApiKey(
        S.CreateApiKeyRequest(
            api_key=S.ApiKey(
                project_id="default", display_name="Clé prod", scopes=[S.API_KEY_SCOPE_INFERENCE]
            )
        ),
        metadata=bearer(admin),
        timeout=5,
    )
    await gateway.complete()(completion(), metadata=bearer(created.secret), timeout=5)
    assert principal_of(upstream.seen[-1].metadata.items()).display_name == "Clé prod"


async def test_fallback_models_must_be_allowed_too(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    limited = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE, models=("chat", "sim-*"))

    def asking(*fallbacks: str) -> bytes:
        return inference_pb2.CompleteRequest(
            completion=inference_pb2.CompletionRequest(
                model="chat", options=inference_pb2.RequestOptions(fallback_models=fallbacks)
            )
        ).SerializeToString()

    error = await failure(
        gateway.complete()(asking("sim-large", "gpt-4o"), metadata=bearer(limited.secret))
    )
    assert (error.code(), reason(error)) == (grpc.StatusCode.PERMISSION_DENIED, "MODEL_NOT_ALLOWED")
    assert upstream.seen == []
    await gateway.complete()(asking("sim-large"), metadata=bearer(limited.secret), timeout=5)
    assert len(upstream.seen) == 1


async def test_a_key_revoked_while_its_chat_stream_is_open_ends_the_stream(
    gateway: SecureGateway, upstream: RawReplica, tmp_path: Path
) -> None:
    admin = admin_key(tmp_path / "admin.key")
    key = await _key(gateway, admin, S.API_KEY_SCOPE_INFERENCE)
    chat: aio.StreamStreamMultiCallable[bytes, bytes] = gateway.channel.stream_stream(
        f"/{INFERENCE}/Chat"
    )
    stream = chat(metadata=bearer(key.secret), timeout=10)
    await stream.write(_chat_start("chat", "r1"))
    assert isinstance(await stream.read(), bytes)
    await gateway.admin.RevokeApiKey(
        S.RevokeApiKeyRequest(api_key_id=key.api_key.id), metadata=bearer(admin), timeout=5
    )

    async def revoked_everywhere() -> bool:
        try:
            await gateway.complete()(completion(), metadata=bearer(key.secret), timeout=5)
        except aio.AioRpcError:
            return True
        return False

    deadline = time.monotonic() + 5
    while not await revoked_everywhere():
        assert time.monotonic() < deadline, "the revocation never reached the gateway"
        await asyncio.sleep(0.05)
    await stream.write(_chat_start("chat", "r2"))
    error = await failure(stream.read())
    assert (error.code(), reason(error)) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_REVOKED")
