"""hybi-04..06 client frames: a nonce before each frame, header and payload masked."""

from __future__ import annotations

import hashlib
import struct

from analyzer.events import Frame, Problem
from analyzer.frames import CutFrame
from analyzer.frames_hybi04 import MASKING_GUID_04, PrefixMaskedFrameDecoder, connection_masking_key_04
from analyzer.protocol import ProblemKind

# hybi-04..06 opcodes: continuation 0, close 1, ping 2, pong 3, text 4, binary 5.
TEXT04, BINARY04, CLOSE04, PING04 = 0x4, 0x5, 0x1, 0x2


def clear_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def hybi05_client_frame(nonce: bytes, opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return nonce + xor(clear_frame(opcode, payload, fin), nonce)


def hybi04_client_frame(conn_key: bytes, nonce: bytes, opcode: int, payload: bytes) -> bytes:
    frame_key = hashlib.sha1(nonce + conn_key).digest()
    return nonce + xor(clear_frame(opcode, payload), frame_key)


def frames(events: list) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def test_hybi05_frames_unmask_with_the_nonce():
    data = (hybi05_client_frame(b"\x01\x02\x03\x04", TEXT04, b"Hello")
            + hybi05_client_frame(b"\xaa\xbb\xcc\xdd", BINARY04, bytes(range(200)))
            + hybi05_client_frame(b"\x10\x20\x30\x40", CLOSE04, struct.pack("!H", 1000)))
    events = PrefixMaskedFrameDecoder().feed(data, 7, 99)
    got = frames(events)
    assert [(f.opcode, f.raw_opcode, f.payload) for f in got] == [
        (0x1, TEXT04, b"Hello"), (0x2, BINARY04, bytes(range(200))), (0x8, CLOSE04, b"\x03\xe8")]
    assert all(f.masked for f in got)
    assert [f.header_len for f in got] == [6, 8, 6]       # nonce + 2-byte header (+2 for 200 bytes)
    assert not [e for e in events if isinstance(e, Problem)]


def test_hybi04_frames_unmask_with_the_sha1_key():
    key, nonce = "dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEC=="
    conn_key = connection_masking_key_04(key, nonce)
    assert conn_key == hashlib.sha1((key + nonce).encode() + MASKING_GUID_04).digest()
    payload = b"x" * 70_000                                # 64-bit length, key stream wraps many times
    data = (hybi04_client_frame(conn_key, b"\x00\x00\x00\x01", TEXT04, b"hello hybi-04")
            + hybi04_client_frame(conn_key, b"\x09\x08\x07\x06", BINARY04, payload))
    got = frames(PrefixMaskedFrameDecoder(masking_key_04=conn_key).feed(data, 1, 1))
    assert [f.payload for f in got] == [b"hello hybi-04", payload]
    assert got[1].payload_len == 70_000 and got[1].header_len == 4 + 10


def test_split_at_every_byte_gives_the_same_frames():
    data = (hybi05_client_frame(b"\x01\x02\x03\x04", TEXT04, b"Hel", fin=False)
            + hybi05_client_frame(b"\x05\x06\x07\x08", PING04, b"p")
            + hybi05_client_frame(b"\x09\x0a\x0b\x0c", 0x0, b"lo")
            + hybi05_client_frame(b"\x0d\x0e\x0f\x10", BINARY04, b"\xff" * 300))
    whole = [(f.opcode, f.fin, f.payload) for f in frames(PrefixMaskedFrameDecoder().feed(data, 1, 1))]
    assert len(whole) == 4
    for cut in range(1, len(data)):
        dec = PrefixMaskedFrameDecoder()
        events = dec.feed(data[:cut], 1, 1) + dec.feed(data[cut:], 2, 2) + dec.finish()
        assert [(f.opcode, f.fin, f.payload) for f in frames(events)] == whole, cut
    dec = PrefixMaskedFrameDecoder()
    one_by_one = [e for i in range(len(data)) for e in dec.feed(data[i:i + 1], i, i)]
    assert [(f.opcode, f.fin, f.payload) for f in frames(one_by_one)] == whole


def test_gap_inside_a_payload_keeps_sync_and_elsewhere_stops():
    first = hybi05_client_frame(b"\x01\x02\x03\x04", BINARY04, b"a" * 100)
    second = hybi05_client_frame(b"\x05\x06\x07\x08", TEXT04, b"after")
    dec = PrefixMaskedFrameDecoder()
    events = dec.feed(first[:50], 1, 1) + dec.gap(20, 2, 2) + dec.feed(first[70:] + second, 3, 3)
    got = frames(events)
    assert [(f.opcode, f.payload) for f in got] == [(0x2, None), (0x1, b"after")]
    dec = PrefixMaskedFrameDecoder()
    events = dec.feed(first, 1, 1) + dec.gap(3, 2, 2) + dec.feed(second, 3, 3)
    assert len(frames(events)) == 1 and dec.stopped
    assert any(isinstance(e, Problem) and e.kind == ProblemKind.FRAMES_LOST_AFTER_GAP for e in events)


def test_capture_ending_inside_a_nonce_is_reported():
    dec = PrefixMaskedFrameDecoder()
    events = dec.feed(hybi05_client_frame(b"\x01\x02\x03\x04", TEXT04, b"ok") + b"\x01\x02", 1, 1)
    events += dec.finish()
    assert len(frames(events)) == 1
    assert [e.kind for e in events if isinstance(e, Problem)] == [ProblemKind.CAPTURE_ENDS_MID_FRAME]


def test_capture_ending_inside_a_payload_is_a_cut_client_frame():
    """The inner decoder's CutFrame comes out as a client frame too (masked, nonce in header_len)."""
    dec = PrefixMaskedFrameDecoder()
    wire = hybi05_client_frame(b"\x01\x02\x03\x04", BINARY04, bytes(300))[:60]
    events = dec.feed(wire, 3, 30) + dec.finish()
    assert [e.kind for e in events if isinstance(e, Problem)] == [ProblemKind.CAPTURE_ENDS_MID_FRAME]
    (cut,) = frames(events)
    assert type(cut) is CutFrame
    assert (cut.record_no, cut.opcode, cut.raw_opcode, cut.masked, cut.payload_len, cut.payload,
            cut.header_len) == (3, 0x2, BINARY04, True, 300, None, 8)
