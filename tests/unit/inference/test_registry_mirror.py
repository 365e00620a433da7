"""RegistryMirror: snapshots replace, changes upsert or remove one resource."""

from __future__ import annotations

import pytest

from llmgw.models.v1 import models_pb2 as pb
from services.inference.routing.mirror import ChangeError, RegistryMirror


def _version(
    version: str, status: pb.VersionStatus.ValueType = pb.VERSION_STATUS_ACTIVE
) -> pb.ModelVersion:
    return pb.ModelVersion(model="bot", version=version, provider="simulated", status=status)


def _upsert(**resource: object) -> pb.RegistryChange:
    return pb.RegistryChange(change_type=pb.CHANGE_TYPE_UPSERTED, **resource)  # type: ignore[arg-type]


def test_a_snapshot_replaces_everything_and_sets_the_revision() -> None:
    mirror = RegistryMirror()
    assert (mirror.revision, mirror.synced) == (0, False)
    mirror.apply(1, _upsert(model=pb.Model(name="old")))
    mirror.reset(7, pb.RegistrySnapshot(models=[pb.Model(name="bot")], versions=[_version("1")]))
    assert (mirror.revision, mirror.synced) == (7, True)
    assert [m.name for m in mirror.snapshot().models] == ["bot"]
    assert [v.version for v in mirror.snapshot().versions] == ["1"]


def test_changes_upsert_and_delete_by_key() -> None:
    mirror = RegistryMirror()
    mirror.reset(1, pb.RegistrySnapshot(versions=[_version("1")]))
    mirror.apply(2, _upsert(version=_version("2")))
    mirror.apply(3, _upsert(alias=pb.Alias(model="bot", alias="production", version="1")))
    mirror.apply(4, _upsert(alias=pb.Alias(model="bot", alias="production", version="2")))
    mirror.apply(
        5,
        pb.RegistryChange(
            change_type=pb.CHANGE_TYPE_DELETED, version=_version("1", pb.VERSION_STATUS_ACTIVE)
        ),
    )
    snapshot = mirror.snapshot()
    assert mirror.revision == 5
    assert [v.version for v in snapshot.versions] == ["2"]
    assert [(a.alias, a.version) for a in snapshot.aliases] == [("production", "2")]


def test_an_archived_version_leaves_the_mirror() -> None:
    mirror = RegistryMirror()
    mirror.reset(1, pb.RegistrySnapshot(versions=[_version("1"), _version("2")]))
    mirror.apply(2, _upsert(version=_version("1", pb.VERSION_STATUS_ARCHIVED)))
    assert [v.version for v in mirror.snapshot().versions] == ["2"]


def test_the_snapshot_is_a_copy() -> None:
    mirror = RegistryMirror()
    source = pb.RegistrySnapshot(versions=[_version("1")])
    mirror.reset(1, source)
    source.versions[0].provider = "changed"
    taken = mirror.snapshot()
    taken.versions[0].provider = "changed too"
    assert mirror.snapshot().versions[0].provider == "simulated"


def test_a_change_without_resource_or_type_is_refused_and_changes_nothing() -> None:
    mirror = RegistryMirror()
    mirror.reset(1, pb.RegistrySnapshot())
    with pytest.raises(ChangeError):
        mirror.apply(2, pb.RegistryChange(change_type=pb.CHANGE_TYPE_UPSERTED))
    with pytest.raises(ChangeError):
        mirror.apply(2, pb.RegistryChange(model=pb.Model(name="bot")))
    assert mirror.revision == 1
    assert mirror.snapshot() == pb.RegistrySnapshot()


def test_invalidate_keeps_the_content_until_the_next_snapshot() -> None:
    mirror = RegistryMirror()
    mirror.reset(3, pb.RegistrySnapshot(versions=[_version("1")]))
    mirror.invalidate()
    assert (mirror.revision, mirror.synced) == (3, False)
    assert len(mirror.snapshot().versions) == 1
