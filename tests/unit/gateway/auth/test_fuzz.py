"""Malformed credentials and metadata never crash authentication or yield INTERNAL."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from gateway.auth import api_keys
from gateway.auth.context import SecurityContext
from gateway.auth.grants import KeyRecord, ProjectRecord
from gateway.auth.scopes import ALL_SCOPES
from gateway.auth.tokens import JwtSettings, JwtVerifier
from gateway.filters.authn import AuthnConfig, AuthnFilter
from gateway.filters.base import Call, CallShape, FilterContext
from tests.unit.gateway.auth.jwks import AUDIENCE, ISSUER, SigningKey, hs256_key, token, write_jwks

KEY = api_keys.generate_api_key()


class OneKey:
    """A key source holding :data:`KEY`."""

    record = KeyRecord(
        id="key_1",
        lookup=KEY.lookup,
        secret_hash=KEY.secret_hash,
        project_id="p",
        display_name="fuzz",
        scopes=ALL_SCOPES,
        allowed_models=(),
    )

    def key_by_lookup(self, lookup: str) -> KeyRecord | None:
        return self.record if lookup == KEY.lookup else None

    def project(self, project_id: str) -> ProjectRecord | None:
        return None


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return hs256_key()


@pytest.fixture(scope="module")
def jwks(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Path:
    return write_jwks(tmp_path_factory.mktemp("jwks") / "jwks.json", signing_key)


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_text = st.text(max_size=80)
_claim_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _text, st.lists(_text)
)
_claims = st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "scope", "llmgw_project", "name"]),
    _claim_values,
)
_headers = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "crit", "jku"]),
    st.one_of(_claim_values, st.sampled_from(["HS256", "RS256", "ES256", "none", "hs-1"])),
)


@st.composite
def _forged_jwt(draw: st.DrawFn) -> str:
    header = draw(_headers)
    claims = draw(_claims)
    try:
        head = json.dumps(header).encode()
        body = json.dumps(claims).encode()
    except ValueError:
        head, body = b"{", b"}"
    signature = draw(st.binary(max_size=64))
    return f"{_segment(head)}.{_segment(body)}.{_segment(signature)}"


@st.composite
def _mutated_key(draw: st.DrawFn) -> str:
    secret = KEY.secret
    index = draw(st.integers(0, len(secret) - 1))
    replacement = draw(st.text(max_size=3))
    return secret[:index] + replacement + secret[index + 1 :]


_credentials = st.one_of(
    _text,
    st.binary(max_size=80),
    _text.map(lambda t: f"Bearer {t}"),
    _text.map(lambda t: f"bearer llmgw_{t}"),
    _mutated_key().map(lambda k: f"Bearer {k}"),
    _mutated_key(),
    _forged_jwt().map(lambda t: f"Bearer {t}"),
    st.sampled_from(
        ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c", "Bearer ..", "x" * 9000]
    ),
)
_metadata = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["authorization", "x-api-key", "user-agent", "llmgw-actor-id"]), _text
        ),
        _credentials,
    ),
    max_size=4,
)


def _call(metadata: list[tuple[str, str | bytes]]) -> Call:
    return Call(
        method="/llmgw.inference.v1.InferenceService/Complete",
        shape=CallShape.UNARY,
        metadata=tuple(metadata),
        peer="ipv4:127.0.0.1:1",
        started=time.perf_counter(),
        upstream_metadata=tuple(metadata),
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(metadata=_metadata)
def test_malformed_credentials_are_unauthenticated_never_an_error(
    metadata: list[tuple[str, str | bytes]], jwks: Path
) -> None:
    verifier = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks))
    authn = AuthnFilter(
        AuthnConfig(),
        FilterContext(CollectorRegistry(), security=SecurityContext(keys=OneKey(), jwt=verifier)),
    )
    call = _call(metadata)
    stop = asyncio.run(authn.on_request(call))
    if stop is None:
        assert call.principal.actor_id  # accepted only with a real credential
    else:
        assert stop.code is grpc.StatusCode.UNAUTHENTICATED
        assert KEY.secret not in stop.status.message


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(claims=_claims)
def test_validly_signed_tokens_with_odd_claims_are_accepted_or_unauthenticated(
    claims: dict[str, object], jwks: Path, signing_key: SigningKey
) -> None:
    verifier = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks))
    authn = AuthnFilter(
        AuthnConfig(),
        FilterContext(CollectorRegistry(), security=SecurityContext(keys=OneKey(), jwt=verifier)),
    )
    try:
        credential = token(signing_key, **claims)
    except (TypeError, ValueError):
        return  # claims PyJWT itself cannot encode
    call = _call([("authorization", f"Bearer {credential}")])
    stop = asyncio.run(authn.on_request(call))
    assert stop is None or stop.code is grpc.StatusCode.UNAUTHENTICATED
