"""``llmgw run`` points its children at each other through their environment."""

from __future__ import annotations

import io
import json
from pathlib import Path

from services.runner import ChildSpec, Runner, RunnerConfig

CHILDREN = (
    ChildSpec("finetuning", "127.0.0.1", 6000),
    ChildSpec("gateway", "127.0.0.1", 6001),
    ChildSpec("models", "127.0.0.1", 6003),
)


def test_the_fine_tuning_service_and_the_registry_are_pointed_at_each_other() -> None:
    runner = Runner(RunnerConfig(CHILDREN, Path("logs"), {}), io.StringIO())

    finetuning = runner._child_env(CHILDREN[0])
    gateway = runner._child_env(CHILDREN[1])
    models = runner._child_env(CHILDREN[2])

    assert finetuning["LLMGW_FINETUNING__REGISTRY_ADDRESS"] == "127.0.0.1:6003"
    assert models["LLMGW_REGISTRY__FINETUNING_ADDRESS"] == "127.0.0.1:6000"
    assert json.loads(gateway["LLMGW_GATEWAY__CLUSTERS__MODELS__ENDPOINTS"]) == ["127.0.0.1:6003"]
    assert "LLMGW_FINETUNING__REGISTRY_ADDRESS" not in gateway


def test_an_address_given_by_the_caller_wins() -> None:
    env = {"LLMGW_FINETUNING__REGISTRY_ADDRESS": "registry.internal:50053"}
    runner = Runner(RunnerConfig(CHILDREN, Path("logs"), env), io.StringIO())

    assert runner._child_env(CHILDREN[0])["LLMGW_FINETUNING__REGISTRY_ADDRESS"] == (
        "registry.internal:50053"
    )


def test_inference_follows_the_registry_seeded_with_the_local_models() -> None:
    children = (*CHILDREN, ChildSpec("inference", "127.0.0.1", 6002))
    runner = Runner(RunnerConfig(children, Path("logs"), {}), io.StringIO())

    inference = runner._child_env(children[3])
    models = runner._child_env(children[2])

    assert inference["LLMGW_ROUTING__REGISTRY_ADDRESS"] == "127.0.0.1:6003"
    seed = Path(models["LLMGW_REGISTRY__SEED_FILE"])
    assert seed.name == "routing.local.yaml" and seed.is_file()
