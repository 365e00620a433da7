"""What an authenticated caller may do, and the in-memory records it is decided from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.auth.scopes import Scope
from services.kernel.identity import Principal


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as the hot path needs it; ``expire_at`` is a Unix time, 0 for never."""

    id: str
    lookup: str
    secret_hash: str
    project_id: str
    display_name: str
    scopes: frozenset[Scope]
    allowed_models: tuple[str, ...]
    expire_at: float = 0.0
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A project as the hot path needs it."""

    id: str
    allowed_models: tuple[str, ...] = ()


class KeySource(Protocol):
    """API keys and projects, answered from memory."""

    def key_by_lookup(self, lookup: str) -> KeyRecord | None:
        """The key whose lookup id is ``lookup``, or None."""
        ...

    def project(self, project_id: str) -> ProjectRecord | None:
        """The project ``project_id``, or None."""
        ...


@dataclass(frozen=True, slots=True)
class NoKeys:
    """A source without keys or projects: every API key is refused."""

    def key_by_lookup(self, lookup: str) -> KeyRecord | None:
        """None."""
        return None

    def project(self, project_id: str) -> ProjectRecord | None:
        """None."""
        return None


@dataclass(frozen=True, slots=True)
class Grants:
    """An authenticated caller: who it is and what its credential allows.

    ``allowed_models`` empty allows every model (the project's list still applies).
    """

    principal: Principal
    key_id: str
    scopes: frozenset[Scope]
    allowed_models: tuple[str, ...] = ()


class GrantTable:
    """The grants of the calls in flight, from authentication to the call's end.

    The authentication filter puts a call's grants here and removes them when the
    call ends; later filters (authorization) read them.
    """

    def __init__(self) -> None:
        """An empty table."""
        self._grants: dict[int, Grants] = {}

    def put(self, call: object, grants: Grants) -> None:
        """Remember ``grants`` for ``call`` until :meth:`discard`."""
        self._grants[id(call)] = grants

    def get(self, call: object) -> Grants | None:
        """The grants of ``call``, None when it was not authenticated."""
        return self._grants.get(id(call))

    def discard(self, call: object) -> None:
        """Forget ``call``."""
        self._grants.pop(id(call), None)

    def __len__(self) -> int:
        """How many calls have grants."""
        return len(self._grants)


class KeyUsage:
    """Which API keys authenticated a call since the last :meth:`take` (for ``last_used_time``).

    Marking is a set insertion, cheap enough for every call; the admin runtime
    takes the ids periodically and stores the time.
    """

    def __init__(self) -> None:
        """Nothing used yet."""
        self._used: set[str] = set()

    def mark(self, key_id: str) -> None:
        """Note that ``key_id`` was used."""
        self._used.add(key_id)

    def take(self) -> set[str]:
        """The ids used since the last call, forgetting them."""
        used, self._used = self._used, set()
        return used
