"""The clear errors of the registry: code, stable reason and the offending field."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2 as pb
from tests.integration.models.conftest import Running, model_with_versions, version
from tests.integration.models.rpc_errors import failure, reason, violations

pytestmark = pytest.mark.integration


async def test_unknown_provider(registry: Running) -> None:
    await model_with_versions(registry.stub, "bot", 0)
    error = await failure(
        registry.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(version=version("bot", provider="openia"))
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "UNKNOWN_PROVIDER"
    assert "unknown provider" in violations(error)["version.provider"]


async def test_negative_prices(registry: Running) -> None:
    await model_with_versions(registry.stub, "bot", 0)
    pricing = common_pb2.Pricing(
        currency_code="USD", input_per_million_nanos=-1, output_per_million_nanos=-5
    )
    error = await failure(
        registry.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(version=version("bot", pricing=pricing))
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "NEGATIVE_PRICE"
    assert set(violations(error)) == {
        "version.pricing.input_per_million_nanos",
        "version.pricing.output_per_million_nanos",
    }


async def test_alias_to_archived_version(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 1)
    await stub.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            version=pb.ModelVersion(model="bot", version="1", status=pb.VERSION_STATUS_ARCHIVED),
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        )
    )
    for call in (
        stub.CreateAlias(
            pb.CreateAliasRequest(alias=pb.Alias(model="bot", alias="production", version="1"))
        ),
        stub.PromoteVersion(pb.PromoteVersionRequest(model="bot", version="1", alias="production")),
    ):
        error = await failure(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(error) == "VERSION_ARCHIVED"


async def test_archiving_a_version_an_alias_points_to(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 2)
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="1", alias="production")
    )
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(
            model="bot", version="2", alias="production", canary_weight_percent=5
        )
    )
    for target in ("1", "2"):
        error = await failure(
            stub.UpdateModelVersion(
                pb.UpdateModelVersionRequest(
                    version=pb.ModelVersion(
                        model="bot", version=target, status=pb.VERSION_STATUS_ARCHIVED
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=["status"]),
                )
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(error) == "VERSION_IN_USE"
        assert "bot@production" in (error.details() or "")
    error = await failure(stub.DeleteModel(pb.DeleteModelRequest(name="bot")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "MODEL_IN_USE"


async def test_duplicate_version(registry: Running) -> None:
    await model_with_versions(registry.stub, "bot", 1)
    error = await failure(
        registry.stub.CreateModelVersion(pb.CreateModelVersionRequest(version=version("bot", "1")))
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(error) == "DUPLICATE_VERSION"


async def test_traffic_split_that_does_not_add_up(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 2)
    bad_splits = [
        pb.TrafficSplit(version="2", weight_percent=100),
        pb.TrafficSplit(version="2", weight_percent=0),
        pb.TrafficSplit(version="1", weight_percent=20),
    ]
    for split in bad_splits:
        error = await failure(
            stub.CreateAlias(
                pb.CreateAliasRequest(
                    alias=pb.Alias(
                        model="bot", alias="production", version="1", traffic_split=split
                    )
                )
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason(error) == "INVALID_TRAFFIC_SPLIT"
        assert any(field.startswith("alias.traffic_split") for field in violations(error))
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="1", alias="production")
    )
    error = await failure(
        stub.PromoteVersion(
            pb.PromoteVersionRequest(
                model="bot", version="2", alias="production", canary_weight_percent=150
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(error) == "INVALID_TRAFFIC_SPLIT"


async def test_not_found_and_bad_names(registry: Running) -> None:
    stub = registry.stub
    error = await failure(
        stub.CreateModelVersion(pb.CreateModelVersionRequest(version=version("ghost")))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await failure(stub.CreateModel(pb.CreateModelRequest(model=pb.Model(name="Bad Name"))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model.name" in violations(error)
    error = await failure(stub.Resolve(pb.ResolveRequest(ref="ghost@production")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await failure(stub.Resolve(pb.ResolveRequest(ref="not a ref")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_secrets_are_refused_and_never_echoed(registry: Running) -> None:
    await model_with_versions(registry.stub, "bot", 0)
    secret = "sk-live-abcdef0123456789"
    error = await failure(
        registry.stub.CreateModelVersion(
            pb.CreateModelVersionRequest(
                version=version(
                    "bot",
                    endpoint=f"https://user:{secret}@api.example.com/v1",
                    provider_options={"api_key": secret},
                )
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"version.endpoint", "version.provider_options[api_key]"}
    assert secret not in str(error.details())
    assert secret not in str(error.trailing_metadata())
