"""JWT verification: each algorithm, every refusal, and key rotation through the JWKS."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.auth.scopes import Scope
from gateway.auth.tokens import JwksKeys, JwtSettings, JwtVerifier, _parse_jwks, jwks_fetcher
from services.kernel.errors import Unauthenticated
from tests.unit.gateway.auth.jwks import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    es256_key,
    hs256_key,
    rs256_key,
    token,
    write_jwks,
)


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"HS256": hs256_key(), "RS256": rs256_key(), "ES256": es256_key()}


def _verifier(jwks: Path, **overrides: Any) -> JwtVerifier:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_file": jwks,
        "min_refetch_seconds": 0,
    }
    values.update(overrides)
    return JwtVerifier(JwtSettings(**values))


async def _refusal(verifier: JwtVerifier, credential: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(credential)
    return caught.value.reason


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
async def test_each_algorithm_is_accepted_and_claims_become_grants(
    algorithm: str, keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    verifier = _verifier(write_jwks(tmp_path / "jwks.json", *keys.values()))
    grants = await verifier.verify(token(keys[algorithm], name="Alice"))
    assert grants.principal.actor_type == "user"
    assert grants.principal.actor_id == "alice"
    assert grants.principal.project_id == "support"
    assert grants.principal.display_name == "Alice"
    assert grants.key_id == ""
    assert grants.scopes == {Scope.INFERENCE, Scope.MODELS_READ}


async def test_claim_names_are_configurable_and_scopes_may_be_a_list(
    keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    verifier = _verifier(
        write_jwks(tmp_path / "jwks.json", keys["RS256"]),
        project_claim="tenant",
        scopes_claim="permissions",
        subject_claim="client_id",
        actor_type="service",
    )
    credential = token(
        keys["RS256"],
        tenant="billing",
        permissions=["API_KEY_SCOPE_ADMIN", "finetuning", "bogus", 7],
        client_id="batch-job",
    )
    grants = await verifier.verify(credential)
    assert grants.principal.actor_type == "service"
    assert (grants.principal.actor_id, grants.principal.project_id) == ("batch-job", "billing")
    assert grants.scopes == {Scope.ADMIN, Scope.FINETUNING}


async def test_every_bad_token_is_refused_with_its_reason(
    keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    rsa = keys["RS256"]
    verifier = _verifier(write_jwks(tmp_path / "jwks.json", *keys.values()), leeway_seconds=5)
    now = int(time.time())
    cases = {
        "TOKEN_EXPIRED": token(rsa, exp=now - 60),
        "TOKEN_NOT_YET_VALID": token(rsa, nbf=now + 600),
        "TOKEN_ISSUER_INVALID": token(rsa, iss="https://evil.test"),
        "TOKEN_AUDIENCE_INVALID": token(rsa, aud="another-service"),
        "TOKEN_KEY_UNKNOWN": token(rsa, kid="nobody"),
        "TOKEN_SIGNATURE_INVALID": token(rs256_key("rs-1")),
    }
    for reason, credential in cases.items():
        assert await _refusal(verifier, credential) == reason, reason
    for credential in (
        token(rsa, exp=None),
        token(rsa, sub=None),
        token(rsa, llmgw_project=12),
        "a.b.c",
        token(rsa)[:-10] + "." + "x",
        jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}, "", "none"),
    ):
        assert await _refusal(verifier, credential) == "TOKEN_INVALID", credential


async def test_tokens_within_the_leeway_are_accepted(
    keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    verifier = _verifier(write_jwks(tmp_path / "jwks.json", keys["ES256"]), leeway_seconds=30)
    now = int(time.time())
    await verifier.verify(token(keys["ES256"], exp=now - 10, nbf=now + 10, iat=now))


async def test_an_algorithm_that_does_not_fit_the_key_is_refused(
    keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    # The RSA public key used as an HMAC secret: the classic algorithm confusion attack.
    rsa = keys["RS256"]
    verifier = _verifier(write_jwks(tmp_path / "jwks.json", rsa))
    hmac_key = hs256_key(kid=rsa.kid)
    forged = SigningKey(rsa.kid, "HS256", hmac_key.private, rsa.jwk)
    assert await _refusal(verifier, token(forged)) == "TOKEN_INVALID"
    only_rsa = _verifier(write_jwks(tmp_path / "rsa.json", rsa), algorithms=("RS256",))
    assert await _refusal(only_rsa, token(keys["HS256"])) == "TOKEN_INVALID"


async def test_an_unknown_kid_refetches_the_jwks_so_rotated_keys_work(tmp_path: Path) -> None:
    old, new = rs256_key("2026-01"), es256_key("2026-02")
    jwks = write_jwks(tmp_path / "jwks.json", old)
    verifier = _verifier(jwks, min_refetch_seconds=0)
    await verifier.verify(token(old))
    assert await _refusal(verifier, token(new)) == "TOKEN_KEY_UNKNOWN"
    write_jwks(jwks, old, new)  # the issuer rotates: publishes the new key
    grants = await verifier.verify(token(new))
    assert grants.principal.actor_id == "alice"
    write_jwks(jwks, new)  # and retires the old one
    assert await _refusal(verifier, token(old, kid="2026-01-gone")) == "TOKEN_KEY_UNKNOWN"


async def test_refetches_for_unknown_kids_are_rate_limited(tmp_path: Path) -> None:
    key = hs256_key()
    now = [1000.0]
    keys = JwksKeys(
        jwks_fetcher(
            JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=write_jwks(tmp_path / "j", key))
        ),
        refresh_seconds=300,
        min_refetch_seconds=10,
        clock=lambda: now[0],
    )
    await keys.load()
    assert await keys.key("x0") is None
    assert keys.fetches == 1  # just loaded: no refetch
    now[0] += 11
    for kid in ("x1", "x2", "x3", "x4"):
        assert await keys.key(kid) is None
    assert keys.fetches == 2  # one refetch for all the unknown kids
    now[0] += 11
    assert await keys.key("x5") is None
    assert keys.fetches == 3
    now[0] += 300
    assert await keys.key(key.kid) is not None
    assert keys.fetches == 4  # the periodic refresh


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, list[bytes]]]:
    documents: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents[-1]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", documents
    server.shutdown()
    thread.join()


async def test_keys_come_from_a_jwks_url_too(
    jwks_server: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    url, documents = jwks_server
    first, second = es256_key("one"), rs256_key("two")
    documents.append(write_jwks(tmp_path / "a.json", first).read_bytes())
    verifier = JwtVerifier(
        JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, min_refetch_seconds=0)
    )
    await verifier.verify(token(first))
    documents.append(write_jwks(tmp_path / "b.json", first, second).read_bytes())
    grants = await asyncio.wait_for(verifier.verify(token(second)), 10)
    assert grants.principal.project_id == "support"


def test_settings_need_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JwtSettings(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match="exactly one"):
        JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=tmp_path, jwks_url="http://x")


def test_jwks_entries_that_are_not_keys_are_skipped() -> None:
    assert _parse_jwks(b'{"keys": ["abc", 7, null, {"kty": "nope"}]}') == {}
