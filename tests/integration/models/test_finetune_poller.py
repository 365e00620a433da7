"""Without a shared event bus the registry finds succeeded jobs by asking the service."""

from __future__ import annotations

import socket
from contextlib import AsyncExitStack
from pathlib import Path

from grpc import aio

from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.models.v1 import models_pb2
from services.kernel.events import EventTypeRegistry, InProcessEventBus
from tests.integration.finetuning.conftest import (
    ACTOR,
    BASE_MODEL,
    Recorder,
    chat_dataset,
    eventually,
    section,
    serving_finetuning,
    serving_registry,
    upload,
    watch_to_end,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_registry_polls_the_fine_tuning_service_for_succeeded_jobs(
    database_url: str, tmp_path: Path
) -> None:
    registry_port, finetuning_port = _free_port(), _free_port()
    async with AsyncExitStack() as stack:
        unshared = InProcessEventBus(EventTypeRegistry.from_module(events_pb2), "//tests")
        stack.push_async_callback(unshared.close)
        # The fine-tuning service starts first: a channel that found nobody at an
        # address backs off, and channels of one process share that state.
        settings = section(tmp_path / "blobs", f"127.0.0.1:{registry_port}")
        stub = await stack.enter_async_context(
            serving_finetuning(database_url, settings, Recorder(unshared), finetuning_port)
        )
        models, _ = await stack.enter_async_context(
            serving_registry(
                database_url,
                None,
                stack,
                finetuning_address=f"127.0.0.1:{finetuning_port}",
                port=registry_port,
            )
        )
        dataset = await upload(stub, chat_dataset())
        jobs = []
        for _ in range(2):
            request = ft.CreateJobRequest(
                base_model=f"{BASE_MODEL}@production",
                training_dataset_id=dataset.id,
                alias_on_success="staging",
            )
            jobs.append((await stub.CreateJob(request, metadata=ACTOR)).job)
        for job in jobs:
            await watch_to_end(stub, job.id)

        async def both_promoted() -> bool:
            try:
                history = await models.ListAliasHistory(
                    models_pb2.ListAliasHistoryRequest(model=BASE_MODEL, alias="staging")
                )
            except aio.AioRpcError:
                return False
            return len(history.entries) == 2

        await eventually(both_promoted)
        history = await models.ListAliasHistory(
            models_pb2.ListAliasHistoryRequest(model=BASE_MODEL, alias="staging")
        )
        assert {entry.version for entry in history.entries} == {job.id for job in jobs}
        listed = await models.ListModelVersions(
            models_pb2.ListModelVersionsRequest(model=BASE_MODEL)
        )
        assert sorted(v.version for v in listed.versions) == sorted(["1", *(j.id for j in jobs)])
