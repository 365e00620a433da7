"""Reads the ``model`` of a request from its serialized bytes, without decoding the rest.

The request type of a method comes from the protobuf descriptor pool; the field
read is a string field called ``model`` on the request itself or on one of its
singular message fields (``CompleteRequest.completion.model``,
``ChatRequest.start.model``, ``EmbedRequest.model``). Only the bytes on that path
are looked at, so a large prompt costs no decoding.

A message that is not valid protobuf wire format reads as :data:`UNREADABLE`, a
name no model can have: filters then treat the call as naming a model they do
not know (refused by an allowlist, counted by every rule), never as naming none.
"""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

_WIRE_VARINT = 0
_WIRE_FIXED64 = 1
_WIRE_LENGTH_DELIMITED = 2
_WIRE_START_GROUP = 3
_WIRE_END_GROUP = 4
_WIRE_FIXED32 = 5
_MAX_GROUP_DEPTH = 64
UNREADABLE = "<unreadable>"
"""What :meth:`ModelFieldReader.read` answers for a message it cannot parse."""
_MODEL = "model"
_FALLBACKS = "fallback_models"
_MAX_DEPTH = 4
_MAX_METHODS = 1024


class ModelFieldReader:
    """Finds and reads the model field of each method's request messages."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()
        self._paths: dict[str, tuple[int, ...] | None] = {}

    def path(self, method: str) -> tuple[int, ...] | None:
        """Field numbers leading to the model string of ``method``'s request, or None."""
        try:
            return self._paths[method]
        except KeyError:
            path = self._find_path(method)
        if len(self._paths) < _MAX_METHODS:  # method names may come from callers
            self._paths[method] = path
        return path

    def read(self, method: str, message: bytes) -> str:
        """The model named in ``message`` (a request of ``method``), ``""`` when it names
        none, :data:`UNREADABLE` when it is not a valid message."""
        path = self.path(method)
        if path is None:
            return ""
        try:
            return _read_string(memoryview(message), path)
        except (IndexError, ValueError, UnicodeDecodeError):
            return UNREADABLE

    def fallbacks(self, method: str, message: bytes) -> tuple[str, ...] | None:
        """The models a request of ``method`` asks to fall back to (``fallback_models``
        of its options), or None when ``message`` does not parse.

        Unlike :meth:`read` this decodes the whole message; it is meant for callers
        that must vouch for every model a request may reach.
        """
        request_type = self._request_type(method)
        if request_type is None:
            return ()
        try:
            request = message_factory.GetMessageClass(request_type).FromString(message)
        except (DecodeError, RecursionError):
            return None
        return tuple(_repeated_strings(request, _FALLBACKS, _MAX_DEPTH))

    def _request_type(self, method: str) -> Descriptor | None:
        service_name, _, method_name = method.lstrip("/").rpartition("/")
        try:
            service = self._pool.FindServiceByName(service_name)
        except KeyError:
            return None
        method_descriptor = service.methods_by_name.get(method_name)
        return None if method_descriptor is None else method_descriptor.input_type

    def _find_path(self, method: str) -> tuple[int, ...] | None:
        request = self._request_type(method)
        if request is None:
            return None
        direct = _model_field(request)
        if direct is not None:
            return (direct,)
        for field in request.fields:
            nested_type = field.message_type
            if nested_type is not None and not _is_repeated(field):
                nested = _model_field(nested_type)
                if nested is not None:
                    return (field.number, nested)
        return None


def _repeated_strings(message: Message, name: str, depth: int) -> list[str]:
    """Every value of the repeated string fields called ``name`` in ``message`` and its
    set singular message fields, ``depth`` levels down."""
    found: list[str] = []
    for field, value in message.ListFields():
        if field.name == name and field.type == FieldDescriptor.TYPE_STRING:
            found.extend(value if _is_repeated(field) else [value])
        elif field.message_type is not None and not _is_repeated(field) and depth > 0:
            found.extend(_repeated_strings(value, name, depth - 1))
    return found


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _model_field(message: Descriptor) -> int | None:
    field = message.fields_by_name.get(_MODEL)
    if field is None or field.type != FieldDescriptor.TYPE_STRING or _is_repeated(field):
        return None
    number: int = field.number
    return number


def _read_string(data: memoryview, path: tuple[int, ...]) -> str:
    """The last value on ``path`` (protobuf's rule for singular fields), or ``""``."""
    found = ""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _WIRE_VARINT:
            _, position = _varint(data, position)
        elif wire_type == _WIRE_FIXED64:
            position += 8
        elif wire_type == _WIRE_FIXED32:
            position += 4
        elif wire_type == _WIRE_LENGTH_DELIMITED:
            length, position = _varint(data, position)
            end = position + length
            if end > len(data):
                raise ValueError("truncated message")
            if number == path[0]:
                chunk = data[position:end]
                value = bytes(chunk).decode() if len(path) == 1 else _read_string(chunk, path[1:])
                found = value or found
            position = end
        elif wire_type == _WIRE_START_GROUP:
            position = _skip_group(data, position, number)
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    if position != len(data):
        raise ValueError("truncated message")
    return found


def _skip_group(data: memoryview, position: int, number: int) -> int:
    """The position after the end of the group ``number`` that starts at ``position``
    (the legacy group encoding, which parsers still skip as an unknown field)."""
    open_groups = [number]
    while open_groups:
        if len(open_groups) > _MAX_GROUP_DEPTH:
            raise ValueError("groups nested too deep")
        key, position = _varint(data, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == _WIRE_VARINT:
            _, position = _varint(data, position)
        elif wire_type == _WIRE_FIXED64:
            position += 8
        elif wire_type == _WIRE_FIXED32:
            position += 4
        elif wire_type == _WIRE_LENGTH_DELIMITED:
            length, position = _varint(data, position)
            position += length
        elif wire_type == _WIRE_START_GROUP:
            open_groups.append(field)
        elif wire_type == _WIRE_END_GROUP and field == open_groups[-1]:
            open_groups.pop()
        else:
            raise ValueError("malformed group")
        if position > len(data):
            raise ValueError("truncated message")
    return position


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
