"""The registry's consumer of fine-tuning job events: one version per job, alias moved once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from llmgw.events.v1 import events_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.kernel.events import EventTypeRegistry, InProcessEventBus
from tests.integration.finetuning.conftest import ACTOR, BASE_MODEL, serving_registry

TOPIC = "llmgw.finetuning.v1"


@dataclass
class Served:
    stub: models_pb2_grpc.ModelRegistryServiceAsyncStub
    bus: InProcessEventBus


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[Served]:
    async with AsyncExitStack() as stack:
        bus = InProcessEventBus(EventTypeRegistry.from_module(events_pb2), "//tests")
        stack.push_async_callback(bus.close)
        stub, _ = await stack.enter_async_context(serving_registry(database_url, bus, stack))
        yield Served(stub, bus)


def succeeded(
    job_id: str, alias: str = "", result_model: str = "", base_version: str = "1"
) -> events_pb2.FineTuneJobEvent:
    job = ft.Job(
        id=job_id,
        project_id="support",
        base_model=f"{BASE_MODEL}@production",
        base_model_name=BASE_MODEL,
        base_model_version=base_version,
        result_model=result_model,
        result_model_version=job_id,
        result_provider_model_id=f"ft:sim-small:x:{job_id}",
        alias_on_success=alias,
        state=ft.JOB_STATE_SUCCEEDED,
    )
    event = events_pb2.FineTuneJobEvent(
        event=ft.JobEvent(
            id=f"{job_id}.9",
            job_id=job_id,
            sequence=9,
            type=ft.JOB_EVENT_TYPE_STATE_CHANGED,
            state=ft.JOB_STATE_SUCCEEDED,
        ),
        job=job,
    )
    event.metadata.id = event.event.id
    event.metadata.subject = job_id
    return event


async def versions(stub: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> list[str]:
    listed = await stub.ListModelVersions(models_pb2.ListModelVersionsRequest(model=BASE_MODEL))
    return sorted(v.version for v in listed.versions)


async def alias_target(stub: models_pb2_grpc.ModelRegistryServiceAsyncStub, alias: str) -> str:
    found = await stub.GetAlias(models_pb2.GetAliasRequest(model=BASE_MODEL, alias=alias))
    return found.alias.version


async def test_the_same_success_event_twice_registers_one_version(served: Served) -> None:
    event = succeeded("ftjob_a", alias="staging")
    await served.bus.publish(TOPIC, event)
    await served.bus.publish(TOPIC, event)
    await served.bus.drain()

    assert await versions(served.stub) == ["1", "ftjob_a"]
    assert await alias_target(served.stub, "staging") == "ftjob_a"
    history = await served.stub.ListAliasHistory(
        models_pb2.ListAliasHistoryRequest(model=BASE_MODEL, alias="staging")
    )
    assert len(history.entries) == 1
    version = await served.stub.GetModelVersion(
        models_pb2.GetModelVersionRequest(model=BASE_MODEL, version="ftjob_a")
    )
    assert version.version.status == models_pb2.VERSION_STATUS_ACTIVE
    assert version.version.origin.type == models_pb2.VERSION_ORIGIN_TYPE_FINE_TUNE
    assert version.version.origin.base_model == f"{BASE_MODEL}@production"
    assert version.version.provider_model_id == "ft:sim-small:x:ftjob_a"
    assert version.version.pricing.input_per_million_nanos == 150_000_000
    assert version.version.labels["fine-tune-job"] == "ftjob_a"


async def test_a_replay_after_the_alias_moved_on_does_not_move_it_back(served: Served) -> None:
    event = succeeded("ftjob_b", alias="production")
    await served.bus.publish(TOPIC, event)
    await served.bus.drain()
    assert await alias_target(served.stub, "production") == "ftjob_b"
    await served.stub.RollbackAlias(
        models_pb2.RollbackAliasRequest(model=BASE_MODEL, alias="production"), metadata=ACTOR
    )

    await served.bus.publish(TOPIC, event)
    await served.bus.drain()

    assert await alias_target(served.stub, "production") == "1"
    assert await versions(served.stub) == ["1", "ftjob_b"]


async def test_other_events_and_unusable_jobs_change_nothing(served: Served) -> None:
    running = succeeded("ftjob_c")
    running.event.state = ft.JOB_STATE_RUNNING
    await served.bus.publish(TOPIC, running)
    await served.bus.publish(TOPIC, succeeded("ftjob_d", result_model="gone"))
    await served.bus.publish(TOPIC, succeeded("ftjob_e", base_version="404"))
    await served.bus.publish(TOPIC, succeeded("ftjob_f"))
    await served.bus.drain()

    assert await versions(served.stub) == ["1", "ftjob_f"]
