"""The event wire format: protobuf value plus CloudEvents binary-mode headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import descriptor_pool, duration_pb2, message_factory
from google.protobuf.duration_pb2 import Duration

from llmgw.events.v1 import events_pb2
from services.kernel.events import EventDecodeError, EventTypeRegistry, decode_event, encode_event
from services.kernel.events.cloudevents import format_time, parse_time

REGISTRY = EventTypeRegistry.from_module(events_pb2)
MOMENT = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def _headers(encoded_headers: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {name: value.decode() for name, value in encoded_headers}


def test_registry_from_module_holds_the_events_only() -> None:
    assert "llmgw.events.v1.UsageRecorded" in REGISTRY.types
    assert "llmgw.events.v1.EventMetadata" not in REGISTRY.types


def test_encode_sets_binary_mode_headers_from_metadata() -> None:
    event = events_pb2.UsageRecorded(request_id="req-1")
    event.metadata.id = "evt-1"
    event.metadata.source = "//llmgw/inference"
    event.metadata.subject = "req-1"
    event.metadata.time.FromDatetime(MOMENT)

    encoded = encode_event(event, default_source="//unused")

    assert _headers(encoded.headers) == {
        "ce_specversion": "1.0",
        "ce_id": "evt-1",
        "ce_source": "//llmgw/inference",
        "ce_type": "llmgw.events.v1.UsageRecorded",
        "ce_time": "2025-03-04T05:06:07.123456Z",
        "ce_subject": "req-1",
        "content-type": "application/protobuf",
    }
    assert events_pb2.UsageRecorded.FromString(encoded.value) == event
    assert encoded.record_key(None) == b"req-1"
    assert encoded.record_key(b"explicit") == b"explicit"


def test_encode_fills_missing_metadata_on_a_copy() -> None:
    event = events_pb2.UsageRecorded(request_id="req-2")

    encoded = encode_event(
        event, default_source="//llmgw/tests", now=lambda: MOMENT, new_id=lambda: "generated"
    )

    assert not event.HasField("metadata"), "the caller's message must not change"
    sent = events_pb2.UsageRecorded.FromString(encoded.value)
    assert sent.metadata.id == "generated"
    assert sent.metadata.source == "//llmgw/tests"
    assert sent.metadata.time.ToDatetime(tzinfo=UTC) == MOMENT
    headers = _headers(encoded.headers)
    assert headers["ce_id"] == "generated"
    assert "ce_subject" not in headers
    assert encoded.record_key(None) is None


def test_round_trip() -> None:
    event = events_pb2.UsageRecorded(request_id="req-3", project_id="p")
    encoded = encode_event(event, default_source="//llmgw/tests")

    decoded = decode_event(encoded.value, encoded.headers, REGISTRY)

    assert decoded.attributes == encoded.attributes
    assert isinstance(decoded.event, events_pb2.UsageRecorded)
    assert decoded.event.request_id == "req-3"
    assert decoded.event.metadata.id == decoded.attributes.id


def test_a_header_without_a_value_is_ignored() -> None:
    event = events_pb2.UsageRecorded(request_id="req-4")
    encoded = encode_event(event, default_source="//llmgw/tests")

    decoded = decode_event(encoded.value, [*encoded.headers, ("x-empty", None)], REGISTRY)

    assert decoded.attributes == encoded.attributes


def test_message_without_metadata_gets_generated_attributes() -> None:
    encoded = encode_event(Duration(seconds=3), default_source="//llmgw/tests")
    decoded = decode_event(encoded.value, encoded.headers, EventTypeRegistry([Duration]))

    assert decoded.event == Duration(seconds=3)
    assert decoded.attributes.type == "google.protobuf.Duration"
    assert decoded.attributes.source == "//llmgw/tests"
    assert decoded.attributes.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("ce_specversion", b"0.3"), "ce_specversion"),
        (("ce_type", b"llmgw.events.v1.Nope"), "unknown event type"),
        (("ce_id", b""), "missing CloudEvents headers: ce_id"),
        (("content-type", b"application/json"), "content-type"),
        (("ce_time", b"yesterday"), "RFC 3339"),
    ],
)
def test_decode_refuses_bad_headers(change: tuple[str, bytes], message: str) -> None:
    encoded = encode_event(events_pb2.UsageRecorded(), default_source="//llmgw/tests")
    headers = [(n, change[1] if n == change[0] else v) for n, v in encoded.headers]

    with pytest.raises(EventDecodeError, match=message):
        decode_event(encoded.value, headers, REGISTRY)


def test_decode_refuses_a_broken_payload() -> None:
    encoded = encode_event(events_pb2.UsageRecorded(), default_source="//llmgw/tests")

    with pytest.raises(EventDecodeError, match="does not parse"):
        decode_event(b"\xff\xff\xff", encoded.headers, REGISTRY)


def test_registry_refuses_two_classes_for_one_name() -> None:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
    clone = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.protobuf.Duration"))
    with pytest.raises(ValueError, match="two different classes"):
        EventTypeRegistry([Duration, clone])


def test_time_format_round_trips_in_utc() -> None:
    assert format_time(MOMENT) == "2025-03-04T05:06:07.123456Z"
    assert parse_time("2025-03-04T07:06:07.123456+02:00") == MOMENT
