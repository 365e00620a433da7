"""The identity metadata the gateway sets and the services read."""

from __future__ import annotations

from gateway.metadata import upstream_request_metadata
from services.kernel.identity import Principal, principal_of


def test_round_trip_through_metadata() -> None:
    principal = Principal("api_key", "key-9", "proj-2", "CI bot")
    assert principal_of(principal.to_metadata()) == principal
    assert principal.api_key_id == "key-9"
    assert Principal("user", "alice").api_key_id == ""


def test_absent_or_binary_values_give_an_anonymous_principal() -> None:
    assert principal_of(None) == Principal()
    assert principal_of((("llmgw-actor-id", b"bytes"), ("other", "x"))) == Principal()


def test_the_gateway_drops_identity_a_client_sends() -> None:
    forged = Principal("api_key", "someone-else", "their-project").to_metadata()
    forwarded = upstream_request_metadata((*forged, ("x-custom", "kept")), "req-1")
    assert principal_of(forwarded) == Principal()
    assert ("x-custom", "kept") in forwarded


def test_names_beyond_printable_ascii_travel_percent_encoded_and_come_back_exact() -> None:
    principal = Principal("user", "josé@example.com", "proj-ü", "José García 100%\n")
    metadata = principal.to_metadata()
    for _, value in metadata:
        assert all(0x20 <= ord(c) < 0x7F for c in value)
    assert principal_of(metadata) == principal
