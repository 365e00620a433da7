"""Reading fields of decoded JSON request bodies; a wrong one raises InvalidArgument.

Each helper names the offending field (a dotted path such as ``messages[0].role``),
which the HTTP edge answers with 400 and that path as the error's ``param``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from services.kernel.errors import FieldViolation, InvalidArgument

Json = dict[str, Any]


def bad(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {description}", [FieldViolation(field, description)])


def as_object(value: object, field: str) -> Json:
    if not isinstance(value, dict):
        raise bad(field, "must be an object")
    return value


def as_list(value: object, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad(field, "must be an array")
    return value


def as_string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise bad(field, "must be a string")
    return value


def as_number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(field, "must be a number")
    return float(value)


INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def as_integer(value: object, field: str, bounds: tuple[int, int] = INT32) -> int:
    """``value`` as an integer within ``bounds`` (those of the proto field it fills)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, "must be an integer")
    low, high = bounds
    if not low <= value <= high:
        raise bad(field, f"must be between {low} and {high}")
    return value


def as_struct(value: object, field: str) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    try:
        json_format.ParseDict(as_object(value, field), struct)
    except (json_format.ParseError, RecursionError, TypeError) as exc:
        raise bad(field, "must be a JSON object nested at most 100 levels") from exc
    return struct
