"""Which scope each RPC method needs.

A method needs one :class:`Scope`; a caller must hold it. The table is by gRPC
service, with the model registry split into reads and writes by method name.
Methods of services not in the table need a scope nobody holds, so they are
refused.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from llmgw.admin.v1 import admin_pb2


class Scope(enum.Enum):
    """A permission; the values are the names used in JWT scope claims."""

    INFERENCE = "inference"
    MODELS_READ = "models.read"
    MODELS_WRITE = "models.write"
    FINETUNING = "finetuning"
    USAGE_READ = "usage.read"
    ADMIN = "admin"

    @property
    def proto(self) -> admin_pb2.ApiKeyScope.ValueType:
        """The ``ApiKeyScope`` of this scope."""
        return _TO_PROTO[self]

    @classmethod
    def of_proto(cls, value: int) -> Scope | None:
        """The scope of an ``ApiKeyScope`` value, None for UNSPECIFIED or unknown values."""
        return _FROM_PROTO.get(value)

    @classmethod
    def of_claim(cls, value: str) -> Scope | None:
        """The scope named ``value`` in a token (``inference`` or ``API_KEY_SCOPE_INFERENCE``)."""
        return _BY_CLAIM.get(value)


_TO_PROTO: dict[Scope, admin_pb2.ApiKeyScope.ValueType] = {
    Scope.INFERENCE: admin_pb2.API_KEY_SCOPE_INFERENCE,
    Scope.MODELS_READ: admin_pb2.API_KEY_SCOPE_MODELS_READ,
    Scope.MODELS_WRITE: admin_pb2.API_KEY_SCOPE_MODELS_WRITE,
    Scope.FINETUNING: admin_pb2.API_KEY_SCOPE_FINETUNING,
    Scope.USAGE_READ: admin_pb2.API_KEY_SCOPE_USAGE_READ,
    Scope.ADMIN: admin_pb2.API_KEY_SCOPE_ADMIN,
}
_FROM_PROTO: dict[int, Scope] = {int(value): scope for scope, value in _TO_PROTO.items()}
_BY_CLAIM: dict[str, Scope] = {
    **{scope.value: scope for scope in Scope},
    **{admin_pb2.ApiKeyScope.Name(value): scope for scope, value in _TO_PROTO.items()},
}

ALL_SCOPES = frozenset(Scope)

_BY_SERVICE: dict[str, Scope] = {
    "llmgw.inference.v1.InferenceService": Scope.INFERENCE,
    "llmgw.finetuning.v1.FineTuningService": Scope.FINETUNING,
    "llmgw.usage.v1.UsageService": Scope.USAGE_READ,
    "llmgw.admin.v1.AdminService": Scope.ADMIN,
}
_REGISTRY = "llmgw.models.v1.ModelRegistryService"
_REGISTRY_READS = ("Get", "List", "Resolve", "Watch")


def required_scope(method: str) -> Scope | None:
    """The scope a call of ``method`` (``/package.Service/Method``) needs; None: refused."""
    service, _, name = method.lstrip("/").rpartition("/")
    if service == _REGISTRY:
        return Scope.MODELS_READ if name.startswith(_REGISTRY_READS) else Scope.MODELS_WRITE
    return _BY_SERVICE.get(service)


def scopes_of_protos(values: Iterable[int]) -> frozenset[Scope]:
    """The scopes of ``ApiKeyScope`` values, unknown ones left out."""
    return frozenset(scope for value in values if (scope := Scope.of_proto(value)) is not None)
