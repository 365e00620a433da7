"""Promotion, canary splits, rollback and alias history over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from llmgw.common.v1 import common_pb2
from llmgw.models.v1 import models_pb2 as pb
from tests.integration.models.conftest import ACTOR, Running, model_with_versions
from tests.integration.models.rpc_errors import failure, reason

pytestmark = pytest.mark.integration


def _targets(response: pb.ResolveResponse) -> list[tuple[str, int]]:
    return [(d.version.version, d.weight) for d in response.deployments]


async def test_promote_canary_full_and_rollback(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "support-bot", 2)

    first = await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="support-bot", version="1", alias="production"),
        metadata=ACTOR,
    )
    assert first.alias.version == "1"
    assert first.history_entry.sequence == 1
    assert first.history_entry.change_type == pb.ALIAS_CHANGE_TYPE_PROMOTED
    assert first.history_entry.actor.id == "alice"
    assert first.history_entry.actor.type == common_pb2.ACTOR_TYPE_USER
    activated = await stub.GetModelVersion(
        pb.GetModelVersionRequest(model="support-bot", version="1")
    )
    assert activated.version.status == pb.VERSION_STATUS_ACTIVE

    canary = await stub.PromoteVersion(
        pb.PromoteVersionRequest(
            model="support-bot", version="2", alias="production", canary_weight_percent=10
        )
    )
    assert canary.alias.version == "1"
    assert canary.alias.traffic_split == pb.TrafficSplit(version="2", weight_percent=10)
    resolved = await stub.Resolve(pb.ResolveRequest(ref="support-bot@production"))
    assert _targets(resolved) == [("1", 90), ("2", 10)]
    assert _targets(await stub.Resolve(pb.ResolveRequest(ref="support-bot"))) == [
        ("1", 90),
        ("2", 10),
    ]

    full = await stub.PromoteVersion(
        pb.PromoteVersionRequest(
            model="support-bot",
            version="2",
            alias="production",
            reason="canary healthy",
            expected_history_sequence=2,
        )
    )
    assert full.alias.version == "2"
    assert not full.alias.HasField("traffic_split")
    assert full.history_entry.previous_version == "1"
    assert full.history_entry.previous_traffic_split.version == "2"
    assert _targets(await stub.Resolve(pb.ResolveRequest(ref="support-bot@production"))) == [
        ("2", 100)
    ]

    rolled = await stub.RollbackAlias(
        pb.RollbackAliasRequest(model="support-bot", alias="production", reason="errors up")
    )
    assert rolled.alias.version == "1"
    assert rolled.alias.traffic_split.version == "2"
    assert rolled.history_entry.restored_sequence == 2
    assert rolled.history_entry.change_type == pb.ALIAS_CHANGE_TYPE_ROLLED_BACK
    assert _targets(await stub.Resolve(pb.ResolveRequest(ref="support-bot@production"))) == [
        ("1", 90),
        ("2", 10),
    ]

    to_first = await stub.RollbackAlias(
        pb.RollbackAliasRequest(model="support-bot", alias="production", to_sequence=1)
    )
    assert to_first.alias.version == "1"
    assert not to_first.alias.HasField("traffic_split")

    history = await stub.ListAliasHistory(
        pb.ListAliasHistoryRequest(model="support-bot", alias="production")
    )
    assert [e.sequence for e in history.entries] == [5, 4, 3, 2, 1]
    assert [e.change_type for e in history.entries] == [
        pb.ALIAS_CHANGE_TYPE_ROLLED_BACK,
        pb.ALIAS_CHANGE_TYPE_ROLLED_BACK,
        pb.ALIAS_CHANGE_TYPE_PROMOTED,
        pb.ALIAS_CHANGE_TYPE_PROMOTED,
        pb.ALIAS_CHANGE_TYPE_PROMOTED,
    ]
    assert history.entries[2].reason == "canary healthy"
    assert history.entries[0].revision > history.entries[1].revision


async def test_stale_expected_sequence_is_refused(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 2)
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="1", alias="production")
    )
    error = await failure(
        stub.PromoteVersion(
            pb.PromoteVersionRequest(
                model="bot", version="2", alias="production", expected_history_sequence=7
            )
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(error) == "HISTORY_SEQUENCE_MISMATCH"


async def test_alias_crud_keeps_history_after_delete(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 2)
    created = await stub.CreateAlias(
        pb.CreateAliasRequest(alias=pb.Alias(model="bot", alias="staging", version="1"))
    )
    assert created.alias.history_sequence == 1
    updated = await stub.UpdateAlias(
        pb.UpdateAliasRequest(
            alias=pb.Alias(model="bot", alias="staging", version="2"),
            update_mask=field_mask_pb2.FieldMask(paths=["version"]),
        )
    )
    assert updated.alias.version == "2"
    listed = await stub.ListAliases(pb.ListAliasesRequest(model="bot"))
    assert [a.alias for a in listed.aliases] == ["staging"]
    await stub.DeleteAlias(pb.DeleteAliasRequest(model="bot", alias="staging", reason="done"))
    error = await failure(stub.GetAlias(pb.GetAliasRequest(model="bot", alias="staging")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    history = await stub.ListAliasHistory(pb.ListAliasHistoryRequest(model="bot", alias="staging"))
    assert [e.change_type for e in history.entries] == [
        pb.ALIAS_CHANGE_TYPE_DELETED,
        pb.ALIAS_CHANGE_TYPE_UPDATED,
        pb.ALIAS_CHANGE_TYPE_CREATED,
    ]
    assert history.entries[0].previous_version == "2"
