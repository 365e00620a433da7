"""Who is calling: the actor and request facts recorded with every registry change.

The gateway authenticates callers and forwards the principal in metadata (see
:mod:`services.kernel.identity`). A call without it is recorded as an unnamed
actor of unspecified type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llmgw.common.v1 import common_pb2
from services.kernel.identity import principal_of

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
    pairs = list(metadata or ())
    principal = principal_of(pairs)
    actor = common_pb2.Actor(
        type=_ACTOR_TYPES.get(principal.actor_type, common_pb2.ACTOR_TYPE_UNSPECIFIED),
        id=principal.actor_id,
        project_id=principal.project_id,
        display_name=principal.display_name,
    )
    user_agent = next(
        (value for key, value in pairs if key == "user-agent" and isinstance(value, str)), ""
    )
    return Caller(actor=actor, request_id=request_id, client_address=peer, user_agent=user_agent)
