"""Tests for analyzer.frames (RFC 6455 / hybi framing) and analyzer.masking."""

from __future__ import annotations

import os
import random
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from analyzer import frames as frames_mod
from analyzer.events import Frame, Problem
from analyzer.frames import CutFrame, FrameDecoder, parse_close_payload
from analyzer.masking import unmask, unmask_inplace
from analyzer.protocol import ProblemKind as K
from tests.frame_helpers import frames_of, kinds, norm

KEY = b"\x37\xfa\x21\x3d"   # the RFC 6455 Section 5.7 masking key


# --- helpers --------------------------------------------------------------------------------

def encode(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, key: bytes | None = None,
           form: int | None = None) -> bytes:
    """An independent reference encoder; `form` forces a 7/16/64-bit length encoding."""
    n = len(payload)
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if key is not None else 0
    if form == 7:
        head = bytes([b0, m | n])
    elif form == 16:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def decode_all(data: bytes, *, from_client: bool, cuts: list[int] | None = None, **kw) -> list:
    d = FrameDecoder(from_client=from_client, **kw)
    events = []
    if cuts is None:
        events += d.feed(data, 1, 10)
    else:
        prev = 0
        for n, c in enumerate([*sorted(cuts), len(data)], start=1):
            events += d.feed(data[prev:c], n, n * 10)
            prev = c
    events += d.finish()
    return events




def ws_parse(data: bytes, *, mask: bool) -> WsFrame:
    """websockets' own parser, as a second opinion on the vectors."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    gen = WsFrame.parse(reader.read_exact, mask=mask, max_size=None)
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("websockets wanted more data")


# --- masking --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 511, 512, 513, 4096, 1 << 20])
def test_unmask_matches_per_byte_reference(n):
    data = os.urandom(n)
    ref = bytes(b ^ KEY[i % 4] for i, b in enumerate(data))
    assert unmask(data, KEY) == ref
    assert unmask(bytearray(data), KEY) == ref
    assert unmask(memoryview(data), KEY) == ref
    assert unmask(ref, KEY) == data
    for offset in range(5):
        buf = bytearray(data)
        unmask_inplace(buf, KEY, offset)
        assert buf == unmask(data, KEY, offset)


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
@settings(max_examples=100)
def test_unmask_chunk_by_chunk_with_offset(data, cuts):
    whole = unmask(data, KEY)
    parts, prev = [], 0
    for c in [*sorted(min(c, len(data)) for c in cuts), len(data)]:
        parts.append(unmask(data[prev:c], KEY, prev))
        prev = c
    assert b"".join(parts) == whole


def test_unmask_rfc_example_and_bad_key():
    assert unmask(b"\x7f\x9f\x4d\x51\x58", KEY) == b"Hello"
    with pytest.raises(ValueError):
        unmask(b"abc", b"\x01\x02")


# --- RFC 6455 Section 5.7 vectors, checked both ways ----------------------------------------

HELLO_MASKED = b"\x7f\x9f\x4d\x51\x58"
PAYLOAD_256 = bytes(range(256))
PAYLOAD_64K = bytes(i * 7 % 251 for i in range(65536))

# (name, from_client, wire bytes, [(opcode, fin, masked, payload_len, payload, header_len)])
RFC_VECTORS = [
    ("unmasked text", False, b"\x81\x05\x48\x65\x6c\x6c\x6f", [(1, True, False, 5, b"Hello", 2)]),
    ("masked text", True, b"\x81\x85\x37\xfa\x21\x3d" + HELLO_MASKED, [(1, True, True, 5, b"Hello", 6)]),
    ("fragmented text", False, b"\x01\x03\x48\x65\x6c" + b"\x80\x02\x6c\x6f",
     [(1, False, False, 3, b"Hel", 2), (0, True, False, 2, b"lo", 2)]),
    ("unmasked ping", False, b"\x89\x05\x48\x65\x6c\x6c\x6f", [(9, True, False, 5, b"Hello", 2)]),
    ("masked pong", True, b"\x8a\x85\x37\xfa\x21\x3d" + HELLO_MASKED, [(10, True, True, 5, b"Hello", 6)]),
    ("256-byte binary", False, b"\x82\x7e\x01\x00" + PAYLOAD_256, [(2, True, False, 256, PAYLOAD_256, 4)]),
    ("64KiB binary", False, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + PAYLOAD_64K,
     [(2, True, False, 65536, PAYLOAD_64K, 10)]),
]


@pytest.mark.parametrize(("name", "from_client", "wire", "expected"), RFC_VECTORS,
                         ids=[v[0] for v in RFC_VECTORS])
def test_rfc_vectors_decode(name, from_client, wire, expected):
    events = decode_all(wire, from_client=from_client)
    assert kinds(events) == []
    got = [(f.opcode, f.fin, f.masked, f.payload_len, f.payload, f.header_len) for f in frames_of(events)]
    assert got == expected


@pytest.mark.parametrize(("name", "from_client", "wire", "expected"), RFC_VECTORS,
                         ids=[v[0] for v in RFC_VECTORS])
def test_rfc_vectors_encode(name, from_client, wire, expected):
    # the other way: an encoder given the decoded fields writes the RFC bytes again
    out = b"".join(encode(op, payload, fin=fin, key=KEY if masked else None)
                   for op, fin, masked, _n, payload, _h in expected)
    assert out == wire
    # and websockets' parser agrees with ours on every vector
    rest = wire
    for op, fin, masked, n, payload, hlen in expected:
        ws = ws_parse(rest[:hlen + n], mask=masked)
        assert (int(ws.opcode), ws.fin, bytes(ws.data)) == (op, fin, payload)
        rest = rest[hlen + n:]
    if not any(masked for _op, _fin, masked, _n, _p, _h in expected):
        assert b"".join(WsFrame(WsOpcode(op), payload, fin=fin).serialize(mask=False)
                        for op, fin, _m, _n, payload, _h in expected) == wire


def test_frame_numbered_by_completing_feed():
    wire = b"\x82\x7e\x01\x00" + PAYLOAD_256 + b"\x81\x05Hello"
    d = FrameDecoder(from_client=False)
    assert d.feed(wire[:100], 7, 700) == []
    ev = d.feed(wire[100:262], 8, 800)
    ev += d.feed(wire[262:], 9, 900)
    assert [(e.record_no, e.ts_ns, e.payload_len) for e in ev] == [(8, 800, 256), (9, 900, 5)]
    assert d.frames_decoded == 2
    assert d.bytes_consumed == len(wire)


# --- length forms ---------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "form", "hlen", "problem"), [
    (0, 7, 2, None), (125, 7, 2, None), (126, 16, 4, None), (65535, 16, 4, None),
    (65536, 64, 10, None),
    (0, 16, 4, K.NON_MINIMAL_LENGTH), (125, 16, 4, K.NON_MINIMAL_LENGTH),
    (0, 64, 10, K.NON_MINIMAL_LENGTH), (125, 64, 10, K.NON_MINIMAL_LENGTH),
    (126, 64, 10, K.NON_MINIMAL_LENGTH), (65535, 64, 10, K.NON_MINIMAL_LENGTH),
])
@pytest.mark.parametrize("masked", [False, True])
def test_length_forms(n, form, hlen, problem, masked):
    payload = os.urandom(n)
    wire = encode(2, payload, key=KEY if masked else None, form=form)
    events = decode_all(wire, from_client=masked)
    assert kinds(events) == ([problem] if problem else [])
    (f,) = frames_of(events)
    assert (f.opcode, f.payload_len, f.payload, f.header_len) == (2, n, payload, hlen + 4 * masked)
    if problem:
        detail = next(e.detail for e in events if isinstance(e, Problem))
        assert f"found={form}-bit length {n}" in detail


def test_length_top_bit_set_is_reported_and_resynchronises():
    bad = b"\x82\x7f" + struct.pack("!Q", 1 << 63 | 5)
    good = encode(1, b"after") + encode(1, b"again")
    events = decode_all(bad + good, from_client=False)
    assert kinds(events) == [K.LENGTH_TOP_BIT_SET, K.FRAMES_LOST_AFTER_GAP]
    assert "skipping 10 bytes" in events[1].detail
    assert [f.payload for f in frames_of(events)] == [b"after", b"again"]


def test_length_top_bit_set_then_garbage_never_recovers_silently():
    d = FrameDecoder(from_client=False)
    ev = d.feed(b"\x82\xff" + b"\xff" * 8 + b"a" * 1000, 1, 0)
    assert kinds(ev) == [K.LENGTH_TOP_BIT_SET]
    ev = d.finish()
    assert kinds(ev) == [K.FRAMES_LOST_AFTER_GAP]
    assert "skipped=1010 bytes" in ev[0].detail
    assert d.bytes_consumed == 1010


# --- opcodes, masking, RSV, control frames --------------------------------------------------

@pytest.mark.parametrize("opcode", range(16))
def test_every_opcode(opcode):
    events = decode_all(encode(opcode, b"abc"), from_client=False)
    (f,) = frames_of(events)
    assert f.opcode == opcode and f.payload == b"abc" and f.raw_opcode is None
    reserved = opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
    assert kinds(events) == ([K.RESERVED_OPCODE] if reserved else [])
    if reserved:
        assert f"found=0x{opcode:X}" in events[0].detail


@pytest.mark.parametrize(("from_client", "masked", "problem"), [
    (True, True, None), (True, False, K.UNMASKED_CLIENT_FRAME),
    (False, False, None), (False, True, K.MASKED_SERVER_FRAME),
])
def test_masking_per_direction(from_client, masked, problem):
    events = decode_all(encode(1, b"Hello", key=KEY if masked else None), from_client=from_client)
    assert kinds(events) == ([problem] if problem else [])
    (f,) = frames_of(events)
    assert f.masked is masked and f.payload == b"Hello"


def test_control_frame_checks():
    events = decode_all(encode(9, b"x" * 126), from_client=False)
    assert kinds(events) == [K.CONTROL_FRAME_TOO_LONG]
    assert "found=126" in events[0].detail
    assert frames_of(events)[0].payload == b"x" * 126
    events = decode_all(encode(8, b"\x03\xe8", fin=False), from_client=False)
    assert kinds(events) == [K.FRAGMENTED_CONTROL_FRAME]
    events = decode_all(encode(0xB, b"", fin=False), from_client=False)
    assert sorted(kinds(events)) == sorted([K.RESERVED_OPCODE, K.FRAGMENTED_CONTROL_FRAME])
    # a data frame may be long and unfinished
    assert kinds(decode_all(encode(2, b"x" * 300, fin=False), from_client=False)) == []


@pytest.mark.parametrize(("rsv", "allowed", "bad"), [
    (0, 0, False), (4, 0, True), (4, 4, False), (2, 4, True), (1, 4, True), (6, 4, True),
    (7, 7, False), (1, 1, False),
])
def test_rsv_bits(rsv, allowed, bad):
    events = decode_all(encode(1, b"x", rsv=rsv), from_client=False, allowed_rsv=allowed)
    assert kinds(events) == ([K.RSV_WITHOUT_EXTENSION] if bad else [])
    (f,) = frames_of(events)
    assert (f.rsv1, f.rsv2, f.rsv3) == (bool(rsv & 4), bool(rsv & 2), bool(rsv & 1))


# hybi-04..06 wire opcode → (RFC opcode, reserved?)
HYBI04 = {0: (0, False), 1: (8, False), 2: (9, False), 3: (10, False), 4: (1, False), 5: (2, False)}


@pytest.mark.parametrize("raw", range(16))
def test_hybi04_opcode_table(raw):
    events = decode_all(encode(raw, b"hi"), from_client=False, hybi04_opcodes=True)
    (f,) = frames_of(events)
    assert f.raw_opcode == raw
    if raw in HYBI04:
        assert f.opcode == HYBI04[raw][0]
        assert kinds(events) == []
    else:
        assert f.opcode not in (0, 1, 2, 8, 9, 10)
        assert kinds(events) == [K.RESERVED_OPCODE]


def test_hybi04_control_rules_use_mapped_opcode():
    # wire 0x1 is close in hybi-04: unfinished → fragmented control frame
    assert kinds(decode_all(encode(1, b"", fin=False), from_client=False, hybi04_opcodes=True)) == [
        K.FRAGMENTED_CONTROL_FRAME]
    # wire 0x8 is reserved there, not close: long and unfinished is fine apart from the opcode
    assert kinds(decode_all(encode(8, b"x" * 200, fin=False), from_client=False,
                            hybi04_opcodes=True)) == [K.RESERVED_OPCODE]


# --- close payloads -------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "code", "reason", "problem"), [
    (b"", None, None, None),
    (b"\x03", None, None, K.ONE_BYTE_CLOSE_PAYLOAD),
    (struct.pack("!H", 1000), 1000, None, None),
    (struct.pack("!H", 1000) + b"bye", 1000, "bye", None),
    (struct.pack("!H", 1001), 1001, None, None),
    (struct.pack("!H", 1004), 1004, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 1005), 1005, None, K.FORBIDDEN_CLOSE_CODE),
    (struct.pack("!H", 1006), 1006, None, K.FORBIDDEN_CLOSE_CODE),
    (struct.pack("!H", 1011), 1011, None, None),
    (struct.pack("!H", 1014), 1014, None, None),
    (struct.pack("!H", 1015), 1015, None, K.FORBIDDEN_CLOSE_CODE),
    (struct.pack("!H", 1016), 1016, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 2999), 2999, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 3000), 3000, None, None),
    (struct.pack("!H", 4999), 4999, None, None),
    (struct.pack("!H", 999), 999, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 0), 0, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 5000), 5000, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 65535), 65535, None, K.INVALID_CLOSE_CODE),
    (struct.pack("!H", 1000) + "héllo ✓".encode(), 1000, "héllo ✓", None),
    (struct.pack("!H", 1000) + b"ok\xff\xfe", 1000, "ok\ufffd\ufffd", K.INVALID_CLOSE_REASON_UTF8),
    (struct.pack("!H", 1006) + b"\xc3", 1006, "\ufffd", "both"),
])
def test_parse_close_payload(payload, code, reason, problem):
    got_code, got_reason, problems = parse_close_payload(payload)
    assert (got_code, got_reason) == (code, reason)
    if problem == "both":
        assert [k for k, _ in problems] == [K.FORBIDDEN_CLOSE_CODE, K.INVALID_CLOSE_REASON_UTF8]
    else:
        assert [k for k, _ in problems] == ([problem] if problem else [])
    for _k, detail in problems:
        assert "expected=" in detail and "found=" in detail


def test_close_code_validity_agrees_with_websockets():
    from websockets.exceptions import ProtocolError
    from websockets.frames import Close
    for code in [*range(990, 3010), *range(3990, 4010), *range(4990, 5010)]:
        ours = not parse_close_payload(struct.pack("!H", code))[2]
        try:
            Close.parse(struct.pack("!H", code))
            theirs = True
        except ProtocolError:
            theirs = False
        assert ours == theirs, code


# --- too large, allocation --------------------------------------------------------------------

def test_frame_over_max_payload_is_counted_not_kept():
    wire = encode(2, b"z" * 1000, key=KEY) + encode(1, b"next", key=KEY)
    events = decode_all(wire, from_client=True, max_payload=999)
    assert kinds(events) == [K.FRAME_TOO_LARGE]
    assert "found=1000" in events[0].detail
    big, nxt = frames_of(events)
    assert (big.payload, big.payload_len, nxt.payload) == (None, 1000, b"next")
    # exactly at the limit is kept
    (f,) = frames_of(decode_all(encode(2, b"z" * 1000), from_client=False, max_payload=1000))
    assert f.payload == b"z" * 1000


def test_huge_length_allocates_nothing():
    d = FrameDecoder(from_client=True)
    ev = d.feed(b"\x82\xff" + struct.pack("!Q", (1 << 63) - 1) + KEY, 1, 0)
    assert kinds(ev) == [K.FRAME_TOO_LARGE]
    chunk = b"\x00" * 65536
    tracemalloc.start()
    try:
        for i in range(64):                      # 4 MiB of that frame's payload
            assert d.feed(chunk, i + 2, 0) == []
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, peak
    assert d.bytes_consumed == 14 + 64 * 65536
    p, cut = d.finish()
    assert p.kind is K.CAPTURE_ENDS_MID_FRAME
    assert f"missing={(1 << 63) - 1 - 64 * 65536}" in p.detail
    assert type(cut) is CutFrame
    assert (cut.payload_len, cut.payload, cut.record_no) == ((1 << 63) - 1, None, 65)


# --- end of stream ----------------------------------------------------------------------------

def test_finish_mid_payload_and_mid_header():
    d = FrameDecoder(from_client=False)
    d.feed(encode(2, b"q" * 300)[:104], 1, 0)
    p, cut = d.finish()
    assert p.kind is K.CAPTURE_ENDS_MID_FRAME and "found=100, missing=200" in p.detail
    assert type(cut) is CutFrame
    d = FrameDecoder(from_client=True)
    d.feed(b"\x81\xfe\x01", 1, 0)               # needs 2 + 2 + 4 header bytes: no frame row
    (p,) = d.finish()
    assert p.kind is K.CAPTURE_ENDS_MID_FRAME and "expected=8 header bytes, found=3" in p.detail
    assert d.bytes_consumed == 3
    d = FrameDecoder(from_client=False)
    d.feed(encode(1, b"ok"), 1, 0)
    assert d.finish() == []


@pytest.mark.parametrize("from_client", [True, False])
def test_a_frame_cut_by_the_end_of_the_capture_is_a_cut_frame(from_client):
    """Header read, payload incomplete at the end: after the problem, a CutFrame with the header's
    fields, the declared payload_len, no payload, and the record of the last packet with its bytes."""
    key = KEY if from_client else None
    wire = encode(1, b"whole", key=key) + encode(2, b"q" * 300, fin=False, rsv=4, key=key)[:60]
    d = FrameDecoder(from_client=from_client, allowed_rsv=4)
    events = d.feed(wire[:30], 7, 700) + d.feed(wire[30:], 8, 800)
    assert [f.payload for f in frames_of(events)] == [b"whole"]
    end = d.finish()
    assert kinds(end) == [K.CAPTURE_ENDS_MID_FRAME]
    (cut,) = frames_of(end)
    assert type(cut) is CutFrame and isinstance(cut, Frame)
    assert (cut.record_no, cut.ts_ns, cut.opcode, cut.fin, cut.rsv1, cut.masked, cut.payload_len,
            cut.payload, cut.header_len) == (8, 800, 2, False, True, from_client, 300, None,
                                            8 if from_client else 4)
    assert d.finish() == []


# --- split invariance ---------------------------------------------------------------------------

MIXED_STREAM = b"".join([
    encode(1, b"Hello"), encode(1, b"Hel", fin=False), encode(0, b"lo"), encode(9, b"ping"),
    encode(2, PAYLOAD_256), encode(2, b"", form=16), encode(5, b"reserved"),
    encode(1, b"rsv", rsv=4), encode(2, b"x" * 700), encode(8, b"\x03\xe8bye", key=KEY),
    encode(2, bytes(i * 13 % 256 for i in range(70000))), encode(0xA, b""),
])


def _reference_events():
    return norm(decode_all(MIXED_STREAM, from_client=False, max_payload=600))


def test_split_invariance_byte_by_byte():
    ref = _reference_events()
    assert len(frames_of(ref)) == 12
    assert kinds(ref) == [K.NON_MINIMAL_LENGTH, K.RESERVED_OPCODE, K.RSV_WITHOUT_EXTENSION,
                          K.FRAME_TOO_LARGE, K.MASKED_SERVER_FRAME, K.FRAME_TOO_LARGE]
    short = MIXED_STREAM[:-(70010 + 2)]           # byte by byte without the 70000-byte frame
    whole = norm(decode_all(short, from_client=False, max_payload=600))
    one_by_one = norm(decode_all(short, from_client=False, max_payload=600,
                                 cuts=list(range(1, len(short)))))
    assert one_by_one == whole


@given(st.lists(st.integers(0, len(MIXED_STREAM)), max_size=30))
@settings(max_examples=200, deadline=None)
def test_split_invariance_random_cuts(cuts):
    assert norm(decode_all(MIXED_STREAM, from_client=False, max_payload=600, cuts=cuts)) == \
        _reference_events()


# --- property: independent encoders -------------------------------------------------------------

ws_frames = st.one_of(
    st.builds(lambda op, data, fin: (op, data, fin),
              st.sampled_from([WsOpcode.CONT, WsOpcode.TEXT, WsOpcode.BINARY]),
              st.one_of(st.binary(max_size=300),
                        st.builds(lambda n, seed: random.Random(seed).randbytes(n),
                                  st.integers(65530, 65540), st.integers(0, 1 << 32))),
              st.booleans()),
    st.builds(lambda op, data: (op, data, True),
              st.sampled_from([WsOpcode.CLOSE, WsOpcode.PING, WsOpcode.PONG]), st.binary(max_size=125)),
)


@given(st.lists(ws_frames, min_size=1, max_size=8), st.booleans(), st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_websockets_serialized_frames_decode(frames, client, data):
    wire = b"".join(WsFrame(op, payload, fin=fin).serialize(mask=client) for op, payload, fin in frames)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    events = decode_all(wire, from_client=client, cuts=cuts)
    assert kinds(events) == []
    got = [(f.opcode, f.fin, f.masked, f.payload) for f in frames_of(events)]
    assert got == [(int(op), fin, client, payload) for op, payload, fin in frames]


@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 8, 9, 10]), st.binary(max_size=200)),
                min_size=1, max_size=10), st.booleans())
@settings(max_examples=100, deadline=None)
def test_wsproto_serialized_frames_decode(frames, client):
    from wsproto.frame_protocol import FrameProtocol, Opcode
    fp = FrameProtocol(client=client, extensions=[])
    frames = [(op, p[:125] if op >= 8 else p) for op, p in frames]
    wire = b"".join(bytes(fp._serialize_frame(Opcode(op), p)) for op, p in frames)
    events = decode_all(wire, from_client=client)
    assert kinds(events) == []
    assert [(f.opcode, f.payload) for f in frames_of(events)] == frames


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5),
       st.lists(st.integers(1, 300), max_size=3), st.booleans(), st.booleans(),
       st.integers(0, 7), st.integers(0, 300))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_raise(blob, cuts, gaps, client, hybi04, allowed, max_payload):
    d = FrameDecoder(from_client=client, hybi04_opcodes=hybi04, allowed_rsv=allowed,
                     max_payload=max_payload)
    prev, total, events = 0, 0, []
    bounds = sorted({min(c, len(blob)) for c in cuts} | {len(blob)})
    for n, c in enumerate(bounds):
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
        assert f.payload is None or len(f.payload) == f.payload_len


# --- gaps and resynchronisation -------------------------------------------------------------------

def test_gap_inside_payload_keeps_sync():
    first = encode(2, PAYLOAD_256, key=KEY)
    after = encode(1, b"after", key=KEY)
    d = FrameDecoder(from_client=True)
    ev = d.feed(first[:108], 1, 0)                # header (8) + 100 payload bytes
    ev += d.gap(56, 2, 0)
    ev += d.feed(first[164:] + after, 3, 0)
    ev += d.finish()
    assert kinds(ev) == []
    big, nxt = frames_of(ev)
    assert (big.payload_len, big.payload, big.record_no) == (256, None, 3)
    assert nxt.payload == b"after"
    assert d.bytes_consumed == len(first) + len(after)


def test_gap_ending_exactly_at_frame_end():
    first = encode(2, PAYLOAD_256)
    d = FrameDecoder(from_client=False)
    d.feed(first[:50], 1, 0)
    (f,) = d.gap(len(first) - 50, 2, 0)
    assert (f.payload, f.record_no) == (None, 2)
    assert d.feed(encode(1, b"ok"), 3, 0)[0].payload == b"ok"


def test_gap_in_header_resynchronises():
    frames = [encode(1, f"message {i}".encode(), key=os.urandom(4)) for i in range(6)]
    d = FrameDecoder(from_client=True)
    ev = d.feed(frames[0], 1, 0)
    ev += d.gap(len(frames[1]) + 3, 2, 0)         # frame 1 and 3 bytes of frame 2's header
    ev += d.feed(frames[2][3:] + b"".join(frames[3:]), 3, 0)
    ev += d.finish()
    assert kinds(ev) == [K.FRAMES_LOST_AFTER_GAP]
    lost = next(e for e in ev if isinstance(e, Problem))
    assert f"skipping {len(frames[1]) + len(frames[2])} bytes" in lost.detail
    assert [f.payload for f in frames_of(ev)] == [b"message 0", b"message 3", b"message 4",
                                                  b"message 5"]
    assert d.bytes_consumed == sum(map(len, frames))


def test_gap_longer_than_payload_reports_frame_then_resyncs_at_end_of_stream():
    big = encode(2, PAYLOAD_256)
    d = FrameDecoder(from_client=False)
    ev = d.feed(big[:20], 1, 0)
    ev += d.gap(len(big) - 20 + 4, 2, 0)          # rest of big + 4 bytes of the next frame
    assert [(f.payload_len, f.payload, f.record_no) for f in frames_of(ev)] == [(256, None, 2)]
    nxt = encode(1, b"lost one")
    assert d.feed(nxt[4:], 3, 0) == []            # the tail of a frame: no header in it
    # one lone frame is not proof enough while the stream goes on ...
    assert d.feed(encode(1, b"found"), 4, 40) == []
    # ... but a chain of plausible frames that runs exactly to the end of the stream is
    ev = d.finish()
    assert kinds(ev) == [K.FRAMES_LOST_AFTER_GAP]
    assert f"skipping {len(nxt)} bytes" in ev[0].detail   # 4 missing + 6 seen
    assert [(f.payload, f.record_no, f.ts_ns) for f in frames_of(ev)] == [(b"found", 4, 40)]
    assert d.bytes_consumed == len(big) + len(nxt) + 7


def test_resync_over_separate_feeds_needs_a_chain():
    d = FrameDecoder(from_client=False)
    d.feed(encode(1, b"a"), 1, 0)
    d.gap(2, 2, 0)
    ev = []
    for n in range(3, 8):                         # one frame per packet, as in a chat
        ev += d.feed(encode(1, f"m{n}".encode()), n, n)
    assert kinds(ev) == [K.FRAMES_LOST_AFTER_GAP]
    # accepted on the second frame (its end falls on a packet boundary); frames keep their packet
    assert [(f.payload, f.record_no) for f in frames_of(ev)] == [
        (b"m3", 4), (b"m4", 4), (b"m5", 5), (b"m6", 6), (b"m7", 7)]


def test_resync_in_random_payloads_makes_no_bogus_frames():
    """Lose one 1448-byte segment of a stream of random binary frames: every frame decoded
    afterwards must be a real one (no false start found in payload bytes)."""
    rng = random.Random(20240601)
    bogus = recovered = total = resynced = 0
    for _run in range(40):
        client = rng.random() < 0.5
        payloads = [rng.randbytes(rng.choice([10, 100, 1000, 3000])) for _ in range(30)]
        wire = b"".join(encode(2, p, key=rng.randbytes(4) if client else None) for p in payloads)
        segs = [wire[i:i + 1448] for i in range(0, len(wire), 1448)]
        drop = rng.randrange(1, len(segs) - 1)
        d = FrameDecoder(from_client=client)
        ev = []
        for i, seg in enumerate(segs):
            ev += d.gap(len(seg), i, 0) if i == drop else d.feed(seg, i, 0)
        ev += d.finish()
        good = set(payloads)
        kept = [f.payload for f in frames_of(ev) if f.payload is not None]
        bogus += sum(p not in good for p in kept)
        recovered += sum(p in good for p in kept)
        total += len(payloads)
        resynced += any(isinstance(e, Problem) and "resynchronised" in e.detail for e in ev)
    assert bogus == 0
    assert resynced >= 10
    assert recovered >= total - 40 * 4            # at most a few frames lost per dropped segment


def test_resync_gives_up_and_stops(monkeypatch):
    monkeypatch.setattr(frames_mod, "RESYNC_GIVE_UP", 10_000)
    d = FrameDecoder(from_client=True)
    d.feed(encode(1, b"x", key=KEY), 1, 0)
    d.gap(3, 2, 0)
    events = []
    for i in range(5):
        events += d.feed(b"a" * 4000, i + 3, 0)   # 0x61: no plausible header byte
    assert d.stopped
    assert kinds(events) == [K.FRAMES_LOST_AFTER_GAP]
    assert "direction stopped" in events[0].detail
    assert d.feed(encode(1, b"y", key=KEY), 9, 0) == []
    assert d.gap(10, 10, 0) == []
    assert d.finish() == []
    assert d.bytes_consumed == 7 + 3 + 20_000 + 7 + 10
