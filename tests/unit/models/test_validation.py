"""Field checks of registry resources."""

from __future__ import annotations

import pytest

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2 as pb
from services.models.validation import (
    Rules,
    check_alias,
    check_group,
    check_version,
    looks_like_secret,
)

RULES = Rules(frozenset({"openai", "simulated"}))


def _version(**fields: object) -> pb.ModelVersion:
    version = pb.ModelVersion(model="bot", provider="openai", provider_model_id="gpt-4o-mini")
    for name, value in fields.items():
        if isinstance(value, dict):
            getattr(version, name).update(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(version, name).CopyFrom(value)
        else:
            setattr(version, name, value)
    return version


def _fields(version: pb.ModelVersion) -> set[str]:
    return {v.field for v in check_version(version, "version.", RULES)}


def test_a_plain_version_is_valid() -> None:
    assert _fields(_version(credential=pb.CredentialRef(env_var="OPENAI_API_KEY"))) == set()


def test_unknown_provider_lists_the_known_ones() -> None:
    [violation] = check_version(_version(provider="azure"), "version.", RULES)
    assert violation.reason == "UNKNOWN_PROVIDER"
    assert "openai, simulated" in violation.description


def test_prices_limits_and_currency() -> None:
    pricing = common_pb2.Pricing(input_per_million_nanos=-1, output_per_million_nanos=5)
    assert _fields(_version(pricing=pricing, context_window=100, max_output_tokens=200)) == {
        "version.pricing.input_per_million_nanos",
        "version.pricing.currency_code",
        "version.max_output_tokens",
    }


def test_credentials_are_references_and_secrets_are_refused() -> None:
    secret_ref = pb.CredentialRef(secret_key_ref=pb.SecretKeyRef(name="openai"))
    assert _fields(_version(credential=secret_ref)) == {"version.credential.secret_key_ref.key"}
    assert _fields(_version(credential=pb.CredentialRef(env_var="1BAD"))) == {
        "version.credential.env_var"
    }
    leaky = _version(endpoint="https://u:p@host/v1", provider_options={"X-Api-Key": "k"})
    assert _fields(leaky) == {"version.endpoint", "version.provider_options[X-Api-Key]"}


def test_fine_tune_origin_needs_a_job() -> None:
    origin = pb.VersionOrigin(type=pb.VERSION_ORIGIN_TYPE_FINE_TUNE)
    assert _fields(_version(origin=origin)) == {"version.origin.fine_tune_job_id"}


def test_traffic_split_must_add_up_to_100_with_two_versions() -> None:
    def problems(split: pb.TrafficSplit) -> set[str]:
        alias = pb.Alias(model="bot", alias="production", version="1", traffic_split=split)
        return {v.field for v in check_alias(alias, "")}

    assert problems(pb.TrafficSplit(version="2", weight_percent=50)) == set()
    assert problems(pb.TrafficSplit(version="2", weight_percent=100)) == {
        "traffic_split.weight_percent"
    }
    assert problems(pb.TrafficSplit(weight_percent=10)) == {"traffic_split.version"}
    assert problems(pb.TrafficSplit(version="1", weight_percent=10)) == {"traffic_split.version"}


def test_group_deployments() -> None:
    group = pb.ModelGroup(
        name="chat",
        deployments=[
            pb.Deployment(id="a", model_ref="bot@production"),
            pb.Deployment(id="a", model_ref="bot@Prod", weight=-1),
        ],
        fallbacks=["bot/versions/1", "??"],
    )
    assert {v.field for v in check_group(group, "")} == {
        "deployments[1].id",
        "deployments[1].model_ref",
        "deployments[1].weight",
        "fallbacks[1]",
    }


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True),
        ("api-key", True),
        ("apiKey", True),
        ("access_token", True),
        ("client_secret", True),
        ("auth", True),
        ("aws_access_key_id", True),
        ("output_tokens", False),
        ("tokens_per_second", False),
        ("default_max_tokens", False),
        ("keep_alive", False),
        ("api_version", False),
    ],
)
def test_secret_like_option_names_are_whole_words(key: str, secret: bool) -> None:
    assert looks_like_secret(key) is secret
