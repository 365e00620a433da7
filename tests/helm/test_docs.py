"""The chart's README documents every value in its values table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.helm.chart import CHART_DIR


def _paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _paths(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def test_values_table_names_every_value() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    assert documented
    missing = []
    for path in _paths(values):
        generic = re.sub(r"^components\.[a-z]+\.", "components.<name>.", path)
        parts = generic.split(".")
        prefixes = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        if not prefixes & documented:
            missing.append(path)
    assert missing == []
