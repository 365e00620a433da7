"""WatchRegistry: a snapshot first, then every change in order; resumable without gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from llmgw.models.v1 import models_pb2 as pb
from llmgw.models.v1 import models_pb2_grpc
from services.inference.routing.snapshot import check_snapshot
from tests.integration.models.conftest import Running, model_with_versions, serving

pytestmark = pytest.mark.integration

_KEYS: dict[str, Callable[[Any], Any]] = {
    "model": lambda m: m.name,
    "version": lambda v: (v.model, v.version),
    "alias": lambda a: (a.model, a.alias),
    "group": lambda g: g.name,
}
_SECTIONS = {"model": "models", "version": "versions", "alias": "aliases", "group": "groups"}


def apply(snapshot: pb.RegistrySnapshot, change: pb.RegistryChange) -> None:
    """What a watcher does with one change: replace or drop the resource."""
    kind = change.WhichOneof("resource")
    assert kind is not None
    resource = getattr(change, kind)
    entries = getattr(snapshot, _SECTIONS[kind])
    kept = [e for e in entries if _KEYS[kind](e) != _KEYS[kind](resource)]
    archived = kind == "version" and resource.status == pb.VERSION_STATUS_ARCHIVED
    if change.change_type == pb.CHANGE_TYPE_UPSERTED and not archived:
        kept.append(resource)
    del entries[:]
    entries.extend(sorted(kept, key=_KEYS[kind]))


def normalised(snapshot: pb.RegistrySnapshot) -> pb.RegistrySnapshot:
    """``snapshot`` with every section sorted by key."""
    result = pb.RegistrySnapshot()
    for kind, section in _SECTIONS.items():
        getattr(result, section).extend(sorted(getattr(snapshot, section), key=_KEYS[kind]))
    return result


async def take(
    stream: grpc.aio.UnaryStreamCall[pb.WatchRegistryRequest, pb.WatchRegistryResponse], count: int
) -> list[pb.WatchRegistryResponse]:
    """The next ``count`` messages of ``stream``, failing after 5 s."""

    async def read() -> list[pb.WatchRegistryResponse]:
        return [await stream.read() for _ in range(count)]  # type: ignore[misc]

    return await asyncio.wait_for(read(), 5)


async def mutate(stub: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> None:
    """A few changes of every kind."""
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="2", alias="production")
    )
    await stub.CreateModelGroup(
        pb.CreateModelGroupRequest(
            group=pb.ModelGroup(
                name="chat", deployments=[pb.Deployment(id="a", model_ref="bot@production")]
            )
        )
    )
    await stub.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            version=pb.ModelVersion(model="bot", version="3", status=pb.VERSION_STATUS_ARCHIVED),
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        )
    )


async def test_snapshot_then_changes_then_resume(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 3)
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="bot", version="1", alias="production")
    )

    stream = stub.WatchRegistry(pb.WatchRegistryRequest())
    [first] = await take(stream, 1)
    assert first.WhichOneof("event") == "snapshot"
    assert first.revision == 6  # model, 3 versions, activation of 1, alias
    mirror = pb.RegistrySnapshot()
    mirror.CopyFrom(first.snapshot)
    assert check_snapshot(mirror) == []

    await mutate(stub)
    # activation of 2, alias, group, archived 3
    changes = await take(stream, 4)
    assert [m.revision for m in changes] == [7, 8, 9, 10]
    for message in changes:
        assert message.change.revision == message.revision
        apply(mirror, message.change)
    stream.cancel()

    await stub.DeleteModelGroup(pb.DeleteModelGroupRequest(name="chat"))
    await stub.RollbackAlias(pb.RollbackAliasRequest(model="bot", alias="production"))
    resumed = stub.WatchRegistry(pb.WatchRegistryRequest(after_revision=10))
    rest = await take(resumed, 2)
    assert [m.revision for m in rest] == [11, 12]
    assert all(m.WhichOneof("event") == "change" for m in rest)
    assert rest[0].change.change_type == pb.CHANGE_TYPE_DELETED
    for message in rest:
        apply(mirror, message.change)
    resumed.cancel()

    fresh = stub.WatchRegistry(pb.WatchRegistryRequest())
    [now] = await take(fresh, 1)
    fresh.cancel()
    assert now.revision == 12
    assert normalised(mirror) == normalised(now.snapshot)
    assert check_snapshot(now.snapshot) == []


async def test_resume_from_the_future_gets_a_snapshot(registry: Running) -> None:
    await model_with_versions(registry.stub, "bot", 1)
    stream = registry.stub.WatchRegistry(pb.WatchRegistryRequest(after_revision=99))
    [first] = await take(stream, 1)
    stream.cancel()
    assert first.WhichOneof("event") == "snapshot"
    assert first.revision == 2


async def test_concurrent_writers_yield_a_gapless_feed(registry: Running) -> None:
    stub = registry.stub
    await model_with_versions(stub, "bot", 0)
    stream = stub.WatchRegistry(pb.WatchRegistryRequest())
    [first] = await take(stream, 1)
    await asyncio.gather(
        *(
            stub.CreateModelVersion(
                pb.CreateModelVersionRequest(
                    version=pb.ModelVersion(
                        model="bot", provider="simulated", provider_model_id=f"sim-{n}"
                    )
                )
            )
            for n in range(20)
        )
    )
    changes = await take(stream, 20)
    stream.cancel()
    assert [m.revision for m in changes] == list(range(first.revision + 1, first.revision + 21))
    assert sorted(m.change.version.version for m in changes) == sorted(str(n) for n in range(1, 21))


async def test_a_watcher_of_one_replica_sees_changes_made_on_another(database_url: str) -> None:
    async with serving(database_url) as writer, serving(database_url) as watched:
        await model_with_versions(writer.stub, "bot", 1)
        stream = watched.stub.WatchRegistry(pb.WatchRegistryRequest())
        [first] = await take(stream, 1)
        await writer.stub.PromoteVersion(
            pb.PromoteVersionRequest(model="bot", version="1", alias="production")
        )
        changes = await take(stream, 2)
        stream.cancel()
    assert [m.revision for m in changes] == [first.revision + 1, first.revision + 2]
    assert changes[-1].change.alias.version == "1"
