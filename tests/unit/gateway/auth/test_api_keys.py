"""The API key format: generation, parsing and constant-time checks."""

from __future__ import annotations

from gateway.auth import api_keys


def test_a_new_key_has_a_visible_prefix_and_is_stored_only_as_its_hash() -> None:
    new = api_keys.generate_api_key()
    assert new.secret.startswith(f"llmgw_{new.lookup}_")
    assert new.prefix == f"llmgw_{new.lookup}"
    assert api_keys.lookup_of(new.secret) == new.lookup
    assert new.secret not in new.secret_hash
    assert new.secret_hash == api_keys.hash_api_key(new.secret)
    assert api_keys.matches(new.secret, new.secret_hash)


def test_keys_are_random() -> None:
    keys = {api_keys.generate_api_key().secret for _ in range(200)}
    assert len(keys) == 200


def test_a_changed_or_unknown_key_does_not_match() -> None:
    new = api_keys.generate_api_key()
    tampered = new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B")
    assert not api_keys.matches(tampered, new.secret_hash)
    assert not api_keys.matches(new.secret, None)


def test_malformed_keys_have_no_lookup() -> None:
    good = api_keys.generate_api_key().secret
    for bad in (
        "",
        "llmgw_",
        "llmgw_short_x",
        good + "x",
        good.replace("llmgw_", "llmgx_"),
        good[:6] + good[6:14].upper() + good[14:],
        good[:-3] + "é!?",
    ):
        assert api_keys.lookup_of(bad) is None, bad
