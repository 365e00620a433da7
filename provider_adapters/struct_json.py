"""Conversions between ``google.protobuf.Struct`` and plain JSON values for adapters.

A ``Struct`` stores every number as a double, so ``{"maxItems": 3}`` comes back
as ``3.0`` from :func:`google.protobuf.json_format.MessageToDict`. Providers
validate JSON schemas strictly, so :func:`struct_to_dict` gives integral numbers
back as ``int``; non-integral numbers, strings, booleans and nulls are unchanged.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """``struct`` as a JSON object, with integral numbers as ``int``."""
    decoded = _integral(json_format.MessageToDict(struct))
    assert isinstance(decoded, dict)
    return decoded


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value
