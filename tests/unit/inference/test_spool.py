"""The disk spool: durable appends, sealing, torn tails."""

from __future__ import annotations

from pathlib import Path

from services.inference.spool import Spool, read_segment


def payloads(segment: Path, start: int = 0) -> list[bytes]:
    return [payload for _, payload in read_segment(segment, start)]


def test_appended_records_read_back_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.is_empty()
    spool.append([b"one", b"two"])
    spool.append([b"three"])
    (segment,) = spool.seal()
    assert payloads(segment) == [b"one", b"two", b"three"]
    assert not spool.is_empty()
    spool.remove(segment)
    assert spool.is_empty() and not segment.exists()


def test_sealing_starts_a_new_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"a"])
    first = spool.seal()
    spool.append([b"b"])
    second = spool.seal()
    assert len(first) == 1 and len(second) == 2
    assert [payloads(s) for s in second] == [[b"a"], [b"b"]]


def test_segments_roll_over_at_the_size_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=16)
    for n in range(5):
        spool.append([b"x" * 20 + bytes([n])])
    segments = spool.seal()
    assert len(segments) == 5
    assert [payloads(s)[0][-1] for s in segments] == list(range(5))


def test_a_new_spool_finds_what_an_earlier_one_left(tmp_path: Path) -> None:
    Spool(tmp_path).append([b"left behind"])
    reopened = Spool(tmp_path)
    assert not reopened.is_empty()
    reopened.append([b"new"])
    segments = reopened.seal()
    assert [payloads(s) for s in segments] == [[b"left behind"], [b"new"]]


def test_a_torn_or_damaged_tail_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"good", b"also good"])
    (segment,) = spool.seal()
    intact = segment.read_bytes()
    segment.write_bytes(intact + intact[:6])  # a header cut short by a crash
    assert payloads(segment) == [b"good", b"also good"]
    damaged = bytearray(intact)
    damaged[-1] ^= 0xFF
    segment.write_bytes(bytes(damaged))
    assert payloads(segment) == [b"good"]


def test_reading_resumes_from_an_offset(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([b"a", b"b", b"c"])
    (segment,) = spool.seal()
    offsets = [offset for offset, _ in read_segment(segment)]
    assert payloads(segment, offsets[0]) == [b"b", b"c"]
