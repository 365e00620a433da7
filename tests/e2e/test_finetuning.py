"""Fine-tuning end to end: real ``models``, ``finetuning`` and ``inference`` processes.

The processes talk over loopback gRPC and a real Kafka-protocol broker: the
fine-tuning service resolves the base model through the registry, publishes
its job events on Kafka, the registry consumes the success event and
registers the version under the alias, and the inference service (following
the registry's watch) serves a chat with it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
import yaml
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.finetuning.v1 import finetuning_pb2_grpc
from llmgw.inference.v1 import inference_pb2, inference_pb2_grpc
from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.kernel.health_client import wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
ACTOR = (("llmgw-actor-type", "user"), ("llmgw-actor-id", "alice"), ("llmgw-project-id", "ops"))
DATASET = (
    '{"messages": [{"role": "user", "content": "Reset my password"},'
    ' {"role": "assistant", "content": "Use the link on the sign-in page."}]}\n'
    '{"prompt": "wrong format", "completion": "on purpose"}\n'
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _serve(name: str, config: Mapping[str, object], tmp_path: Path) -> Iterator[str]:
    """Run ``llmgw serve name`` with ``config`` until the block exits; yields its address."""
    port = _free_port()
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(dict(config)))
    log = (tmp_path / f"{name}.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(LLMGW_CONFIG="", KAFKA_BOOTSTRAP_SERVERS="")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "serve",
            name,
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--config",
            str(config_file),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_upload_train_register_and_chat_with_the_fine_tuned_model(
    tmp_path: Path, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("finetuning")
    kafka = {"bootstrap_servers": kafka_bootstrap}
    models_config = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'models.db'}",
        "kafka": kafka,
        "registry": {
            "providers": ["simulated"],
            "finetuning_topic": topic,
            "models_topic": unique_name("models"),
            "audit_topic": unique_name("audit"),
        },
    }
    with _serve("models", models_config, tmp_path) as registry:
        assert await wait_until_serving(registry, timeout=30)
        async with aio.insecure_channel(registry) as channel:
            models = models_pb2_grpc.ModelRegistryServiceStub(channel)
            await _seed(models)
            finetuning_config = {
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'finetuning.db'}",
                "kafka": kafka,
                "finetuning": {
                    "registry_address": registry,
                    "blob_dir": str(tmp_path / "blobs"),
                    "topic": topic,
                    "usage_topic": unique_name("usage"),
                    "relay_poll_interval_seconds": 0.2,
                    "simulated": {"step_seconds": 0.01, "steps_per_epoch": 4},
                },
            }
            inference_config = {
                "routing": {"registry_address": registry},
                "usage": {"spool_dir": str(tmp_path / "spool")},
            }
            with (
                _serve("finetuning", finetuning_config, tmp_path) as finetuning_address,
                _serve("inference", inference_config, tmp_path) as inference_address,
            ):
                assert await wait_until_serving(finetuning_address, timeout=30)
                assert await wait_until_serving(inference_address, timeout=30)
                async with (
                    aio.insecure_channel(finetuning_address) as ft_channel,
                    aio.insecure_channel(inference_address) as inference_channel,
                ):
                    finetuning = finetuning_pb2_grpc.FineTuningServiceStub(ft_channel)
                    inference = inference_pb2_grpc.InferenceServiceStub(inference_channel)
                    await _train_and_chat(models, finetuning, inference)


async def _seed(models: models_pb2_grpc.ModelRegistryServiceAsyncStub) -> None:
    await models.CreateModel(
        models_pb2.CreateModelRequest(model=models_pb2.Model(name="helpdesk")), metadata=ACTOR
    )
    await models.CreateModelVersion(
        models_pb2.CreateModelVersionRequest(
            version=models_pb2.ModelVersion(
                model="helpdesk",
                version="1",
                provider="simulated",
                provider_model_id="sim-small",
                context_window=8192,
                max_output_tokens=256,
                capabilities=[common_pb2.CAPABILITY_CHAT],
            )
        ),
        metadata=ACTOR,
    )
    await models.PromoteVersion(
        models_pb2.PromoteVersionRequest(model="helpdesk", version="1", alias="production"),
        metadata=ACTOR,
    )


async def _upload(
    finetuning: finetuning_pb2_grpc.FineTuningServiceAsyncStub, content: bytes
) -> ft.Dataset:
    async def chunks() -> AsyncIterator[ft.UploadDatasetRequest]:
        yield ft.UploadDatasetRequest(
            metadata=ft.DatasetMetadata(
                display_name="tickets.jsonl", format=ft.DATASET_FORMAT_CHAT_JSONL
            )
        )
        for start in range(0, len(content), 100):
            yield ft.UploadDatasetRequest(chunk=content[start : start + 100])

    response = await finetuning.UploadDataset(chunks(), metadata=ACTOR)
    return response.dataset


async def _train_and_chat(
    models: models_pb2_grpc.ModelRegistryServiceAsyncStub,
    finetuning: finetuning_pb2_grpc.FineTuningServiceAsyncStub,
    inference: inference_pb2_grpc.InferenceServiceAsyncStub,
) -> None:
    bad = await _upload(finetuning, DATASET.encode())
    assert bad.status == ft.DATASET_STATUS_INVALID
    assert [(e.line, e.code) for e in bad.errors] == [(2, "MISSING_MESSAGES")]
    good = await _upload(finetuning, DATASET.encode().splitlines(keepends=True)[0])
    assert good.status == ft.DATASET_STATUS_READY and good.token_count > 0

    created = await finetuning.CreateJob(
        ft.CreateJobRequest(
            base_model="helpdesk@production",
            training_dataset_id=good.id,
            suffix="tickets",
            alias_on_success="staging",
        ),
        metadata=ACTOR,
    )
    job_id = created.job.id
    states = [
        message.event.state
        async for message in finetuning.WatchJob(ft.WatchJobRequest(job_id=job_id), timeout=60)
        if message.event.type == ft.JOB_EVENT_TYPE_STATE_CHANGED
    ]
    assert states[-1] == ft.JOB_STATE_SUCCEEDED, states

    async def aliased() -> bool:
        try:
            found = await models.GetAlias(
                models_pb2.GetAliasRequest(model="helpdesk", alias="staging"), timeout=5
            )
        except aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND
            return False
        return found.alias.version == job_id

    await _until(aliased, "the registry to register the version under helpdesk@staging")
    version = await models.GetModelVersion(
        models_pb2.GetModelVersionRequest(model="helpdesk", version=job_id)
    )
    assert version.version.origin.fine_tune_job_id == job_id

    request = inference_pb2.CompleteRequest(
        completion=inference_pb2.CompletionRequest(
            model="helpdesk@staging",
            messages=[
                inference_pb2.Message(
                    role=common_pb2.ROLE_USER,
                    content=[inference_pb2.ContentPart(text="I forgot my password")],
                )
            ],
        )
    )
    answers: list[inference_pb2.CompleteResponse] = []

    async def served() -> bool:
        try:
            answers.append(await inference.Complete(request, timeout=10))
        except aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND, exc
            return False
        return True

    await _until(served, "the inference service to serve helpdesk@staging")
    served_by = answers[-1].result.served_by
    assert (served_by.provider, served_by.model, served_by.model_version) == (
        "simulated",
        "helpdesk",
        job_id,
    )
