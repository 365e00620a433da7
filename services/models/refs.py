"""Names and references of registry resources.

A model reference is one of ``model@alias``, ``model/versions/<version>`` or a
bare name (a model, meaning its default alias, or a model group).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
"""Model and group names: lower case letters, digits, '-', '_' and '.', 1 to 63 characters."""
ALIAS_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""Alias names: lower case letters, digits and '-', 1 to 63 characters."""
VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
"""Version ids: letters, digits, '.', '_' and '-', 1 to 63 characters."""
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
"""Environment variable names a credential may refer to."""

DEFAULT_ALIAS = "production"
"""The alias a bare model name means when the model sets no ``default_alias``."""

VERSIONS_SEPARATOR = "/versions/"


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference: exactly one of ``alias`` and ``version`` is set, or neither
    for a bare name (a model or a group)."""

    name: str
    alias: str = ""
    version: str = ""

    @property
    def bare(self) -> bool:
        """Whether the reference is a bare name."""
        return not self.alias and not self.version


def parse_ref(ref: str) -> Ref | None:
    """Parse ``ref``; ``None`` when it is not a well-formed reference."""
    if VERSIONS_SEPARATOR in ref:
        name, _, version = ref.partition(VERSIONS_SEPARATOR)
        ok = MODEL_NAME.match(name) and VERSION_ID.match(version)
        return Ref(name, version=version) if ok else None
    if "@" in ref:
        name, _, alias = ref.partition("@")
        ok = MODEL_NAME.match(name) and ALIAS_NAME.match(alias)
        return Ref(name, alias=alias) if ok else None
    return Ref(ref) if MODEL_NAME.match(ref) else None


def version_name(model: str, version: str) -> str:
    """``models/<model>/versions/<version>``, the resource name of a version."""
    return f"models/{model}/versions/{version}"


def alias_name(model: str, alias: str) -> str:
    """``models/<model>/aliases/<alias>``, the resource name of an alias."""
    return f"models/{model}/aliases/{alias}"


def model_name(model: str) -> str:
    """``models/<model>``, the resource name of a model."""
    return f"models/{model}"


def group_name(group: str) -> str:
    """``groups/<group>``, the resource name of a model group."""
    return f"groups/{group}"
