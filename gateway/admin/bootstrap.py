"""The first API key of an empty installation, so a newcomer can make a first call.

When no API key exists (revoked ones count), :func:`bootstrap_admin_key` creates
the project (if absent) and a key with every scope, and writes the key to a file
readable only by its owner. When that file already holds a well-formed key (e.g.
a Kubernetes Secret mounted there), that key is installed instead and the file is
left alone. The secret is never logged. With several replicas starting at once on
an empty database each may create one; every such key works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from gateway.admin.api import AdminApi
from gateway.auth import api_keys
from gateway.auth.scopes import Scope
from llmgw.admin.v1 import admin_pb2
from services.kernel.errors import AlreadyExists

_log = logging.getLogger(__name__)


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` (mode 0600, parents created), replacing any old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, f"{secret}\n".encode())
    finally:
        os.close(descriptor)


def _read_key(path: Path) -> api_keys.NewApiKey | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return api_keys.existing_api_key(text.strip())


async def bootstrap_admin_key(api: AdminApi, key_file: Path, project_id: str) -> str | None:
    """Create the bootstrap key when there is no key at all; returns its id, or None."""
    if await api.count_api_keys():
        return None
    with contextlib.suppress(AlreadyExists):
        await api.create_project(admin_pb2.Project(id=project_id, display_name="Default project"))
    provisioned = await asyncio.to_thread(_read_key, key_file)
    key, secret = await api.create_api_key(
        admin_pb2.ApiKey(
            display_name="bootstrap admin key",
            project_id=project_id,
            scopes=[scope.proto for scope in Scope],
        ),
        provisioned,
    )
    if provisioned is None:
        await asyncio.to_thread(write_secret, key_file, secret)
    _log.info(
        "created the bootstrap admin API key",
        extra={"api_key_id": key.id, "prefix": key.prefix, "file": str(key_file)},
    )
    return key.id
