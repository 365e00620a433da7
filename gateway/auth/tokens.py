"""JWT bearer tokens: HS256, RS256 and ES256, keys from a JWKS file or URL.

A token is accepted when its ``alg`` is allowed, its ``kid`` names a key of the
configured JWKS whose type fits that algorithm (an HMAC key never verifies an
RSA-signed token and vice versa), its signature is valid, and its ``iss``,
``aud``, ``exp`` and ``nbf`` hold (with :attr:`JwtSettings.leeway_seconds`).

Keys are cached: the set is re-read after ``refresh_seconds``, and at once when a
token names an unknown ``kid`` (key rotation), but no more often than every
``min_refetch_seconds``, so tokens with made-up ``kid`` values cannot make the
gateway hammer the key server.

The claims become the caller's :class:`~gateway.auth.grants.Grants`: the subject,
a project (``project_claim``) and scopes (``scopes_claim``: a space-separated
string or a list of scope names, see :class:`~gateway.auth.scopes.Scope`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from pydantic import Field, model_validator

from gateway.auth.grants import Grants
from gateway.auth.scopes import Scope
from services.kernel.config import Section
from services.kernel.errors import Unauthenticated
from services.kernel.identity import Principal

_log = logging.getLogger(__name__)

Algorithm = Literal["HS256", "RS256", "ES256"]
SUPPORTED_ALGORITHMS: tuple[Algorithm, ...] = ("HS256", "RS256", "ES256")


class JwtSettings(Section):
    """How JWTs are verified and mapped to a caller; one of ``jwks_file``/``jwks_url``."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: Path | None = None
    jwks_url: str | None = None
    algorithms: tuple[Algorithm, ...] = SUPPORTED_ALGORITHMS
    leeway_seconds: float = Field(default=30.0, ge=0)
    subject_claim: str = "sub"
    project_claim: str = "llmgw_project"
    scopes_claim: str = "scope"
    name_claim: str = "name"
    actor_type: Literal["user", "service"] = "user"
    refresh_seconds: float = Field(default=300.0, gt=0)
    min_refetch_seconds: float = Field(default=10.0, ge=0)
    fetch_timeout_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> JwtSettings:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of jwks_file and jwks_url")
        if not self.algorithms:
            raise ValueError("algorithms must not be empty")
        return self


JwksFetch = Callable[[], Awaitable[bytes]]


def jwks_fetcher(settings: JwtSettings) -> JwksFetch:
    """Reads the JWKS document of ``settings`` (file in a thread, or URL over HTTP)."""
    if settings.jwks_file is not None:
        path = settings.jwks_file

        async def read_file() -> bytes:
            return await asyncio.to_thread(path.read_bytes)

        return read_file
    url = settings.jwks_url or ""

    async def read_url() -> bytes:
        async with httpx.AsyncClient(timeout=settings.fetch_timeout_seconds) as client:
            response = await client.get(url)
            response.raise_for_status()
            return response.content

    return read_url


class JwksKeys:
    """The verification keys of one JWKS, cached by ``kid`` (see the module docstring)."""

    def __init__(
        self,
        fetch: JwksFetch,
        refresh_seconds: float,
        min_refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Fetch the set with ``fetch`` on first use."""
        self._fetch = fetch
        self._refresh_seconds = refresh_seconds
        self._min_refetch_seconds = min_refetch_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def load(self) -> None:
        """Fetch the set now (at start: fails loudly when it cannot be read)."""
        async with self._lock:
            self._keys = _parse_jwks(await self._fetch())
            self._fetched_at = self._clock()
            self.fetches += 1

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key called ``kid`` (the only key when ``kid`` is None), or None."""
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._refresh_seconds:
            await self._refetch(self._refresh_seconds)
        found = self._find(kid)
        if found is None:
            await self._refetch(self._min_refetch_seconds)
            found = self._find(kid)
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refetch(self, min_age: float) -> None:
        async with self._lock:
            fetched_at = self._fetched_at
            if fetched_at is not None and self._clock() - fetched_at < min_age:
                return
            self._fetched_at = self._clock()
            self.fetches += 1
            try:
                self._keys = _parse_jwks(await self._fetch())
            except (OSError, httpx.HTTPError, ValueError) as exc:
                _log.warning("cannot read the JWKS; keeping the keys known so far: %r", exc)


def _parse_jwks(document: bytes) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS document by ``kid`` (keys without one get their index)."""
    data = json.loads(document)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for index, entry in enumerate(data["keys"]):
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError) as exc:
            _log.warning("skipping JWKS key %d: %r", index, exc)
            continue
        keys[key.key_id or f"#{index}"] = key
    return keys


_REASONS: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "TOKEN_EXPIRED", "the token has expired"),
    (jwt.ImmatureSignatureError, "TOKEN_NOT_YET_VALID", "the token is not valid yet"),
    (jwt.InvalidIssuerError, "TOKEN_ISSUER_INVALID", "the token's issuer is not accepted"),
    (jwt.InvalidAudienceError, "TOKEN_AUDIENCE_INVALID", "the token's audience is not accepted"),
    (jwt.InvalidSignatureError, "TOKEN_SIGNATURE_INVALID", "the token's signature is not valid"),
)


def _invalid(message: str = "the token is not valid") -> Unauthenticated:
    return Unauthenticated(message, reason="TOKEN_INVALID")


class JwtVerifier:
    """Verifies bearer JWTs and maps their claims to grants."""

    def __init__(self, settings: JwtSettings, keys: JwksKeys | None = None) -> None:
        """Verify with ``keys`` (default: the JWKS named by ``settings``)."""
        self._settings = settings
        self.keys = keys or JwksKeys(
            jwks_fetcher(settings), settings.refresh_seconds, settings.min_refetch_seconds
        )

    async def verify(self, token: str) -> Grants:
        """The grants of ``token``; raises :class:`Unauthenticated` with a ``TOKEN_*`` reason."""
        settings = self._settings
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise _invalid() from exc
        algorithm = header.get("alg")
        if algorithm not in settings.algorithms:
            raise _invalid("the token's algorithm is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid()
        key = await self.keys.key(kid)
        if key is None:
            raise Unauthenticated(
                "the token's signing key is not known", reason="TOKEN_KEY_UNKNOWN"
            )
        if key.algorithm_name != algorithm:
            raise _invalid("the token's algorithm does not fit its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud", settings.subject_claim]},
            )
        except jwt.PyJWTError as exc:
            for kind, reason, message in _REASONS:
                if isinstance(exc, kind):
                    raise Unauthenticated(message, reason=reason) from exc
            raise _invalid() from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise _invalid() from exc
        return self._grants(claims)

    def _grants(self, claims: Mapping[str, Any]) -> Grants:
        settings = self._settings
        subject = claims.get(settings.subject_claim)
        project = claims.get(settings.project_claim, "")
        name = claims.get(settings.name_claim, "")
        if not isinstance(subject, str) or not subject or not isinstance(project, str):
            raise _invalid("the token's subject or project claim is not a string")
        principal = Principal(
            actor_type=settings.actor_type,
            actor_id=subject,
            project_id=project,
            display_name=name if isinstance(name, str) else "",
        )
        return Grants(
            principal=principal, key_id="", scopes=_scopes(claims.get(settings.scopes_claim))
        )


def _scopes(claim: object) -> frozenset[Scope]:
    if isinstance(claim, str):
        names: list[object] = list(claim.split())
    elif isinstance(claim, list):
        names = claim
    else:
        return frozenset()
    return frozenset(
        scope for name in names if isinstance(name, str) and (scope := Scope.of_claim(name))
    )
