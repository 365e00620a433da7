"""Who is calling: the credential of a call's metadata checked against keys and the JWKS.

A credential arrives as ``authorization: Bearer <credential>`` or as
``x-api-key: <credential>`` (the HTTP edge passes the HTTP header through as the
same metadata). A credential starting with ``llmgw_`` is an API key; one of three
dot-separated parts is a JWT (when JWTs are configured). Every refusal is an
:class:`~services.kernel.errors.Unauthenticated` with a stable reason; an unknown
key and a wrong secret look the same (``API_KEY_INVALID``), and a key's state
(revoked, expired) is told only to a caller who presented its full secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from gateway.auth import api_keys
from gateway.auth.grants import Grants, KeySource
from gateway.auth.tokens import JwtVerifier
from services.kernel.errors import Unauthenticated
from services.kernel.identity import API_KEY_ACTOR, Principal

AUTHORIZATION = "authorization"
API_KEY_HEADER = "x-api-key"
MAX_CREDENTIAL_LENGTH = 8192
_BEARER = "bearer"


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable()


def credential_of(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The credential a call presents; raises Unauthenticated when none or malformed."""
    authorization: str | bytes | None = None
    api_key: str | bytes | None = None
    for key, value in metadata:
        if key == AUTHORIZATION and authorization is None:
            authorization = value
        elif key == API_KEY_HEADER and api_key is None:
            api_key = value
    if authorization is not None:
        if not isinstance(authorization, str):
            raise _malformed()
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != _BEARER:
            raise _malformed("the authorization metadata must be 'Bearer <credential>'")
        credential = credential.strip()
    elif api_key is not None:
        if not isinstance(api_key, str):
            raise _malformed()
        credential = api_key.strip()
    else:
        raise Unauthenticated(
            "no credential: send 'authorization: Bearer <API key or token>'",
            reason="CREDENTIALS_MISSING",
        )
    if not credential or len(credential) > MAX_CREDENTIAL_LENGTH or not _printable(credential):
        raise _malformed()
    return credential


def _malformed(message: str = "the credential is malformed") -> Unauthenticated:
    return Unauthenticated(message, reason="CREDENTIALS_MALFORMED")


class Authenticator:
    """Turns a call's metadata into :class:`Grants` or refuses it."""

    def __init__(
        self,
        keys: KeySource,
        jwt: JwtVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Check API keys against ``keys`` and JWTs with ``jwt`` (None: JWTs refused)."""
        self._keys = keys
        self._jwt = jwt
        self._clock = clock

    async def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Grants:
        """The caller's grants; raises :class:`Unauthenticated` with the reason."""
        credential = credential_of(metadata)
        if api_keys.looks_like_api_key(credential):
            return self.check_api_key(credential)
        if self._jwt is not None and credential.count(".") == 2:
            return await self._jwt.verify(credential)
        raise Unauthenticated("the credential is not valid", reason="CREDENTIALS_INVALID")

    def check_api_key(self, key: str) -> Grants:
        """The grants of API key ``key``; raises Unauthenticated (``API_KEY_*`` reasons)."""
        lookup = api_keys.lookup_of(key)
        record = self._keys.key_by_lookup(lookup) if lookup is not None else None
        if not api_keys.matches(key, record.secret_hash if record is not None else None):
            raise Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
        assert record is not None
        if record.revoked:
            raise Unauthenticated("the API key was revoked", reason="API_KEY_REVOKED")
        if record.expire_at and self._clock() >= record.expire_at:
            raise Unauthenticated("the API key has expired", reason="API_KEY_EXPIRED")
        principal = Principal(
            actor_type=API_KEY_ACTOR,
            actor_id=record.id,
            project_id=record.project_id,
            display_name=record.display_name,
        )
        return Grants(
            principal=principal,
            key_id=record.id,
            scopes=record.scopes,
            allowed_models=record.allowed_models,
        )
