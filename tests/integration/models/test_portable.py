"""YAML export and import: round trip, idempotence, validation naming the entry, atomicity."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import field_mask_pb2

from llmgw.models.v1 import models_pb2 as pb
from services.inference.routing.snapshot import parse_snapshot
from services.kernel.errors import InvalidArgument
from services.models.caller import SYSTEM
from services.models.portable import export_registry, import_registry
from tests.integration.models.conftest import Running, model_with_versions, serving
from tests.integration.models.rpc_errors import failure

pytestmark = pytest.mark.integration


async def populate(registry: Running) -> None:
    """Models, versions in every status, an alias with a canary, a group."""
    stub = registry.stub
    await model_with_versions(stub, "support-bot", 3)
    await model_with_versions(stub, "summarizer", 1)
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(model="support-bot", version="1", alias="production")
    )
    await stub.PromoteVersion(
        pb.PromoteVersionRequest(
            model="support-bot", version="2", alias="production", canary_weight_percent=20
        )
    )
    await stub.UpdateModelVersion(
        pb.UpdateModelVersionRequest(
            version=pb.ModelVersion(
                model="support-bot", version="3", status=pb.VERSION_STATUS_ARCHIVED
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        )
    )
    await stub.CreateModelGroup(
        pb.CreateModelGroupRequest(
            group=pb.ModelGroup(
                name="chat",
                deployments=[
                    pb.Deployment(id="a", model_ref="support-bot@production", weight=2),
                    pb.Deployment(id="b", model_ref="summarizer/versions/1", priority=1),
                ],
                fallbacks=["summarizer"],
            )
        )
    )


async def test_round_trip_and_idempotent_reimport(registry: Running, tmp_path: Path) -> None:
    await populate(registry)
    exported = await export_registry(registry.runtime.registry)
    document = yaml.safe_load(exported)
    assert [v["status"] for v in document["versions"] if v["model"] == "support-bot"] == [
        "VERSION_STATUS_ACTIVE",
        "VERSION_STATUS_ACTIVE",
        "VERSION_STATUS_ARCHIVED",
    ]
    assert "revision" not in document["models"][0]
    parse_snapshot(document)  # the inference service accepts it as a routing file

    async with serving(f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}") as copy:
        result = await import_registry(copy.runtime.registry, exported, SYSTEM)
        assert result.changed == 2 + 4 + 1 + 1
        assert await export_registry(copy.runtime.registry) == exported
        again = await import_registry(copy.runtime.registry, exported, SYSTEM)
        assert again.changed == 0
        assert again.revision == result.revision
        resolved = await copy.stub.Resolve(pb.ResolveRequest(ref="support-bot@production"))
        assert [(d.version.version, d.weight) for d in resolved.deployments] == [
            ("1", 80),
            ("2", 20),
        ]

    again_here = await import_registry(registry.runtime.registry, exported, SYSTEM)
    assert again_here.changed == 0


async def test_invalid_document_names_each_entry_and_changes_nothing(registry: Running) -> None:
    document: dict[str, list[dict[str, object]]] = {
        "models": [{"name": "bot"}],
        "versions": [
            {"model": "bot", "version": "1", "provider": "simulated", "provider_model_id": "s"},
            {
                "model": "bot",
                "version": "2",
                "provider": "nope",
                "provider_model_id": "s",
                "pricing": {"currency_code": "USD", "input_per_million_nanos": "-3"},
            },
        ],
    }
    registry_ = registry.runtime.registry
    with pytest.raises(InvalidArgument) as caught:
        await import_registry(registry_, yaml.safe_dump(document), SYSTEM)
    message = str(caught.value)
    assert "versions[1] (bot/versions/2).provider" in message
    assert "versions[1] (bot/versions/2).pricing.input_per_million_nanos" in message

    document["versions"] = document["versions"][:1]
    document["aliases"] = [{"model": "bot", "alias": "production", "version": "9"}]
    with pytest.raises(InvalidArgument) as caught:
        await import_registry(registry_, yaml.safe_dump(document), SYSTEM)
    assert "aliases[0] (bot@production)" in str(caught.value)
    error = await failure(registry.stub.GetModel(pb.GetModelRequest(name="bot")))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # the whole import was rolled back


async def test_seed_file_is_imported_at_start(database_url: str, tmp_path: Path) -> None:
    seed = tmp_path / "registry.yaml"
    seed.write_text(
        yaml.safe_dump(
            {
                "versions": [
                    {
                        "model": "bot",
                        "version": "1",
                        "provider": "simulated",
                        "provider_model_id": "s",
                    }
                ],
                "aliases": [{"model": "bot", "alias": "production", "version": "1"}],
            }
        )
    )
    for _ in range(2):  # a restart imports the same file again without changes
        async with serving(database_url, seed_file=seed) as registry:
            resolved = await registry.stub.Resolve(pb.ResolveRequest(ref="bot"))
            assert [d.deployment_id for d in resolved.deployments] == ["bot/versions/1"]
            history = await registry.stub.ListAliasHistory(
                pb.ListAliasHistoryRequest(model="bot", alias="production")
            )
            assert len(history.entries) == 1


async def test_violations_of_an_import_name_the_entry(registry: Running) -> None:
    bad = {"groups": [{"name": "chat", "deployments": [{"id": "a", "model_ref": "ghost@x"}]}]}
    with pytest.raises(InvalidArgument) as caught:
        await import_registry(registry.runtime.registry, yaml.safe_dump(bad), SYSTEM)
    fields = [v.field for v in caught.value.violations]
    assert fields == ["groups[0] (chat).deployments[0].model_ref"]
