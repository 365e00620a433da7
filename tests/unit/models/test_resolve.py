"""Resolution of references against a snapshot."""

from __future__ import annotations

import pytest

from llmgw.models.v1 import models_pb2 as pb
from services.kernel.errors import FailedPrecondition, InvalidArgument, NotFound
from services.models.resolve import resolve

ACTIVE = pb.VERSION_STATUS_ACTIVE


def _snapshot() -> pb.RegistrySnapshot:
    return pb.RegistrySnapshot(
        models=[pb.Model(name="bot"), pb.Model(name="raw"), pb.Model(name="empty")],
        versions=[
            pb.ModelVersion(model="bot", version="1", provider="simulated", status=ACTIVE),
            pb.ModelVersion(model="bot", version="2", provider="simulated", status=ACTIVE),
            pb.ModelVersion(model="raw", version="1", provider="simulated", status=ACTIVE),
            pb.ModelVersion(
                model="raw", version="2", provider="simulated", status=pb.VERSION_STATUS_REGISTERED
            ),
        ],
        aliases=[
            pb.Alias(
                model="bot",
                alias="production",
                version="1",
                traffic_split=pb.TrafficSplit(version="2", weight_percent=25),
            )
        ],
        groups=[
            pb.ModelGroup(
                name="chat",
                deployments=[pb.Deployment(id="x", model_ref="bot", weight=2, priority=1)],
            )
        ],
    )


def _targets(response: pb.ResolveResponse) -> list[tuple[str, int]]:
    return [(d.deployment_id, d.weight) for d in response.deployments]


def test_alias_with_split_and_bare_name() -> None:
    for ref in ("bot@production", "bot"):
        response = resolve(_snapshot(), 7, ref)
        assert _targets(response) == [("bot/versions/1", 75), ("bot/versions/2", 25)]
        assert response.model == "bot"
        assert response.revision == 7


def test_bare_name_without_alias_takes_an_active_version() -> None:
    assert _targets(resolve(_snapshot(), 1, "raw")) == [("raw/versions/1", 1)]


def test_exact_version_and_group() -> None:
    assert _targets(resolve(_snapshot(), 1, "raw/versions/2")) == [("raw/versions/2", 1)]
    group = resolve(_snapshot(), 1, "chat")
    assert _targets(group) == [("x", 150), ("x", 50)]
    assert {d.priority for d in group.deployments} == {1}
    assert group.model == ""


def test_errors() -> None:
    with pytest.raises(NotFound):
        resolve(_snapshot(), 1, "bot@staging")
    with pytest.raises(NotFound):
        resolve(_snapshot(), 1, "ghost")
    with pytest.raises(FailedPrecondition):
        resolve(_snapshot(), 1, "empty")
    with pytest.raises(InvalidArgument):
        resolve(_snapshot(), 1, "Bad@@ref")
