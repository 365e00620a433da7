"""Secret values encrypted at rest with AES-256-GCM under keys from the environment.

Keys are configured by one of two variables (the first one set wins):

``LLMGW_SECRETS_KEYS``
    ``id=base64key`` pairs separated by commas, e.g. ``k2=...,k1=...``. The
    first key encrypts; every listed key decrypts, so a key is rotated by
    putting a new one first and keeping the old one listed until nothing
    encrypted with it is left.
``LLMGW_SECRETS_KEY``
    One base64 key, with the id ``default``.

Each key is 32 bytes (standard or URL-safe base64, padding optional). A
:class:`Sealed` value is the id of the key plus ``nonce || ciphertext || tag``;
the key id and a caller's ``binding`` (what the secret belongs to) are
authenticated as associated data, so a sealed value decrypts only under the
same key id and for the same binding.

Errors form one tree, and no message ever holds a key or a secret::

    SecretsError
    ├── KeyConfigError    the variables are malformed
    ├── NoEncryptionKey   no key is configured
    ├── UnknownKeyId      the value names a key that is not configured
    └── DecryptionFailed  wrong key, tampered value or another binding
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS_VARIABLE = "LLMGW_SECRETS_KEYS"
KEY_VARIABLE = "LLMGW_SECRETS_KEY"
DEFAULT_KEY_ID = "default"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_PLAINTEXT_BYTES = 16 * 1024

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class SecretsError(Exception):
    """Base of the errors of this module; messages never hold key material or secrets."""


class KeyConfigError(SecretsError):
    """The key variables are malformed (bad id, bad base64, wrong length, duplicate id)."""


class NoEncryptionKey(SecretsError):
    """A value must be encrypted but no key is configured."""


class UnknownKeyId(SecretsError):
    """A sealed value names a key id that is not configured."""


class DecryptionFailed(SecretsError):
    """A sealed value does not authenticate: wrong key, tampering or another binding."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """An encrypted value: the id of its key and ``nonce || ciphertext || tag``."""

    key_id: str
    ciphertext: bytes


def version_binding(model: str, version: str, provider: str, endpoint: str) -> bytes:
    """What the credential of a model version is bound to.

    The registry seals a version's credential for this binding and the
    inference service opens it with the same, so a sealed credential copied
    to another version, provider or endpoint does not decrypt.
    """
    return json.dumps([model, version, provider, endpoint], separators=(",", ":")).encode()


class Keyring:
    """Named AES-256 keys; the first encrypts, all decrypt.

    An empty keyring is valid: it encrypts nothing (:class:`NoEncryptionKey`)
    and decrypts nothing (:class:`UnknownKeyId`).
    """

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """Keys as ``(id, 32 raw bytes)`` in order; raises :class:`KeyConfigError`."""
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID.match(key_id):
                raise KeyConfigError(
                    f"secrets key id {key_id!r} must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'"
                )
            if key_id in ciphers:
                raise KeyConfigError(f"secrets key id {key_id!r} is listed twice")
            if len(key) != KEY_BYTES:
                raise KeyConfigError(
                    f"secrets key {key_id!r} must be {KEY_BYTES} bytes, not {len(key)}"
                )
            ciphers[key_id] = AESGCM(key)
        self._ciphers = ciphers
        self._primary = keys[0][0] if keys else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Keyring:
        """The keyring the variables of ``env`` configure (module docstring)."""
        listed = env.get(KEYS_VARIABLE, "").strip()
        if listed:
            pairs: list[tuple[str, bytes]] = []
            for item in listed.split(","):
                key_id, sep, encoded = item.strip().partition("=")
                if not sep:
                    raise KeyConfigError(f"{KEYS_VARIABLE} entries must be id=base64key")
                pairs.append((key_id.strip(), _decode_key(key_id.strip(), encoded.strip())))
            return cls(pairs)
        single = env.get(KEY_VARIABLE, "").strip()
        if single:
            return cls([(DEFAULT_KEY_ID, _decode_key(DEFAULT_KEY_ID, single))])
        return cls([])

    @property
    def encryption_key_id(self) -> str | None:
        """Id of the key :meth:`encrypt` uses; None when no key is configured."""
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every configured key, encrypting key first."""
        return tuple(self._ciphers)

    def encrypt(self, plaintext: str, bound_to: bytes) -> Sealed:
        """Seal ``plaintext`` for ``bound_to`` with the first key (a fresh nonce each time)."""
        if self._primary is None:
            raise NoEncryptionKey(
                f"no secrets key is configured; set {KEYS_VARIABLE} or {KEY_VARIABLE}"
            )
        data = plaintext.encode()
        if len(data) > MAX_PLAINTEXT_BYTES:
            raise ValueError(f"a secret value must be at most {MAX_PLAINTEXT_BYTES} bytes")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary].encrypt(
            nonce, data, _associated(self._primary, bound_to)
        )
        return Sealed(self._primary, nonce + sealed)

    def decrypt(self, sealed: Sealed, bound_to: bytes) -> str:
        """The plaintext of ``sealed``, which must have been sealed for ``bound_to``."""
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            configured = ", ".join(self._ciphers) or "none"
            raise UnknownKeyId(
                f"secrets key {sealed.key_id!r} is not configured (configured: {configured})"
            )
        if len(sealed.ciphertext) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionFailed(f"value sealed with key {sealed.key_id!r} is truncated")
        nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
        try:
            data = cipher.decrypt(nonce, body, _associated(sealed.key_id, bound_to))
        except InvalidTag:
            raise DecryptionFailed(
                f"value sealed with key {sealed.key_id!r} does not decrypt: the key differs, "
                "the value was altered, or it belongs to something else"
            ) from None
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise DecryptionFailed(f"value sealed with key {sealed.key_id!r} is not text") from None


def _associated(key_id: str, bound_to: bytes) -> bytes:
    return key_id.encode() + b"\x00" + bound_to


def _decode_key(key_id: str, encoded: str) -> bytes:
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"secrets key {key_id!r} is not valid base64") from None
