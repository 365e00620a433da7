"""Models, versions and groups over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from llmgw.models.v1 import models_pb2 as pb
from tests.integration.models.conftest import ACTOR, Running, model_with_versions, version
from tests.integration.models.rpc_errors import failure

pytestmark = pytest.mark.integration


async def test_model_lifecycle(registry: Running) -> None:
    stub = registry.stub
    created = await stub.CreateModel(
        pb.CreateModelRequest(
            model=pb.Model(name="support-bot", display_name="Support", labels={"team": "cx"})
        ),
        metadata=ACTOR,
    )
    assert created.model.revision == 1
    assert created.model.create_time.seconds > 0

    got = await stub.GetModel(pb.GetModelRequest(name="support-bot"))
    assert got.model == created.model

    updated = await stub.UpdateModel(
        pb.UpdateModelRequest(
            model=pb.Model(name="support-bot", description="answers tickets", display_name="x"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=ACTOR,
    )
    assert updated.model.description == "answers tickets"
    assert updated.model.display_name == "Support"
    assert updated.model.labels == {"team": "cx"}
    assert updated.model.revision == 2

    await stub.DeleteModel(pb.DeleteModelRequest(name="support-bot"), metadata=ACTOR)
    error = await failure(stub.GetModel(pb.GetModelRequest(name="support-bot")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_versions_are_numbered_listed_newest_first_and_paged(registry: Running) -> None:
    stub = registry.stub
    created = await model_with_versions(stub, "bot", 3)
    assert [v.version for v in created] == ["1", "2", "3"]
    assert all(v.status == pb.VERSION_STATUS_REGISTERED for v in created)
    assert created[0].origin.type == pb.VERSION_ORIGIN_TYPE_MANUAL
    assert created[0].credential.env_var == "SIMULATED_API_KEY"

    first = await stub.ListModelVersions(pb.ListModelVersionsRequest(model="bot", page_size=2))
    assert [v.version for v in first.versions] == ["3", "2"]
    second = await stub.ListModelVersions(
        pb.ListModelVersionsRequest(model="bot", page_size=2, page_token=first.next_page_token)
    )
    assert [v.version for v in second.versions] == ["1"]
    assert second.next_page_token == ""

    named = await stub.CreateModelVersion(
        pb.CreateModelVersionRequest(version=version("bot", "2024-07-ft"))
    )
    assert named.version.version == "2024-07-ft"


async def test_version_status_moves_forward(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 1)
    mask = field_mask_pb2.FieldMask(paths=["status"])
    for status in (pb.VERSION_STATUS_DEPRECATED, pb.VERSION_STATUS_ARCHIVED):
        response = await stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=pb.ModelVersion(model="bot", version="1", status=status),
                update_mask=mask,
            )
        )
        assert response.version.status == status
    error = await failure(
        stub.UpdateModelVersion(
            pb.UpdateModelVersionRequest(
                version=pb.ModelVersion(model="bot", version="1", status=pb.VERSION_STATUS_ACTIVE),
                update_mask=mask,
            )
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = await stub.ListModelVersions(
        pb.ListModelVersionsRequest(model="bot", statuses=[pb.VERSION_STATUS_ARCHIVED])
    )
    assert [v.version for v in listed.versions] == ["1"]


async def test_groups_and_resolve(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "a", 1)
    await model_with_versions(stub, "b", 1)
    await stub.PromoteVersion(pb.PromoteVersionRequest(model="a", version="1", alias="production"))
    group = pb.ModelGroup(
        name="chat",
        deployments=[
            pb.Deployment(id="east", model_ref="a@production", weight=3),
            pb.Deployment(id="west", model_ref="b/versions/1", priority=1),
        ],
        routing_strategy=pb.ROUTING_STRATEGY_LEAST_BUSY,
        fallbacks=["b"],
        max_retries=2,
    )
    created = await stub.CreateModelGroup(pb.CreateModelGroupRequest(group=group))
    assert created.group.revision > 0

    resolved = await stub.Resolve(pb.ResolveRequest(ref="chat"))
    assert [(d.deployment_id, d.weight, d.priority) for d in resolved.deployments] == [
        ("east", 300, 0),
        ("west", 1, 1),
    ]
    assert resolved.routing_strategy == pb.ROUTING_STRATEGY_LEAST_BUSY
    assert list(resolved.fallbacks) == ["b"]
    assert resolved.max_retries == 2

    updated = await stub.UpdateModelGroup(
        pb.UpdateModelGroupRequest(
            group=pb.ModelGroup(name="chat", max_retries=0),
            update_mask=field_mask_pb2.FieldMask(paths=["max_retries"]),
        )
    )
    assert updated.group.max_retries == 0
    assert len(updated.group.deployments) == 2
    listed = await stub.ListModelGroups(pb.ListModelGroupsRequest())
    assert [g.name for g in listed.groups] == ["chat"]
    await stub.DeleteModelGroup(pb.DeleteModelGroupRequest(name="chat"))
    error = await failure(stub.GetModelGroup(pb.GetModelGroupRequest(name="chat")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
