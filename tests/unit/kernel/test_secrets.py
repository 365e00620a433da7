"""The secrets keyring: round trip, binding, wrong and unknown keys, rotation, configuration."""

from __future__ import annotations

import base64
import os

import pytest

from services.kernel.secrets import (
    DEFAULT_KEY_ID,
    KEY_VARIABLE,
    KEYS_VARIABLE,
    DecryptionFailed,
    KeyConfigError,
    Keyring,
    NoEncryptionKey,
    Sealed,
    UnknownKeyId,
    version_binding,
)

PLAINTEXT = "sk-live-7f3a9c0e1d2b"
BOUND = version_binding("support-bot", "1", "openai", "https://api.example.com/v1")


def new_key() -> str:
    """A fresh 256-bit key, base64 encoded as the variables hold it."""
    return base64.b64encode(os.urandom(32)).decode()


def keyring(**keys: str) -> Keyring:
    """A keyring of ``id=base64key`` pairs in order, read as the environment gives them."""
    listed = ",".join(f"{key_id}={key}" for key_id, key in keys.items())
    return Keyring.from_env({KEYS_VARIABLE: listed})


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    ring = keyring(k1=new_key())
    first = ring.encrypt(PLAINTEXT, BOUND)
    second = ring.encrypt(PLAINTEXT, BOUND)
    assert first.key_id == second.key_id == "k1"
    assert first.ciphertext != second.ciphertext
    assert PLAINTEXT.encode() not in first.ciphertext
    assert ring.decrypt(first, BOUND) == PLAINTEXT
    assert ring.decrypt(second, BOUND) == PLAINTEXT


def test_a_single_key_variable_has_the_default_id() -> None:
    ring = Keyring.from_env({KEY_VARIABLE: new_key()})
    assert ring.encryption_key_id == DEFAULT_KEY_ID
    assert ring.decrypt(ring.encrypt(PLAINTEXT, BOUND), BOUND) == PLAINTEXT


def test_url_safe_base64_without_padding_is_accepted() -> None:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    ring = Keyring.from_env({KEYS_VARIABLE: f"k1={key}"})
    assert ring.decrypt(ring.encrypt(PLAINTEXT, BOUND), BOUND) == PLAINTEXT


def test_the_wrong_key_under_the_same_id_fails_without_leaking() -> None:
    sealed = keyring(k1=new_key()).encrypt(PLAINTEXT, BOUND)
    with pytest.raises(DecryptionFailed) as caught:
        keyring(k1=new_key()).decrypt(sealed, BOUND)
    assert "k1" in str(caught.value)
    assert PLAINTEXT not in str(caught.value)


def test_an_unknown_key_id_is_named() -> None:
    sealed = keyring(k1=new_key()).encrypt(PLAINTEXT, BOUND)
    with pytest.raises(UnknownKeyId, match="'k1' is not configured") as caught:
        keyring(k2=new_key()).decrypt(sealed, BOUND)
    assert "k2" in str(caught.value)


def test_a_value_opens_only_for_its_binding_and_key_id() -> None:
    key = new_key()
    ring = keyring(k1=key)
    sealed = ring.encrypt(PLAINTEXT, BOUND)
    other_endpoint = version_binding("support-bot", "1", "openai", "https://evil.example")
    with pytest.raises(DecryptionFailed):
        ring.decrypt(sealed, other_endpoint)
    with pytest.raises(DecryptionFailed):
        ring.decrypt(sealed, version_binding("support-bot", "2", "openai", ""))
    relabelled = keyring(k1=key, k2=key)
    with pytest.raises(DecryptionFailed):
        relabelled.decrypt(Sealed("k2", sealed.ciphertext), BOUND)


def test_tampered_or_truncated_values_fail() -> None:
    ring = keyring(k1=new_key())
    sealed = ring.encrypt(PLAINTEXT, BOUND)
    flipped = bytearray(sealed.ciphertext)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        ring.decrypt(Sealed("k1", bytes(flipped)), BOUND)
    with pytest.raises(DecryptionFailed, match="truncated"):
        ring.decrypt(Sealed("k1", sealed.ciphertext[:10]), BOUND)


def test_rotation_encrypts_with_the_first_key_and_still_opens_old_values() -> None:
    old, new = new_key(), new_key()
    before = keyring(old=old).encrypt(PLAINTEXT, BOUND)
    rotated = keyring(new=new, old=old)
    assert rotated.encryption_key_id == "new"
    assert rotated.key_ids == ("new", "old")
    assert rotated.decrypt(before, BOUND) == PLAINTEXT
    after = rotated.encrypt("sk-rotated", BOUND)
    assert after.key_id == "new"
    assert keyring(new=new).decrypt(after, BOUND) == "sk-rotated"
    with pytest.raises(UnknownKeyId):
        keyring(new=new).decrypt(before, BOUND)


def test_without_keys_nothing_is_encrypted_or_decrypted() -> None:
    ring = Keyring.from_env({})
    assert ring.encryption_key_id is None
    with pytest.raises(NoEncryptionKey, match=KEYS_VARIABLE):
        ring.encrypt(PLAINTEXT, BOUND)
    with pytest.raises(UnknownKeyId, match="configured: none"):
        ring.decrypt(Sealed("k1", b"x" * 40), BOUND)


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("k1", "id=base64key"),
        ("k1=not base64!", "not valid base64"),
        (f"k1={base64.b64encode(b'short').decode()}", "must be 32 bytes, not 5"),
        ("bad id=" + base64.b64encode(bytes(32)).decode(), "must be 1 to 64"),
        (
            f"k1={base64.b64encode(bytes(32)).decode()},k1={base64.b64encode(bytes(32)).decode()}",
            "listed twice",
        ),
    ],
)
def test_malformed_configuration_is_refused_without_echoing_keys(listed: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message) as caught:
        Keyring.from_env({KEYS_VARIABLE: listed})
    assert "AAAAAAAA" not in str(caught.value)


def test_the_list_variable_wins_over_the_single_key() -> None:
    ring = Keyring.from_env({KEYS_VARIABLE: f"k9={new_key()}", KEY_VARIABLE: new_key()})
    assert ring.key_ids == ("k9",)


def test_binding_parts_cannot_run_into_each_other() -> None:
    assert version_binding("a", "b,c", "p", "") != version_binding("a,b", "c", "p", "")
