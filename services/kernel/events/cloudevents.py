"""The wire format of events: protobuf payload plus CloudEvents binary-mode headers.

Every event is one Kafka record (CloudEvents Kafka protocol binding, binary
content mode):

- value: the event message serialised with protobuf;
- headers, UTF-8 strings: ``ce_specversion`` = ``1.0``, ``ce_id``,
  ``ce_source``, ``ce_type`` (the message's full proto name, e.g.
  ``llmgw.events.v1.UsageRecorded``), ``ce_time`` (RFC 3339, UTC),
  ``ce_subject`` when the event has one, and ``content-type`` =
  ``application/protobuf``.

Event messages carry a ``metadata`` field (``EventMetadata{id, time, source,
subject}``). :func:`encode_event` fills whichever of id, time and source are
unset on a copy of the event, so the payload and the headers always agree;
messages without ``metadata`` are accepted too, with generated attributes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"

HEADER_SPEC_VERSION = "ce_specversion"
HEADER_ID = "ce_id"
HEADER_SOURCE = "ce_source"
HEADER_TYPE = "ce_type"
HEADER_TIME = "ce_time"
HEADER_SUBJECT = "ce_subject"
HEADER_CONTENT_TYPE = "content-type"

Headers = Sequence[tuple[str, bytes | None]]


class EventDecodeError(ValueError):
    """A record is not a well-formed llmgw event, or its type is unknown here."""


@dataclass(frozen=True, slots=True)
class EventAttributes:
    """The CloudEvents context attributes of one event."""

    id: str
    type: str
    source: str
    time: datetime
    subject: str | None


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event ready for the wire: record value and headers."""

    attributes: EventAttributes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def record_key(self, key: bytes | None) -> bytes | None:
        """``key`` when given, else the subject (UTF-8) so one subject stays in order."""
        if key is not None:
            return key
        subject = self.attributes.subject
        return subject.encode("utf-8") if subject else None


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """An event read from the wire."""

    attributes: EventAttributes
    event: Message


class EventTypeRegistry:
    """Maps a ``ce_type`` to the message class that decodes it.

    Built once from the event classes a consumer understands; read-only after.
    """

    def __init__(self, message_types: Iterable[type[Message]]) -> None:
        """Register each class under its full proto name; duplicates must agree."""
        by_name: dict[str, type[Message]] = {}
        for message_type in message_types:
            name = message_type.DESCRIPTOR.full_name
            if by_name.setdefault(name, message_type) is not message_type:
                raise ValueError(f"two different classes registered for {name}")
        self._by_name: Mapping[str, type[Message]] = by_name

    @classmethod
    def from_module(cls, module: ModuleType) -> EventTypeRegistry:
        """Register the events of a generated ``*_pb2`` module.

        An event is a top-level message with a ``metadata`` message field.
        """
        classes = (getattr(module, name) for name in module.DESCRIPTOR.message_types_by_name)
        return cls(c for c in classes if _has_metadata_field(c))

    @property
    def types(self) -> frozenset[str]:
        """The ``ce_type`` values this registry decodes."""
        return frozenset(self._by_name)

    def message_type(self, ce_type: str) -> type[Message] | None:
        """The class for ``ce_type``, or ``None`` when it is not registered."""
        return self._by_name.get(ce_type)


def encode_event(
    event: Message,
    *,
    default_source: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> EncodedEvent:
    """Serialise ``event`` with its CloudEvents headers.

    Unset ``metadata.id``, ``metadata.time`` and ``metadata.source`` are
    filled (on a copy; ``event`` is not changed) from ``new_id``, ``now`` and
    ``default_source``.
    """
    stamped = _stamped(event, default_source, now, new_id)
    metadata = _metadata_of(stamped)
    if metadata is not None:
        attributes = EventAttributes(
            id=metadata.id,
            type=stamped.DESCRIPTOR.full_name,
            source=metadata.source,
            time=metadata.time.ToDatetime(tzinfo=UTC),
            subject=metadata.subject or None,
        )
    else:
        attributes = EventAttributes(
            id=new_id(),
            type=stamped.DESCRIPTOR.full_name,
            source=default_source,
            time=now(),
            subject=None,
        )
    headers = [
        (HEADER_SPEC_VERSION, SPEC_VERSION),
        (HEADER_ID, attributes.id),
        (HEADER_SOURCE, attributes.source),
        (HEADER_TYPE, attributes.type),
        (HEADER_TIME, format_time(attributes.time)),
    ]
    if attributes.subject:
        headers.append((HEADER_SUBJECT, attributes.subject))
    headers.append((HEADER_CONTENT_TYPE, CONTENT_TYPE))
    return EncodedEvent(
        attributes=attributes,
        value=stamped.SerializeToString(deterministic=True),
        headers=tuple((name, value.encode("utf-8")) for name, value in headers),
    )


def decode_event(
    value: bytes | None, headers: Headers, registry: EventTypeRegistry
) -> DecodedEvent:
    """Parse a record written by :func:`encode_event` (or any conforming producer).

    Raises :class:`EventDecodeError` when a required header is missing or
    wrong, the type is not in ``registry``, or the payload does not parse.
    """
    found = _header_map(headers)
    if found.get(HEADER_SPEC_VERSION) != SPEC_VERSION:
        raise EventDecodeError(
            f"unsupported {HEADER_SPEC_VERSION}: {found.get(HEADER_SPEC_VERSION)!r}"
        )
    content_type = found.get(HEADER_CONTENT_TYPE, CONTENT_TYPE)
    if content_type.split(";")[0].strip() != CONTENT_TYPE:
        raise EventDecodeError(f"unsupported content-type {content_type!r}")
    missing = [h for h in (HEADER_ID, HEADER_SOURCE, HEADER_TYPE) if not found.get(h)]
    if missing:
        raise EventDecodeError(f"missing CloudEvents headers: {', '.join(missing)}")
    ce_type = found[HEADER_TYPE]
    message_type = registry.message_type(ce_type)
    if message_type is None:
        raise EventDecodeError(f"unknown event type {ce_type!r}")
    event = message_type()
    try:
        event.ParseFromString(value or b"")
    except DecodeError as exc:
        raise EventDecodeError(
            f"payload of {ce_type} event {found[HEADER_ID]} does not parse"
        ) from exc
    raw_time = found.get(HEADER_TIME)
    attributes = EventAttributes(
        id=found[HEADER_ID],
        type=ce_type,
        source=found[HEADER_SOURCE],
        time=parse_time(raw_time) if raw_time else datetime.now(UTC),
        subject=found.get(HEADER_SUBJECT) or None,
    )
    return DecodedEvent(attributes=attributes, event=event)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, e.g. ``2025-01-02T03:04:05.123456Z``."""
    timestamp = Timestamp()
    timestamp.FromDatetime(moment.astimezone(UTC))
    return timestamp.ToJsonString()


def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 time into an aware UTC datetime; :class:`EventDecodeError` if bad."""
    timestamp = Timestamp()
    try:
        timestamp.FromJsonString(value)
    except ValueError as exc:
        raise EventDecodeError(f"{HEADER_TIME} is not RFC 3339: {value!r}") from exc
    return timestamp.ToDatetime(tzinfo=UTC)


def _header_map(headers: Headers) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, raw in headers:
        if raw is None:
            continue  # Kafka allows a header without a value: it carries nothing here
        try:
            found[name.lower()] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventDecodeError(f"header {name} is not UTF-8") from exc
    return found


def _has_metadata_field(message_type: type[Message]) -> bool:
    field = message_type.DESCRIPTOR.fields_by_name.get("metadata")
    return field is not None and field.message_type is not None


def _metadata_of(event: Message) -> Any | None:
    """The event's ``metadata`` sub-message, when its type has that field."""
    if not _has_metadata_field(type(event)):
        return None
    return getattr(event, "metadata")  # noqa: B009  generated attribute, unknown to the type checker


def _stamped(
    event: Message,
    default_source: str,
    now: Callable[[], datetime],
    new_id: Callable[[], str],
) -> Message:
    metadata = _metadata_of(event)
    if metadata is None:
        return event
    needs_time = not metadata.HasField("time")
    if metadata.id and metadata.source and not needs_time:
        return event
    stamped = type(event)()
    stamped.CopyFrom(event)
    metadata = _metadata_of(stamped)
    assert metadata is not None  # same type as ``event``
    if not metadata.id:
        metadata.id = new_id()
    if not metadata.source:
        metadata.source = default_source
    if needs_time:
        metadata.time.FromDatetime(now().astimezone(UTC))
    return stamped
