"""The base model lookup, through the registry's gRPC API (``llmgw.models.v1``).

The registry's NOT_FOUND and INVALID_ARGUMENT answers become the fine-tuning
service's own :class:`~services.kernel.errors.NotFound` /
:class:`~services.kernel.errors.InvalidArgument` on the request field that
named the model; an unreachable registry is UNAVAILABLE.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc import aio

from llmgw.models.v1 import models_pb2, models_pb2_grpc
from services.kernel.errors import FieldViolation, InvalidArgument, NotFound, Unavailable


@dataclass(frozen=True, slots=True)
class BaseModel:
    """What a base model reference resolved to: the model and the version to train."""

    model: str
    version: models_pb2.ModelVersion


class RegistryClient:
    """Resolves references on one channel to the registry."""

    def __init__(self, address: str, timeout_seconds: float) -> None:
        """Talk to the registry at ``address`` (``host:port``); connects lazily."""
        self._channel = aio.insecure_channel(address)
        self._stub = models_pb2_grpc.ModelRegistryServiceStub(self._channel)
        self._timeout = timeout_seconds

    async def resolve(self, ref: str, field: str) -> BaseModel:
        """The model and first target version of ``ref``; errors name ``field``."""
        try:
            response = await self._stub.Resolve(
                models_pb2.ResolveRequest(ref=ref), timeout=self._timeout
            )
        except aio.AioRpcError as exc:
            raise _mapped(exc, ref, field, "base model") from None
        if not response.deployments:
            raise NotFound(
                "model", ref, f"{ref!r} resolves to no version", reason="MODEL_NOT_FOUND"
            )
        version = response.deployments[0].version
        return BaseModel(model=response.model or version.model, version=version)

    async def require_model(self, name: str, field: str) -> None:
        """NOT_FOUND unless the registry has a model called ``name``."""
        try:
            await self._stub.GetModel(models_pb2.GetModelRequest(name=name), timeout=self._timeout)
        except aio.AioRpcError as exc:
            raise _mapped(exc, name, field, "result model") from None

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()


def _mapped(exc: aio.AioRpcError, ref: str, field: str, what: str) -> Exception:
    code = exc.code()
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFound(
            "model", ref, f"{what} {ref!r} is not in the registry", reason="MODEL_NOT_FOUND"
        )
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(
            f"{what} {ref!r} is not a valid reference",
            [FieldViolation(field, exc.details() or "not a valid reference", "INVALID_MODEL_REF")],
            reason="INVALID_MODEL_REF",
        )
    return Unavailable(
        f"the model registry did not answer ({code.name})", reason="REGISTRY_UNAVAILABLE"
    )
