"""Who is calling, as the gateway vouches for it: the identity metadata of a call.

The gateway authenticates a caller and forwards its principal to the services
under these keys. It drops every ``llmgw-`` key a client sends (see
``gateway.metadata``), so a service can trust them:

=====================  =====================================================
``llmgw-actor-type``   ``api_key``, ``user``, ``service`` or ``system``
``llmgw-actor-id``     stable id of the principal (an API key's id, never a secret)
``llmgw-project-id``   project of the principal, if any
``llmgw-actor-name``   display name, if any
=====================  =====================================================

A call without them (e.g. straight to a service inside the cluster) has an
anonymous principal. Values are percent-encoded (UTF-8) wherever they hold
anything but printable ASCII, since gRPC metadata values must be; ``%`` itself
is always encoded, so decoding is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

ACTOR_TYPE = "llmgw-actor-type"
ACTOR_ID = "llmgw-actor-id"
PROJECT_ID = "llmgw-project-id"
ACTOR_NAME = "llmgw-actor-name"
API_KEY_ACTOR = "api_key"
"""The actor type of a caller authenticated by an API key."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one call; empty fields when unknown."""

    actor_type: str = ""
    actor_id: str = ""
    project_id: str = ""
    display_name: str = ""

    @property
    def api_key_id(self) -> str:
        """The id of the API key that made the call, or ``""`` for other principals."""
        return self.actor_id if self.actor_type == API_KEY_ACTOR else ""

    def to_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata the gateway adds to a forwarded call for this principal."""
        pairs = (
            (ACTOR_TYPE, self.actor_type),
            (ACTOR_ID, self.actor_id),
            (PROJECT_ID, self.project_id),
            (ACTOR_NAME, self.display_name),
        )
        return tuple((key, _encode(value)) for key, value in pairs if value)


def principal_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
    """The :class:`Principal` named in a call's invocation metadata."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str) and key in _KEYS:
            values[key] = unquote(value)
    return Principal(
        actor_type=values.get(ACTOR_TYPE, "").lower(),
        actor_id=values.get(ACTOR_ID, ""),
        project_id=values.get(PROJECT_ID, ""),
        display_name=values.get(ACTOR_NAME, ""),
    )


_KEYS = frozenset({ACTOR_TYPE, ACTOR_ID, PROJECT_ID, ACTOR_NAME})
_PLAIN = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _encode(value: str) -> str:
    if value.isascii() and value.isprintable() and "%" not in value:
        return value  # the common case, left as it is without building a new string
    return quote(value, safe=_PLAIN)
