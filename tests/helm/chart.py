"""Rendering the chart offline, the way ``helm template`` does, with Helm's own engine.

Helm's Go SDK is loaded as a shared library (``helm_python``), so neither a ``helm``
binary nor a cluster is needed. :func:`render` returns the parsed objects of one
release; the helpers below pick objects and containers out of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "llmgw"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "demo"
NAMESPACE = "llm"
COMPONENTS = ("gateway", "inference", "models", "finetuning", "usage")

Manifest = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Release:
    """One rendered release: its merged values, its objects and its NOTES.txt."""

    values: dict[str, Any]
    objects: tuple[Manifest, ...]
    notes: str

    def of_kind(self, kind: str) -> list[Manifest]:
        """Every object of ``kind``."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest:
        """The object of ``kind`` called ``name``; KeyError when there is none."""
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind} named {name}")

    def deployment(self, component: str) -> Manifest:
        """The Deployment of one component."""
        return self.named("Deployment", f"{RELEASE}-llmgw-{component}")

    def config_map(self) -> Manifest:
        """The ConfigMap holding the processes' configuration file."""
        return self.named("ConfigMap", f"{RELEASE}-llmgw-config")


def load_values(name: str) -> dict[str, Any]:
    """The values file ``tests/helm/values/<name>.yaml``."""
    loaded = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return dict(loaded or {})


def render(values: Mapping[str, Any], *, is_upgrade: bool = False) -> Release:
    """Render the chart with ``values`` after checking them against values.schema.json.

    Raises ``helm_python.HelmValuesError`` for values the schema refuses and
    ``helm_python.HelmRenderError`` for a template that fails.
    """
    with helm.Chart.load(CHART_DIR) as chart:
        merged = chart.merge_values(dict(values))
        chart.validate_schema(merged)
        rendered = chart.render(
            dict(values),
            name=RELEASE,
            namespace=NAMESPACE,
            is_install=not is_upgrade,
            is_upgrade=is_upgrade,
        )
    objects: list[Manifest] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Release(values=merged, objects=tuple(objects), notes=notes)


def pod_spec(obj: Manifest) -> dict[str, Any]:
    """The pod spec of a Deployment or Job."""
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def containers(obj: Manifest) -> Iterator[dict[str, Any]]:
    """Every container and init container of a Deployment or Job."""
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def walk_strings(node: Any) -> Iterator[str]:
    """Every string inside a parsed document: keys and values, at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from walk_strings(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)
