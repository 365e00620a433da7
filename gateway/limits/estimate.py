"""How many tokens a request reserves before it runs.

The estimate is deliberately cheap: the serialized first message's length divided
by ``chars_per_token`` (input), plus the request's ``sampling.max_output_tokens``
or, when the request does not set it, a configured default (output). Methods whose
requests have no sampling parameters (``Embed``) reserve no output tokens. The
usage the upstream reports at the end of the call corrects the reservation.
"""

from __future__ import annotations

import math

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

_SAMPLING = "sampling"
_MAX_OUTPUT = "max_output_tokens"
_MAX_METHODS = 1024


class TokenEstimator:
    """Estimates the tokens of each method's first request message (see the module)."""

    def __init__(
        self,
        *,
        chars_per_token: float,
        default_max_output_tokens: int,
        pool: descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self._chars_per_token = chars_per_token
        self._default_output = default_max_output_tokens
        self._pool = pool or descriptor_pool.Default()
        self._methods: dict[str, _Method | None] = {}

    def estimate(self, method: str, message: bytes) -> int:
        """Input plus output tokens to reserve for ``message``, a request of ``method``."""
        tokens = math.ceil(len(message) / self._chars_per_token)
        shape = self._method(method)
        if shape is None:
            return tokens
        return tokens + shape.max_output_tokens(message, self._default_output)

    def _method(self, method: str) -> _Method | None:
        try:
            return self._methods[method]
        except KeyError:
            shape = _find(self._pool, method)
        if len(self._methods) < _MAX_METHODS:  # method names may come from callers
            self._methods[method] = shape
        return shape


class _Method:
    """A request type and the field names leading to its sampling parameters."""

    def __init__(self, request: type[Message], path: tuple[str, ...]) -> None:
        self._request = request
        self._path = path

    def max_output_tokens(self, message: bytes, default: int) -> int:
        try:
            current: Message = self._request.FromString(message)
        except DecodeError:
            return default
        for name in self._path:
            if not current.HasField(name):
                return default
            current = getattr(current, name)
        if not current.HasField(_MAX_OUTPUT):
            return default
        value: int = getattr(current, _MAX_OUTPUT)
        return max(value, 0)


def _find(pool: descriptor_pool.DescriptorPool, method: str) -> _Method | None:
    service_name, _, method_name = method.lstrip("/").rpartition("/")
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        return None
    found = service.methods_by_name.get(method_name)
    if found is None:
        return None
    request: Descriptor = found.input_type
    path = _sampling_path(request)
    if path is None:
        return None
    return _Method(message_factory.GetMessageClass(request), path)


def _sampling_path(request: Descriptor) -> tuple[str, ...] | None:
    if _has_sampling(request):
        return (_SAMPLING,)
    for field in request.fields:
        nested = field.message_type
        if nested is not None and not field.is_repeated and _has_sampling(nested):
            return (field.name, _SAMPLING)
    return None


def _has_sampling(message: Descriptor) -> bool:
    field: FieldDescriptor | None = message.fields_by_name.get(_SAMPLING)
    if field is None or field.message_type is None:
        return False
    return _MAX_OUTPUT in field.message_type.fields_by_name
