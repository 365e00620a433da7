"""The API key format: ``llmgw_<lookup>_<secret>``, stored only as a SHA-256 hash.

``lookup`` is 8 random lower-case letters and digits; it finds the key's record
without revealing anything (it is part of the displayed ``prefix``,
``llmgw_<lookup>``). ``secret`` is 32 random bytes in URL-safe base64. The stored
hash is the SHA-256 of the whole key string: the key carries 256 bits of entropy,
so a slow password hash buys nothing. Hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

KEY_PREFIX = "llmgw_"
LOOKUP_LENGTH = 8
SECRET_BYTES = 32
_LOOKUP_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")
_SECRET_LENGTH = 43  # base64url of 32 bytes, unpadded
_DUMMY_HASH = hashlib.sha256(b"llmgw-no-such-key").hexdigest()


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly generated key: ``secret`` is shown once and never stored."""

    lookup: str
    secret: str
    secret_hash: str

    @property
    def prefix(self) -> str:
        """The displayable start of the key, e.g. ``llmgw_k3f9x2ab``."""
        return display_prefix(self.lookup)


def display_prefix(lookup: str) -> str:
    """The displayable prefix of the key with ``lookup``."""
    return f"{KEY_PREFIX}{lookup}"


def generate_api_key() -> NewApiKey:
    """A new random key with its lookup id and hash."""
    lookup = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(LOOKUP_LENGTH))
    key = f"{KEY_PREFIX}{lookup}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewApiKey(lookup=lookup, secret=key, secret_hash=hash_api_key(key))


def existing_api_key(key: str) -> NewApiKey | None:
    """``key`` (well-formed, made elsewhere) as a new key to store, or None when malformed."""
    lookup = lookup_of(key)
    if lookup is None:
        return None
    return NewApiKey(lookup=lookup, secret=key, secret_hash=hash_api_key(key))


def hash_api_key(key: str) -> str:
    """The stored form of ``key``: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    """Whether ``credential`` is meant as an API key (has the ``llmgw_`` prefix)."""
    return credential.startswith(KEY_PREFIX)


def lookup_of(key: str) -> str | None:
    """The lookup id of a well-formed key, or None when ``key`` is not one."""
    parts = key.split("_", 2)
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX:
        return None
    lookup, secret = parts[1], parts[2]
    if len(lookup) != LOOKUP_LENGTH or any(c not in _LOOKUP_ALPHABET for c in lookup):
        return None
    if len(secret) != _SECRET_LENGTH or any(c not in _SECRET_ALPHABET for c in secret):
        return None
    return lookup


def matches(key: str, secret_hash: str | None) -> bool:
    """Whether ``key`` hashes to ``secret_hash``, in constant time.

    With ``secret_hash`` None (no record) a dummy comparison of the same cost runs,
    so the answer takes as long for unknown keys as for wrong ones.
    """
    computed = hash_api_key(key)
    if secret_hash is None:
        hmac.compare_digest(computed, _DUMMY_HASH)
        return False
    return hmac.compare_digest(computed, secret_hash)
