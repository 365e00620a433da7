"""Signing keys for tests: one per algorithm, their JWKS, and tokens signed with them."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.test"
AUDIENCE = "llmgw"


@dataclass(frozen=True)
class SigningKey:
    """A private key (or HMAC secret) with its ``kid``, algorithm and public JWK."""

    kid: str
    algorithm: str
    private: Any
    jwk: dict[str, Any]


def hs256_key(kid: str = "hs-1") -> SigningKey:
    secret = secrets.token_bytes(32)
    jwk = {
        "kty": "oct",
        "kid": kid,
        "alg": "HS256",
        "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode(),
    }
    return SigningKey(kid, "HS256", secret, jwk)


def rs256_key(kid: str = "rs-1") -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return SigningKey(kid, "RS256", private, jwk)


def es256_key(kid: str = "es-1") -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, alg="ES256", use="sig")
    return SigningKey(kid, "ES256", private, jwk)


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    """Write the public JWKS of ``keys`` to ``path``."""
    path.write_text(json.dumps({"keys": [key.jwk for key in keys]}), encoding="utf-8")
    return path


def token(key: SigningKey, **overrides: Any) -> str:
    """A token signed with ``key``: valid for an hour unless ``overrides`` say otherwise.

    An override of ``None`` removes the claim.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "llmgw_project": "support",
        "scope": "inference models.read",
    }
    headers = {"kid": key.kid}
    if "kid" in overrides:
        kid = overrides.pop("kid")
        headers = {} if kid is None else {"kid": kid}
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key.private, algorithm=key.algorithm, headers=headers)
