"""The Dockerfile builds the image the chart runs: multi-stage, non-root, same ports.

Building needs a Docker daemon and base images from a registry, so this checks
the Dockerfile's structure against the chart instead of building it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helm.chart import CHART_DIR, COMPONENTS, render

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str


def _instructions(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return _stages(_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8")))


def test_build_is_multi_stage_and_runtime_copies_only_the_environment(
    stages: list[list[Instruction]],
) -> None:
    assert len(stages) >= 2
    names = [re.split(r"\s+as\s+", s[0].arguments, flags=re.IGNORECASE)[-1] for s in stages]
    assert len(set(names)) == len(names)
    runtime = stages[-1]
    copies = [i.arguments for i in runtime if i.keyword in {"COPY", "ADD"}]
    assert copies
    assert all(c.startswith(f"--from={names[0]} ") for c in copies), copies
    assert not any(i.keyword == "ADD" for stage in stages for i in stage)


def test_runtime_runs_as_the_chart_user(stages: list[list[Instruction]]) -> None:
    (user,) = [i.arguments for i in stages[-1] if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    pod = render({}).values["podSecurityContext"]
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    keywords = [i.keyword for i in stages[-1]]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in {"RUN", "COPY"})


def test_entrypoint_serves_what_the_chart_asks_for(stages: list[list[Instruction]]) -> None:
    runtime = stages[-1]
    (entrypoint,) = [json.loads(i.arguments) for i in runtime if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ["llmgw"]
    deployment = render({}).deployment("inference")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in container
    assert container["args"][0] == "serve"
    (workdir,) = [i.arguments for i in runtime if i.keyword == "WORKDIR"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert workdir in mounts


def test_exposed_ports_match_the_chart(stages: list[list[Instruction]]) -> None:
    exposed = {
        int(port) for i in stages[-1] if i.keyword == "EXPOSE" for port in shlex.split(i.arguments)
    }
    merged = render({}).values
    expected = {merged["components"][name]["port"] for name in COMPONENTS}
    expected |= {merged["metricsPort"], merged["gateway"]["http"]["port"]}
    assert expected <= exposed


def test_default_image_is_the_chart_app_version() -> None:
    chart = (CHART_DIR / "Chart.yaml").read_text(encoding="utf-8")
    app_version = re.search(r'^appVersion:\s*"?([^"\n]+)"?', chart, re.MULTILINE)
    assert app_version is not None
    (container,) = render({}).deployment("gateway")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"llmgw/llmgw:{app_version.group(1)}"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"docker build -t {container['image']} ." in dockerfile


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".llmgw", "tests", "*.pem", "*.key", ".env"} <= ignored
