"""The registry watch over real gRPC: order, duplicates, gaps, resuming, propagation time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest
from grpc import aio

from llmgw.models.v1 import models_pb2 as pb
from services.inference.routing import Router, RoutingOptions
from services.inference.routing.mirror import RegistryMirror
from services.inference.routing.registry_watch import RegistryWatch, WatchConfig
from services.models.app import SERVICE_NAME
from tests.integration.inference.registry_support import (
    WatchLog,
    create_model,
    current_revision,
    free_port,
    promote,
    registry_server,
    within,
)

pytestmark = pytest.mark.integration


def fast(address: str) -> WatchConfig:
    """Short backoffs and batches, for tests."""
    return WatchConfig(
        address, reconnect_base_seconds=0.05, reconnect_max_seconds=0.5, batch_seconds=0.02
    )


def served(router: Router, name: str) -> str | None:
    """The version ``name`` routes to now (None when unknown or unservable)."""
    route = router.table.routes.get(name)
    if route is None or not route.candidates:
        return None
    return route.candidates[0].target.version.version


def normalised(revision: int, snapshot: pb.RegistrySnapshot) -> pb.RegistrySnapshot:
    mirror = RegistryMirror()
    mirror.reset(revision, snapshot)
    return mirror.snapshot()


class ScriptedRegistry:
    """Serves WatchRegistry from a script: one list of messages per stream.

    Each stream ends after its messages, except the last, which stays open.
    """

    def __init__(self, streams: list[list[pb.WatchRegistryResponse]]) -> None:
        self.streams = streams
        self.requests: list[int] = []

    def handler(self) -> grpc.GenericRpcHandler:
        """The registry service with only WatchRegistry."""
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "WatchRegistry": grpc.unary_stream_rpc_method_handler(
                    self.watch,
                    request_deserializer=pb.WatchRegistryRequest.FromString,
                    response_serializer=pb.WatchRegistryResponse.SerializeToString,
                )
            },
        )

    async def watch(
        self, request: pb.WatchRegistryRequest, context: object
    ) -> AsyncIterator[pb.WatchRegistryResponse]:
        self.requests.append(request.after_revision)
        script = self.streams.pop(0) if self.streams else []
        for message in script:
            yield message
        if not self.streams:
            await asyncio.Event().wait()


def _snapshot(revision: int, *models: str) -> pb.WatchRegistryResponse:
    return pb.WatchRegistryResponse(
        revision=revision,
        snapshot=pb.RegistrySnapshot(models=[pb.Model(name=name) for name in models]),
    )


def _change(revision: int, model: str) -> pb.WatchRegistryResponse:
    change = pb.RegistryChange(
        change_type=pb.CHANGE_TYPE_UPSERTED, revision=revision, model=pb.Model(name=model)
    )
    return pb.WatchRegistryResponse(revision=revision, change=change)


async def test_duplicates_are_skipped_and_a_gap_takes_a_fresh_snapshot() -> None:
    scripted = ScriptedRegistry(
        [
            [_snapshot(3, "a"), _change(4, "b"), _change(4, "b"), _change(3, "a"), _change(5, "c")],
            [_change(5, "c"), _change(6, "d"), _change(8, "f")],
            [_change(9, "g")],
            [_snapshot(9, "a", "z")],
        ]
    )
    server = aio.server()
    server.add_generic_rpc_handlers((scripted.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    log = WatchLog()
    tables: list[pb.RegistrySnapshot] = []
    try:
        config = fast(f"127.0.0.1:{port}")
        async with RegistryWatch(config, tables.append, [log]) as watch:
            await watch.wait_ready(5)
            await within(lambda: watch.published_revision == 9 and len(log.snapshots) == 2, 5)
    finally:
        await server.stop(0)
    # Resumed after 5; after the gap from 0, and again from 0 when a change came first.
    assert scripted.requests == [0, 5, 0, 0]
    assert log.snapshots == [3, 9]
    assert log.changes == [4, 5, 6]
    assert log.skipped == [4, 3, 5]
    assert log.losses == ["ENDED", "RESYNC", "RESYNC"]
    assert [m.name for m in tables[-1].models] == ["a", "z"]


async def test_a_new_version_and_alias_resolve_within_two_seconds(sqlite_url: str) -> None:
    log = WatchLog()
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_server(sqlite_url))
        router = await Router.create(pb.RegistrySnapshot(), RoutingOptions(), env={})
        stack.push_async_callback(router.aclose)
        config = fast(registry.address)
        watch = await stack.enter_async_context(RegistryWatch(config, router.replace_table, [log]))
        await watch.wait_ready(5)
        assert log.snapshots == [0]

        await create_model(registry.stub, "bot", 2)
        await promote(registry.stub, "bot", "1", "production")
        created = await within(lambda: served(router, "bot@production") == "1", 2.0)
        await promote(registry.stub, "bot", "2", "production")
        moved = await within(lambda: served(router, "bot@production") == "2", 2.0)
        print(f"\nrouted after the call returned: new alias {created:.3f}s, moved {moved:.3f}s")
    revision_now = log.published[-1]
    assert log.changes == list(range(1, revision_now + 1))
    assert log.skipped == []


async def test_a_restarted_registry_is_resumed_without_gap_or_duplicate(sqlite_url: str) -> None:
    port = free_port()
    log = WatchLog()
    tables: list[pb.RegistrySnapshot] = []
    async with AsyncExitStack() as stack:
        writer = await stack.enter_async_context(registry_server(sqlite_url))
        router = await Router.create(pb.RegistrySnapshot(), RoutingOptions(), env={})
        stack.push_async_callback(router.aclose)

        def serve(snapshot: pb.RegistrySnapshot) -> None:
            tables.append(snapshot)
            router.replace_table(snapshot)

        await create_model(writer.stub, "bot", 2)
        await promote(writer.stub, "bot", "1", "production")
        config = fast(f"127.0.0.1:{port}")
        async with registry_server(sqlite_url, port):
            watch = await stack.enter_async_context(RegistryWatch(config, serve, [log]))
            await watch.wait_ready(5)
            first = watch.published_revision
            await promote(writer.stub, "bot", "2", "canary")
            await within(lambda: served(router, "bot@canary") == "2", 2.0)

        # The watched registry is gone: changes made meanwhile on the other replica.
        await promote(writer.stub, "bot", "2", "production")
        await create_model(writer.stub, "other", 1)
        await asyncio.sleep(0.3)
        assert served(router, "bot@production") == "1"  # the last table keeps serving
        target = await current_revision(writer.stub)

        async with registry_server(sqlite_url, port) as restarted:
            resumed = await within(lambda: watch.published_revision == target, 5.0)
            print(f"\nresumed {resumed:.3f}s after the registry restarted")
            fresh = restarted.stub.WatchRegistry(pb.WatchRegistryRequest())
            now = await asyncio.wait_for(fresh.read(), 5)
            fresh.cancel()
    assert isinstance(now, pb.WatchRegistryResponse)
    assert log.snapshots == [first]
    assert log.changes == list(range(first + 1, target + 1))
    assert log.skipped == []
    assert "UNAVAILABLE" in log.losses or "CANCELLED" in log.losses
    assert tables[-1] == normalised(now.revision, now.snapshot)
    assert served(router, "bot@production") == "2"


async def test_a_late_watcher_gets_the_snapshot_first(sqlite_url: str) -> None:
    log = WatchLog()
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_server(sqlite_url))
        await create_model(registry.stub, "bot", 2)
        await promote(registry.stub, "bot", "1", "production")
        await promote(registry.stub, "bot", "2", "production")
        await registry.stub.RollbackAlias(pb.RollbackAliasRequest(model="bot", alias="production"))
        revision = await current_revision(registry.stub)
        router = await Router.create(pb.RegistrySnapshot(), RoutingOptions(), env={})
        stack.push_async_callback(router.aclose)
        config = fast(registry.address)
        watch = await stack.enter_async_context(RegistryWatch(config, router.replace_table, [log]))
        await watch.wait_ready(5)
        assert served(router, "bot@production") == "1"
        await promote(registry.stub, "bot", "2", "production")
        await within(lambda: served(router, "bot@production") == "2", 2.0)
    assert log.snapshots == [revision]
    assert log.published[0] == revision
    assert log.changes[0] == revision + 1
