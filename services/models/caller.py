"""Who is calling: the actor and request facts recorded with every registry change.

The gateway authenticates callers and forwards the principal in metadata:

=========================  ===========================================
``x-llmgw-actor-type``     ``api_key``, ``user``, ``service`` or ``system``
``x-llmgw-actor-id``       stable id of the principal (never a secret)
``x-llmgw-project-id``     project of the principal, if any
``x-llmgw-actor-name``     display name, if any
=========================  ===========================================

A call without them is recorded as an unnamed actor of unspecified type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llmgw.common.v1 import common_pb2

ACTOR_TYPE_HEADER = "x-llmgw-actor-type"
ACTOR_ID_HEADER = "x-llmgw-actor-id"
PROJECT_ID_HEADER = "x-llmgw-project-id"
ACTOR_NAME_HEADER = "x-llmgw-actor-name"

_ACTOR_TYPES: Mapping[str, common_pb2.ActorType.ValueType] = {
    "api_key": common_pb2.ACTOR_TYPE_API_KEY,
    "user": common_pb2.ACTOR_TYPE_USER,
    "service": common_pb2.ACTOR_TYPE_SERVICE,
    "system": common_pb2.ACTOR_TYPE_SYSTEM,
}


@dataclass(frozen=True, slots=True)
class Caller:
    """The actor of a change and the call it came from."""

    actor: common_pb2.Actor = field(default_factory=common_pb2.Actor)
    request_id: str = ""
    client_address: str = ""
    user_agent: str = ""


SYSTEM = Caller(actor=common_pb2.Actor(type=common_pb2.ACTOR_TYPE_SYSTEM, id="llmgw-models"))
"""The registry itself, e.g. when seeding from a file at start."""


def caller_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
    *,
    request_id: str,
    peer: str,
) -> Caller:
    """Read the actor headers of a call (see the module docstring)."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            values[key.lower()] = value
    actor = common_pb2.Actor(
        type=_ACTOR_TYPES.get(
            values.get(ACTOR_TYPE_HEADER, "").lower(), common_pb2.ACTOR_TYPE_UNSPECIFIED
        ),
        id=values.get(ACTOR_ID_HEADER, ""),
        project_id=values.get(PROJECT_ID_HEADER, ""),
        display_name=values.get(ACTOR_NAME_HEADER, ""),
    )
    return Caller(
        actor=actor,
        request_id=request_id,
        client_address=peer,
        user_agent=values.get("user-agent", ""),
    )
