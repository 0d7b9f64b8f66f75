"""Tests for analyzer.frames_hixie (hixie-75/76, hybi-00..03 sentinel framing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.events import Frame, Problem
from analyzer.frames import CutFrame
from analyzer.frames_hixie import HixieFrameDecoder
from analyzer.protocol import ProblemKind as K
from tests.frame_helpers import frames_of, kinds, norm


def b128(n: int) -> bytes:
    """The draft's base-128 length: most significant digit first, high bit = more digits."""
    digits = [n & 0x7F]
    n >>= 7
    while n:
        digits.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(digits))


def text(s: bytes) -> bytes:
    return b"\x00" + s + b"\xff"


def binary(payload: bytes, ftype: int = 0x80) -> bytes:
    return bytes([ftype]) + b128(len(payload)) + payload


CLOSE = b"\xff\x00"


def run(data: bytes, cuts: list[int] | None = None, **kw) -> tuple[list, HixieFrameDecoder]:
    d = HixieFrameDecoder(from_client=True, **kw)
    events: list = []
    if cuts is None:
        events += d.feed(data, 1, 10)
    else:
        prev = 0
        for n, c in enumerate([*sorted(cuts), len(data)], start=1):
            events += d.feed(data[prev:c], n, n * 10)
            prev = c
    events += d.finish()
    return events, d




def test_b128_encoder_matches_the_draft_example():
    # 300 = 2 * 128 + 44 → 0x82 0x2C
    assert b128(300) == b"\x82\x2c"
    assert b128(0) == b"\x00" and b128(127) == b"\x7f" and b128(128) == b"\x81\x00"


# (wire, [(opcode, payload_len, payload, header_len)], problems)
VECTORS = [
    (text(b"Hello"), [(1, 5, b"Hello", 1)], []),
    (text(b""), [(1, 0, b"", 1)], []),
    (text("héllo ✓".encode()), [(1, 10, "héllo ✓".encode(), 1)], []),
    (binary(b"abc"), [(2, 3, b"abc", 2)], []),
    (binary(bytes(range(256)) * 2), [(2, 512, bytes(range(256)) * 2, 3)], []),
    (binary(b"\xff\x00" * 100, 0xFE), [(2, 200, b"\xff\x00" * 100, 3)], []),
    (binary(b""), [(2, 0, b"", 2)], []),
    (CLOSE, [(8, 0, b"", 2)], []),
    (binary(b"q", 0xFF), [(2, 1, b"q", 2)], []),          # 0xFF with a length is not a close
    (b"\x05junk\xff", [], [K.HIXIE_FRAME_ERROR]),
    (b"\x7f\xff", [], [K.HIXIE_FRAME_ERROR]),
]


@pytest.mark.parametrize(("wire", "expected", "problems"), VECTORS)
def test_vectors(wire, expected, problems):
    events, d = run(wire)
    got = [(f.opcode, f.payload_len, f.payload, f.header_len) for f in frames_of(events)]
    assert got == expected
    assert kinds(events) == problems
    for f in frames_of(events):
        assert f.fin and not f.masked and not (f.rsv1 or f.rsv2 or f.rsv3) and f.raw_opcode is None
    assert d.bytes_consumed == len(wire)
    # and the other way: our encoder rebuilds the wire bytes from the decoded fields
    rebuilt = b"".join(text(p) if op == 1 else CLOSE if op == 8 else binary(p, wire[0])
                       for op, _n, p, _h in expected)
    if not problems:
        assert rebuilt == wire


def test_garbage_frame_type_detail_and_following_frame():
    events, _ = run(b"\x01abc\xff" + text(b"ok"))
    assert kinds(events) == [K.HIXIE_FRAME_ERROR]
    assert "found=0x01: 3 bytes up to 0xFF discarded" in events[0].detail
    assert [f.payload for f in frames_of(events)] == [b"ok"]


STREAM = b"".join([text(b"Hello"), binary(b"x" * 300), b"\x05junk\xff", text(b""),
                   binary(b"y" * 20, 0x81), text("✓".encode() * 50), CLOSE])


def test_split_at_every_byte_boundary():
    ref = norm(run(STREAM)[0])
    assert len(frames_of(ref)) == 6 and kinds(ref) == [K.HIXIE_FRAME_ERROR]
    for cut in range(1, len(STREAM)):
        assert norm(run(STREAM, [cut])[0]) == ref, cut
    events, d = run(STREAM, list(range(1, len(STREAM))))
    assert norm(events) == ref
    assert d.bytes_consumed == len(STREAM)


@given(st.lists(st.integers(0, len(STREAM)), max_size=20))
@settings(max_examples=200, deadline=None)
def test_split_invariance_random_cuts(cuts):
    assert norm(run(STREAM, cuts)[0]) == norm(run(STREAM)[0])


def test_frame_numbered_by_completing_feed():
    d = HixieFrameDecoder(from_client=False)
    assert d.feed(b"\x00Hel", 1, 100) == []
    (f,) = d.feed(b"lo\xff\x00", 2, 200)
    assert (f.record_no, f.ts_ns, f.payload) == (2, 200, b"Hello")
    (f,) = d.feed(b"x\xff", 3, 300)
    assert (f.record_no, f.payload) == (3, b"x")


def test_too_large_text_is_counted_not_kept():
    wire = text(b"a" * 5000) + text(b"small")
    for cuts in (None, list(range(100, len(wire), 100))):
        events, d = run(wire, cuts, max_payload=1000)
        assert kinds(events) == [K.FRAME_TOO_LARGE]
        big, small = frames_of(events)
        assert (big.opcode, big.payload_len, big.payload) == (1, 5000, None)
        assert small.payload == b"small"
        assert d.bytes_consumed == len(wire)


def test_too_large_text_never_buffers():
    d = HixieFrameDecoder(from_client=True, max_payload=1000)
    d.feed(b"\x00", 1, 0)
    chunk = b"z" * 65536
    ev = []
    for i in range(20):
        ev += d.feed(chunk, i, 0)
    assert kinds(ev) == [K.FRAME_TOO_LARGE]
    assert d._payload is None
    p, cut = d.finish()
    assert p.kind is K.CAPTURE_ENDS_MID_FRAME and f"found={20 * 65536}" in p.detail
    assert type(cut) is CutFrame and (cut.opcode, cut.payload_len, cut.payload) == (1, 20 * 65536, None)


def test_too_large_binary():
    wire = binary(b"b" * 3000) + CLOSE
    events, _ = run(wire, max_payload=2999)
    assert kinds(events) == [K.FRAME_TOO_LARGE]
    big, close = frames_of(events)
    assert (big.opcode, big.payload_len, big.payload, close.opcode) == (2, 3000, None, 8)


def test_length_with_too_many_digits():
    # the run of 0xFF digits is skipped whole; then up to the next 0xFF (the 0x01 frame's end)
    wire = b"\x80" + b"\xff" * 12 + b"\x01" + text(b"lost") + text(b"after")
    events, _ = run(wire)
    assert kinds(events) == [K.HIXIE_FRAME_ERROR, K.FRAMES_LOST_AFTER_GAP]
    assert [f.payload for f in frames_of(events)] == [b"after"]


def test_finish_mid_frame():
    for wire, found in ((b"\x00abc", "found=3 payload bytes"), (binary(b"x" * 300)[:50], "missing=253"),
                        (b"\x80\x81", "found=1 length bytes")):
        events, d = run(wire)
        assert kinds(events) == [K.CAPTURE_ENDS_MID_FRAME]
        assert found in events[0].detail
        assert d.bytes_consumed == len(wire)


def test_a_frame_cut_by_the_end_of_the_capture_is_a_cut_frame():
    """A text frame without its 0xFF (payload_len: the bytes seen) and a length-prefixed frame
    whose payload is short (payload_len: as declared) end as CutFrames with the record of the last
    packet; an unfinished length, or a discarded 0x01-0x7F frame, is no frame."""
    for wire, opcode, length, hlen in ((text(b"whole") + b"\x00abc", 1, 3, 1),
                                       (text(b"whole") + binary(b"x" * 300)[:50], 2, 300, 3)):
        d = HixieFrameDecoder(from_client=False)
        events = d.feed(wire[:9], 4, 400) + d.feed(wire[9:], 5, 500)
        assert [f.payload for f in frames_of(events)] == [b"whole"]
        end = d.finish()
        assert kinds(end) == [K.CAPTURE_ENDS_MID_FRAME]
        (cut,) = frames_of(end)
        assert type(cut) is CutFrame
        assert (cut.record_no, cut.ts_ns, cut.opcode, cut.fin, cut.payload_len, cut.payload,
                cut.header_len) == (5, 500, opcode, True, length, None, hlen)
    for wire in (b"\x80\x81", b"\x01discarded"):
        events, d = run(wire)
        assert not frames_of(events + d.finish())


def test_gap_inside_binary_payload_keeps_sync():
    first = binary(b"p" * 300)
    d = HixieFrameDecoder(from_client=False)
    ev = d.feed(first[:100], 1, 0)
    ev += d.gap(100, 2, 0)
    ev += d.feed(first[200:] + text(b"next"), 3, 0)
    assert kinds(ev) == []
    f, nxt = frames_of(ev)
    assert (f.payload_len, f.payload, f.record_no, nxt.payload) == (300, None, 3, b"next")


def test_gap_in_text_frame_resyncs_after_next_ff():
    d = HixieFrameDecoder(from_client=False)
    ev = d.feed(text(b"one") + b"\x00tw", 1, 0)
    ev += d.gap(5, 2, 0)
    ev += d.feed(b"tail\xff" + text(b"three"), 3, 0)
    ev += d.finish()
    assert [f.payload for f in frames_of(ev)] == [b"one", b"three"]
    assert kinds(ev) == [K.FRAMES_LOST_AFTER_GAP]
    assert "skipping 13 bytes" in ev[1].detail   # 0x00 "tw" + 5 missing + "tail" 0xFF
    assert d.bytes_consumed == 5 + 3 + 5 + 5 + 7


def test_gap_at_frame_start_accepts_0x00():
    d = HixieFrameDecoder(from_client=False)
    ev = d.feed(text(b"one"), 1, 0)
    ev += d.gap(7, 2, 0)
    ev += d.feed(text(b"two"), 3, 0)
    assert [f.payload for f in frames_of(ev)] == [b"one", b"two"]
    assert kinds(ev) == [K.FRAMES_LOST_AFTER_GAP]


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5),
       st.lists(st.integers(1, 50), max_size=3), st.integers(0, 100))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_raise(blob, cuts, gaps, max_payload):
    d = HixieFrameDecoder(from_client=False, max_payload=max_payload)
    prev, total, events = 0, 0, []
    for n, c in enumerate(sorted({min(c, len(blob)) for c in cuts} | {len(blob)})):
        events += d.feed(blob[prev:c], n + 1, 0)
        total += c - prev
        prev = c
        if n < len(gaps):
            events += d.gap(gaps[n], n + 1, 0)
            total += gaps[n]
    events += d.finish()
    assert all(isinstance(e, (Frame, Problem)) for e in events)
    assert d.bytes_consumed == total
    for f in frames_of(events):
        assert f.opcode in (1, 2, 8)
        assert f.payload is None or len(f.payload) == f.payload_len
