"""Loading the routing snapshot from YAML and resolving names against the table."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from services.inference.engine import CallContext
from services.inference.routing import Router, RoutingOptions, SnapshotError, load_snapshot
from services.kernel.errors import NotFound
from tests.unit.inference.routing_support import adapters, request, snapshot, version

YAML = """
models:
  - {name: bot, display_name: Support bot}
versions:
  - model: bot
    version: "1"
    provider: simulated
    provider_model_id: sim-small
    context_window: 4096
  - {model: bot, version: "2", provider: simulated, provider_model_id: sim-large}
aliases:
  - {model: bot, alias: production, version: "1", traffic_split: {version: "2", weight_percent: 20}}
groups:
  - name: chat
    routing_strategy: ROUTING_STRATEGY_LEAST_BUSY
    deployments: [{id: primary, model_ref: bot@production, max_input_tokens: 100}]
"""


def test_load_snapshot_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(YAML)

    loaded = load_snapshot(path)

    assert [v.provider_model_id for v in loaded.versions] == ["sim-small", "sim-large"]
    assert loaded.aliases[0].traffic_split.weight_percent == 20
    assert loaded.groups[0].deployments[0].max_input_tokens == 100


def test_load_snapshot_names_the_offending_entry(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "versions:\n"
        "  - {model: bot, version: '1', provider: simulated}\n"
        "  - {model: bot, version: '2', provider: simulated, context_windw: 5}\n"
    )

    with pytest.raises(SnapshotError, match=r"versions\[1\] \(bot/versions/2\).*context_windw"):
        load_snapshot(path)


def test_load_snapshot_reports_dangling_references(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "versions: [{model: bot, version: '1', provider: simulated}]\n"
        "aliases: [{model: bot, alias: production, version: '7'}]\n"
        "groups: [{name: g, deployments: [{id: a, model_ref: nope@x}], fallbacks: [ghost]}]\n"
    )

    with pytest.raises(SnapshotError) as raised:
        load_snapshot(path)

    message = str(raised.value)
    assert "aliases[0] (bot@production): unknown version '7'" in message
    assert "groups[0] (g): deployments[0] unknown model_ref 'nope@x'" in message
    assert "unknown fallback 'ghost'" in message


async def _served(router: Router, model: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for index in range(count):
        result = await router.complete(request(model), CallContext(f"r{index}"))
        seen[result.served_by.model_version] += 1
    return seen


async def test_names_resolve_to_alias_latest_version_and_exact_version() -> None:
    table = snapshot(
        versions=[
            version("bot", "1", provider="simulated", status="VERSION_STATUS_ACTIVE"),
            version("bot", "2", provider="simulated", status="VERSION_STATUS_ACTIVE"),
            version("bot", "3", provider="simulated", status="VERSION_STATUS_REGISTERED"),
            version("tool", "1", provider="simulated"),
        ],
        aliases=[{"model": "tool", "alias": "production", "version": "1"}],
    )
    router = await Router.create(table, RoutingOptions(), adapters=adapters())
    try:
        # No alias: the latest ACTIVE version; REGISTERED only by its exact name.
        assert await _served(router, "bot", 3) == Counter({"2": 3})
        assert await _served(router, "bot/versions/3", 1) == Counter({"3": 1})
        assert await _served(router, "tool@production", 1) == Counter({"1": 1})
        with pytest.raises(NotFound):
            await router.complete(request("bot@staging"), CallContext("x"))
    finally:
        await router.aclose()


async def test_traffic_split_follows_the_weights() -> None:
    table = snapshot(
        versions=[
            version("bot", "1", provider="simulated"),
            version("bot", "2", provider="simulated"),
        ],
        aliases=[
            {
                "model": "bot",
                "alias": "production",
                "version": "1",
                "traffic_split": {"version": "2", "weight_percent": 20},
            }
        ],
    )
    router = await Router.create(table, RoutingOptions(), adapters=adapters(), rng=random.Random(7))
    try:
        seen = await _served(router, "bot@production", 2000)
        assert seen.keys() == {"1", "2"}
        assert 0.17 < seen["2"] / 2000 < 0.23
        # The bare name uses the default alias "production" too.
        assert (await _served(router, "bot", 200)).keys() == {"1", "2"}
    finally:
        await router.aclose()


async def test_group_resolves_model_refs_and_lists_its_names() -> None:
    table = snapshot(
        versions=[version("a", provider="simulated"), version("b", provider="simulated")],
        groups=[
            {
                "name": "chat",
                "deployments": [
                    {"id": "first", "model_ref": "a", "priority": 0},
                    {"id": "second", "model_ref": "b/versions/1", "priority": 1},
                ],
            }
        ],
    )
    router = await Router.create(table, RoutingOptions(), adapters=adapters())
    try:
        result = await router.complete(request("chat"), CallContext("r"))
        assert (result.served_by.deployment_id, result.served_by.model) == ("first", "a")
        assert [m.name for m in router.list_models()] == ["a", "b", "chat"]
    finally:
        await router.aclose()


async def test_unservable_versions_are_left_out_with_a_reason() -> None:
    table = snapshot(
        versions=[
            version("a", provider="simulated", options={"bogus": "1"}),
            version("b", provider="nonexistent"),
            version("c", provider="simulated", credential={"env_var": "C_KEY"}),
            version("d", provider="simulated", credential={"env_var": "D_KEY"}),
        ]
    )
    router = await Router.create(
        table, RoutingOptions(), adapters=adapters(), env={"D_KEY": "sk-secret-value"}
    )
    try:
        problems = " ".join(router.table.problems)
        assert "a/versions/1" in problems and "bogus" in problems
        assert "b/versions/1" in problems and "nonexistent" in problems
        assert "'C_KEY' is not set" in problems
        assert "sk-secret-value" not in problems
        assert [m.name for m in router.list_models()] == ["d"]
    finally:
        await router.aclose()
