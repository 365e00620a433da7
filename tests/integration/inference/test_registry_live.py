"""The real inference process following the registry: start, live changes under load."""

from __future__ import annotations

import asyncio
import functools
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from llmgw.models.v1 import models_pb2 as pb
from services.inference.app import build
from services.kernel.server import KernelServer
from tests.integration.inference.app_support import RunningApp, running_app, settings_for
from tests.integration.inference.helpers import completion
from tests.integration.inference.registry_support import (
    ACTOR,
    create_model,
    current_revision,
    free_port,
    promote,
    registry_server,
    within,
)

pytestmark = pytest.mark.integration

SLOW = {"ttft_ms": "200"}
"""0.2 s per answer, so requests are running whenever the table changes."""


def gauge(app: RunningApp, name: str, labels: dict[str, str] | None = None) -> float:
    return app.registry.get_sample_value(name, labels or {}) or 0.0


def ask(model: str) -> inference_pb2.CompleteRequest:
    return inference_pb2.CompleteRequest(completion=completion(model, bypass_cache=True))


def at_revision(apps: list[RunningApp], revision: int) -> bool:
    return all(gauge(app, "llmgw_inference_registry_revision") >= revision for app in apps)


def messages(app: RunningApp, outcome: str) -> float:
    return gauge(app, "llmgw_inference_registry_messages_total", {"outcome": outcome})


@dataclass
class Traffic:
    """Requests sent in a loop by a few workers; (start, end, served version or error)."""

    results: list[tuple[float, float, str]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, stub: inference_pb2_grpc.InferenceServiceAsyncStub) -> None:
        for _ in range(1000):
            if self.stop.is_set():
                return
            began = time.monotonic()
            try:
                response = await stub.Complete(ask("bot@production"), timeout=5)
                outcome = response.result.served_by.model_version
            except aio.AioRpcError as exc:
                outcome = f"error {exc.code().name}: {exc.details()}"
            self.results.append((began, time.monotonic(), outcome))

    def errors(self) -> list[str]:
        return [outcome for _, _, outcome in self.results if outcome.startswith("error")]

    def running_at(self, moment: float) -> int:
        """How many requests started before ``moment`` and ended after it."""
        return sum(1 for began, ended, _ in self.results if began < moment < ended)

    def switch_seconds(self, since: float, version: str) -> float:
        """From ``since`` until every request started from then on went to ``version``."""
        later = sorted(r for r in self.results if r[0] >= since)
        assert later, "no request started after the change"
        switch = since
        for began, _, outcome in later:
            if outcome != version:
                switch = began
        assert later[-1][2] == version
        return switch - since


async def test_two_replicas_follow_promote_and_rollback_under_load(
    tmp_path: Path, database_url: str
) -> None:
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_server(database_url))
        await create_model(registry.stub, "bot", 2, **SLOW)
        await promote(registry.stub, "bot", "1", "production")
        apps = []
        for index in range(2):
            (tmp_path / str(index)).mkdir()
            settings = settings_for(tmp_path / str(index), registry_address=registry.address)
            apps.append(await stack.enter_async_context(running_app(settings)))
        traffic = [Traffic(), Traffic()]
        workers = [
            asyncio.create_task(load.worker(app.stub))
            for app, load in zip(apps, traffic, strict=True)
            for _ in range(4)
        ]
        try:
            await asyncio.sleep(0.5)
            figures = []
            for version, change in (("2", "promote"), ("1", "rollback")):
                if change == "promote":
                    await promote(registry.stub, "bot", "2", "production")
                else:
                    await registry.stub.RollbackAlias(
                        pb.RollbackAliasRequest(model="bot", alias="production"), metadata=ACTOR
                    )
                changed_at = time.monotonic()
                revision = await current_revision(registry.stub)
                await within(functools.partial(at_revision, apps, revision), 2.0)
                applied = time.monotonic() - changed_at
                await asyncio.sleep(2.2)
                switched = [load.switch_seconds(changed_at, version) for load in traffic]
                spanning = [load.running_at(changed_at) for load in traffic]
                figures.append((change, applied, switched, spanning))
        finally:
            for load in traffic:
                load.stop.set()
            await asyncio.gather(*workers)
    for change, applied, switched, spanning in figures:
        print(
            f"\n{change}: applied on both {applied:.3f}s after the call returned;"
            f" all later requests on the new version after {switched};"
            f" requests running across the change: {spanning}"
        )
        assert max(switched) < 2.0
        assert min(spanning) > 0
    for load in traffic:
        assert load.errors() == []
        assert len(load.results) > 40
    for app in apps:
        assert messages(app, "snapshot") == 1
        assert messages(app, "skipped") == 0


async def test_a_late_replica_starts_from_the_snapshot(tmp_path: Path, sqlite_url: str) -> None:
    async with registry_server(sqlite_url) as registry:
        await create_model(registry.stub, "bot", 2)
        await promote(registry.stub, "bot", "1", "production")
        await promote(registry.stub, "bot", "2", "production")
        await registry.stub.RollbackAlias(
            pb.RollbackAliasRequest(model="bot", alias="production"), metadata=ACTOR
        )
        revision = await current_revision(registry.stub)
        settings = settings_for(tmp_path, registry_address=registry.address)
        async with running_app(settings) as app:
            response = await app.stub.Complete(ask("bot@production"), timeout=5)
            assert response.result.served_by.model_version == "1"
            assert messages(app, "snapshot") == 1
            assert messages(app, "change") == 0
            assert gauge(app, "llmgw_inference_registry_revision") == revision
            # The routing file's models are not served: the registry is the source.
            with pytest.raises(aio.AioRpcError) as caught:
                await app.stub.Complete(ask("sim"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_no_snapshot_fails_the_start(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        registry_address=f"127.0.0.1:{free_port()}",
        registry_start_timeout_seconds=0.5,
    )
    server = KernelServer(build(settings, env={}), settings.server, CollectorRegistry())
    with pytest.raises(RuntimeError, match="no routing snapshot from the registry"):
        await server.start()
