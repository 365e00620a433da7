"""The plugin registry: lookup by name, type and API-version checks, installed plugins."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from services.kernel.plugins import PluginError, PluginGroup
from services.kernel.process import ServicePlugin, service_registry

GROUP = PluginGroup.SERVICES.value
SAMPLES = "tests.unit.kernel.plugin_samples"


def _entry(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=target, group=GROUP)


def test_loads_a_plugin_by_name_once() -> None:
    registry = service_registry([_entry("good", f"{SAMPLES}:good")])
    plugin = registry.get("good")
    assert isinstance(plugin, ServicePlugin)
    assert registry.get("good") is plugin


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (f"{SAMPLES}:future", "API version 99, but this llmgw supports version 1"),
        (f"{SAMPLES}:not_a_plugin", "is a int, not a ServicePlugin"),
        ("tests.unit.kernel.absent_module:x", "failed to import"),
    ],
)
def test_refuses_bad_plugins_with_a_clear_error(target: str, message: str) -> None:
    registry = service_registry([_entry("p", target)])
    with pytest.raises(PluginError, match=message):
        registry.get("p")


def test_unknown_name_lists_the_known_ones() -> None:
    registry = service_registry([_entry("good", f"{SAMPLES}:good")])
    with pytest.raises(PluginError, match=r"no llmgw.services plugin named 'nope' \(known: good\)"):
        registry.get("nope")


def test_every_service_process_is_installed() -> None:
    registry = service_registry()
    assert registry.names() == ["finetuning", "gateway", "inference", "models", "usage"]
    for name in registry.names():
        assert registry.get(name).name == name
