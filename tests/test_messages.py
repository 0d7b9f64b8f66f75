"""Tests for analyzer.messages (frames → messages) and analyzer.inflate (bounded decompression).

Frames are built by hand as events.Frame objects; compressed payloads come from Python's zlib and
from the websockets library's own permessage-deflate extension.
"""

from __future__ import annotations

import itertools
import os
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode

from analyzer.events import DeflateParams, Frame, FrameInfo, Message, Problem
from analyzer.frames import parse_close_payload as parse_close
from analyzer.inflate import InflateError, Inflater
from analyzer.messages import MessageAssembler
from analyzer.protocol import ProblemKind as K

PMD = DeflateParams("permessage-deflate")
PMD_NCT = DeflateParams("permessage-deflate", client_no_context_takeover=True,
                        server_no_context_takeover=True)


# --- helpers ------------------------------------------------------------------------------------

def fr(opcode: int, payload: bytes | None, *, fin: bool = True, rsv1: bool = False, rec: int = 1,
       payload_len: int | None = None) -> Frame:
    if payload_len is None:
        payload_len = len(payload) if payload is not None else 0
    return Frame(record_no=rec, ts_ns=rec * 1000, opcode=opcode, fin=fin, rsv1=rsv1, rsv2=False,
                 rsv3=False, masked=True, payload_len=payload_len, payload=payload)


def assembler(**kw: object) -> MessageAssembler:
    counter = itertools.count(1)
    kw.setdefault("from_client", True)
    return MessageAssembler(next_message_id=lambda: next(counter), **kw)  # type: ignore[arg-type]


def feed_all(asm: MessageAssembler, frames: list[Frame]) -> tuple[list[FrameInfo], list[object]]:
    infos, events = [], []
    for i, f in enumerate(frames, 1):
        if f.record_no == 1 and i > 1:        # number frames 1, 2, 3… unless the test chose
            f = Frame(i, i * 1000, f.opcode, f.fin, f.rsv1, f.rsv2, f.rsv3, f.masked, f.payload_len,
                      f.payload)
        info, evs = asm.feed(f)
        infos.append(info)
        events.extend(evs)
    return infos, events


def messages(events: list[object]) -> list[Message]:
    return [e for e in events if isinstance(e, Message)]


def problems(events: list[object]) -> list[Problem]:
    return [e for e in events if isinstance(e, Problem)]


def kinds(events: list[object]) -> list[K]:
    return [p.kind for p in problems(events)]


def ws_encode(messages_: list[list[bytes]], *, binary: bool = False, no_context_takeover: bool = False,
              window_bits: int = 15) -> list[list[tuple[bytes, bool, bool]]]:
    """Compress messages (each a list of fragments) with websockets' permessage-deflate, as the
    sender would: returns per message a list of (payload, rsv1, fin)."""
    ext = PerMessageDeflate(False, no_context_takeover, 15, window_bits)
    out = []
    for fragments in messages_:
        frames = []
        for i, data in enumerate(fragments):
            opcode = (WsOpcode.BINARY if binary else WsOpcode.TEXT) if i == 0 else WsOpcode.CONT
            enc = ext.encode(WsFrame(opcode, data, fin=i == len(fragments) - 1))
            frames.append((bytes(enc.data), enc.rsv1, enc.fin))
        out.append(frames)
    return out


def ws_frames(encoded: list[list[tuple[bytes, bool, bool]]], *, opcode: int = 1) -> list[Frame]:
    frames = []
    for msg in encoded:
        for i, (data, rsv1, fin) in enumerate(msg):
            frames.append(fr(opcode if i == 0 else 0, data, fin=fin, rsv1=rsv1))
    return frames


def zlib_message(data: bytes, comp: zlib._Compress | None = None, wbits: int = -15) -> bytes:
    """Compress one message the RFC 7692 way: sync flush, tail removed."""
    comp = comp or zlib.compressobj(wbits=wbits)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# --- close frames -----------------------------------------------------------------------------

@pytest.mark.parametrize(("payload", "code", "reason", "expected"), [
    (b"", None, None, []),
    (b"\x03", None, None, [K.ONE_BYTE_CLOSE_PAYLOAD]),
    (b"\x03\xe8", 1000, None, []),
    (b"\x03\xe9bye", 1001, "bye", []),
    (b"\x03\xf4", 1012, None, []),                       # IANA: service restart
    (b"\x03\xec", 1004, None, [K.INVALID_CLOSE_CODE]),   # reserved
    (b"\x03\xed", 1005, None, [K.FORBIDDEN_CLOSE_CODE]),
    (b"\x03\xee", 1006, None, [K.FORBIDDEN_CLOSE_CODE]),
    (b"\x03\xf7", 1015, None, [K.FORBIDDEN_CLOSE_CODE]),
    (b"\x03\xe7", 999, None, [K.INVALID_CLOSE_CODE]),    # below 1000
    (b"\x00\x00", 0, None, [K.INVALID_CLOSE_CODE]),
    (b"\x03\xf8", 1016, None, [K.INVALID_CLOSE_CODE]),   # unassigned
    (b"\x0b\xb7", 2999, None, [K.INVALID_CLOSE_CODE]),
    (b"\x0b\xb8", 3000, None, []),                       # registered
    (b"\x13\x87", 4999, None, []),                       # private
    (b"\x13\x88", 5000, None, [K.INVALID_CLOSE_CODE]),
    (b"\xff\xff", 65535, None, [K.INVALID_CLOSE_CODE]),
    ("\x03\xe8caf\u00e9".encode("latin-1")[:2] + "café".encode(), 1000, "café", []),
    (b"\x03\xe8ok\xff", 1000, "ok\ufffd", [K.INVALID_CLOSE_REASON_UTF8]),
    (b"\x03\xeeok\xc3", 1006, "ok\ufffd", [K.FORBIDDEN_CLOSE_CODE, K.INVALID_CLOSE_REASON_UTF8]),
])
def test_parse_close(payload: bytes, code: int | None, reason: str | None, expected: list[K]) -> None:
    got_code, got_reason, got_problems = parse_close(payload)
    assert (got_code, got_reason) == (code, reason)
    assert [k for k, _ in got_problems] == expected
    assert all(detail for _, detail in got_problems)


def test_close_frame_info_problems_and_data_after_close() -> None:
    asm = assembler()
    infos, events = feed_all(asm, [
        fr(1, b"hi"),
        fr(8, b"\x03\xed"),                 # 1005 on the wire
        fr(1, b"late"),                     # data after close
        fr(9, b""),                         # a ping is not data: RFC 6455 §5.5.1 allows it
        fr(8, b""),                         # a second close is reported
    ])
    assert infos[1] == FrameInfo(None, False, 1005, None)
    assert asm.sent_close and asm.close_frames == 2
    assert [(p.kind, p.record_no) for p in problems(events)] == [
        (K.FORBIDDEN_CLOSE_CODE, 2), (K.DATA_AFTER_CLOSE, 3), (K.DATA_AFTER_CLOSE, 5)]
    # The late message is still decoded.
    assert [m.preview for m in messages(events)] == ["hi", "late"]


def test_close_reason_utf8_check_follows_validate_utf8() -> None:
    _, events = feed_all(assembler(validate_utf8=False), [fr(8, b"\x03\xe8\xff")])
    assert kinds(events) == []
    info, events = assembler().feed(fr(8, b"\x03\xe8\xff"))
    assert kinds(events) == [K.INVALID_CLOSE_REASON_UTF8]
    assert info.close_reason == "\ufffd"


# --- fragmentation, control frames, ordering violations -------------------------------------

def test_fragmented_text_with_character_split_across_fragments_is_valid() -> None:
    text = "naïve €uro 😀 done"
    raw = text.encode()
    cut1 = raw.index("€".encode()) + 1          # inside the 3-byte euro sign
    cut2 = raw.index("😀".encode()) + 3          # inside the 4-byte emoji
    asm = assembler(keep_payload=True)
    infos, events = feed_all(asm, [
        fr(1, raw[:cut1], fin=False), fr(0, raw[cut1:cut2], fin=False), fr(0, raw[cut2:])])
    assert kinds(events) == []
    (m,) = messages(events)
    assert (m.type, m.frames, m.size, m.wire_bytes, m.complete) == ("text", 3, len(raw), len(raw), True)
    assert m.payload == raw and m.preview == text
    assert (m.first_record_no, m.last_record_no, m.ts_start_ns, m.ts_end_ns) == (1, 3, 1000, 3000)
    assert [i.message_id for i in infos] == [1, 1, 1]


@pytest.mark.parametrize(("fragments", "offset"), [
    ([b"ab\xff"], 2),
    ([b"a\xc3", b"\xa9\xff"], 3),               # error right after a character split across frames
    ([b"\xc3", b"abc"], 0),                      # pending lead byte, then ASCII: invalid continuation
    ([b"ab\xe2\x82", b"x"], 2),
    ([b"ok", b"\xe2\x82"], 2),                   # truncated at the end of the message
    ([b"x" * 70000 + b"\xed\xa0\x80"], 70000),   # a surrogate, past the first validation slice
])
def test_invalid_utf8_reports_offset(fragments: list[bytes], offset: int) -> None:
    frames = [fr(1 if i == 0 else 0, f, fin=i == len(fragments) - 1) for i, f in enumerate(fragments)]
    _, events = feed_all(assembler(), frames)
    (p,) = problems(events)
    assert p.kind is K.INVALID_UTF8
    assert f"byte offset {offset}:" in p.detail
    assert messages(events)[0].complete


def test_utf8_offset_across_slices_with_split_characters() -> None:
    raw = "€".encode() * 50000            # 150000 bytes: 64 KiB slices cut characters
    bad = raw[:120000] + b"\x80" + raw[120000:]
    _, events = feed_all(assembler(), [fr(1, bad[:99999], fin=False), fr(0, bad[99999:])])
    (p,) = problems(events)
    assert "byte offset 120000:" in p.detail
    _, events = feed_all(assembler(), [fr(1, raw[:99999], fin=False), fr(0, raw[99999:])])
    assert problems(events) == []


def test_binary_is_not_utf8_checked_and_validation_can_be_off() -> None:
    _, events = feed_all(assembler(), [fr(2, b"\xff\xfe")])
    assert problems(events) == [] and messages(events)[0].preview == "fffe"
    _, events = feed_all(assembler(validate_utf8=False), [fr(1, b"\xff")])
    assert problems(events) == []


def test_ping_interleaved_in_fragmented_message() -> None:
    asm = assembler()
    infos, events = feed_all(asm, [
        fr(2, b"\x01\x02", fin=False), fr(9, b"ping"), fr(0, b"\x03", fin=False), fr(10, b""),
        fr(0, b"\x04")])
    assert kinds(events) == []
    (m,) = messages(events)
    assert (m.frames, m.size, m.preview, m.last_record_no) == (3, 4, "01020304", 5)
    assert [i.message_id for i in infos] == [1, None, 1, None, 1]


def test_reserved_opcodes_get_no_message_and_do_not_disturb() -> None:
    infos, events = feed_all(assembler(), [fr(1, b"a", fin=False), fr(3, b"x"), fr(0xB, b"y"),
                                           fr(0, b"b")])
    assert [i.message_id for i in infos] == [1, None, None, 1]
    assert [m.preview for m in messages(events)] == ["ab"] and kinds(events) == []


def test_continuation_without_start_one_problem_per_run() -> None:
    infos, events = feed_all(assembler(), [
        fr(0, b"a", fin=False), fr(0, b"b", fin=False), fr(0, b"c"),     # one orphan run
        fr(0, b"d"),                                                     # another
        fr(1, b"ok")])
    assert [(p.kind, p.record_no) for p in problems(events)] == [
        (K.CONTINUATION_WITHOUT_START, 1), (K.CONTINUATION_WITHOUT_START, 4)]
    assert [i.message_id for i in infos] == [None, None, None, None, 1]
    assert [m.preview for m in messages(events)] == ["ok"]


def test_interrupted_message() -> None:
    infos, events = feed_all(assembler(), [fr(1, b"first", fin=False), fr(2, b"\x00")])
    first, second = messages(events)
    assert (first.message_id, first.complete, first.preview, first.frames) == (1, False, "first", 1)
    assert (second.message_id, second.complete, second.type) == (2, True, "binary")
    (p,) = problems(events)
    assert (p.kind, p.record_no) == (K.MESSAGE_INTERRUPTED, 2)
    assert [i.message_id for i in infos] == [1, 2]


def test_finish_mid_message() -> None:
    asm = assembler()
    _, events = feed_all(asm, [fr(1, b"par", fin=False), fr(0, b"tial", fin=False)])
    assert events == []
    out = asm.finish(7, 7000)
    (m,) = messages(out)
    assert (m.complete, m.size, m.frames, m.preview) == (False, 7, 2, "partial")
    (p,) = problems(out)
    assert (p.kind, p.record_no, p.ts_ns) == (K.CAPTURE_ENDS_MID_MESSAGE, 7, 7000)
    assert asm.finish(8, 8000) == []
    assert assembler().finish(None, None) == []


def test_gap_mid_message_cuts_it_and_following_continuations_are_not_blamed() -> None:
    asm = assembler()
    _, events = feed_all(asm, [fr(1, b"abc", fin=False)])
    assert events == []
    out = asm.gap(5, 5000)
    (m,) = messages(out)
    assert (m.complete, m.size, m.preview) == (False, 3, "abc")
    assert [(p.kind, p.record_no) for p in problems(out)] == [(K.MESSAGE_INTERRUPTED, 5)]
    # The rest of the cut message arrives after the gap: no second complaint for it.
    info, evs = asm.feed(fr(0, b"def", rec=6))
    assert info.message_id is None and evs == []
    info, evs = asm.feed(fr(1, b"new", rec=7))
    assert info.message_id == 2 and messages(evs)[0].preview == "new"
    assert asm.finish(8, 8000) == []


def test_preview_cut_marks() -> None:
    _, events = feed_all(assembler(preview_len=4), [fr(1, "héllo wörld".encode()), fr(2, bytes(range(5))),
                                                   fr(2, b"\x01\x02"), fr(1, "h€y!".encode())])
    assert [m.preview for m in messages(events)] == ["héll…", "0001…", "0102", "h€y!"]


def test_uncompressed_over_limit_exact_size_and_capped_payload() -> None:
    asm = assembler(max_message_bytes=10, keep_payload=True)
    _, events = feed_all(asm, [fr(1, b"0123456", fin=False), fr(0, b"789ab", fin=False), fr(0, b"\xff")])
    (m,) = messages(events)
    assert (m.size, m.wire_bytes, m.payload, m.complete) == (13, 13, b"0123456789", True)
    # Over the limit, UTF-8 is still checked (it costs no memory): the last byte is invalid.
    assert [(p.kind, p.record_no) for p in problems(events)] == [
        (K.MESSAGE_OVER_LIMIT, 2), (K.INVALID_UTF8, 3)]
    assert "byte offset 12:" in problems(events)[1].detail
    _, events = feed_all(assembler(max_message_bytes=10), [fr(2, b"x" * 10)])
    assert kinds(events) == [] and messages(events)[0].size == 10


def test_frame_without_payload_uncompressed() -> None:
    """A frame over the buffering limit: exact size, no UTF-8 verdict past the hole."""
    _, events = feed_all(assembler(), [fr(1, b"abc", fin=False), fr(0, None, payload_len=1000, fin=False),
                                       fr(0, b"\xff")])
    (m,) = messages(events)
    assert (m.size, m.wire_bytes, m.complete, m.preview) == (1004, 1004, True, "abc…")
    assert problems(events) == []
    _, events = feed_all(assembler(), [fr(2, None, payload_len=50)])
    assert messages(events)[0].preview == "" and messages(events)[0].size == 50


# --- permessage-deflate -------------------------------------------------------------------------

def test_pmd_context_takeover_with_websockets_encoder() -> None:
    base = b'{"event":"price","symbol":"ABCD","bid":101.25,"ask":101.5,"seq":%d}'
    originals = [[base % i] for i in range(6)] + [[b"x" * 3000, b"y" * 10, b"x" * 3000]]
    encoded = ws_encode(originals)
    # Later messages really reference earlier ones: they shrink well below the first.
    assert len(encoded[5][0][0]) < len(encoded[0][0][0]) // 2
    frames = ws_frames(encoded)
    infos, events = feed_all(assembler(deflate=PMD, keep_payload=True), frames)
    assert kinds(events) == []
    msgs = messages(events)
    assert [m.payload for m in msgs] == [b"".join(o) for o in originals]
    assert [m.size for m in msgs] == [len(b"".join(o)) for o in originals]
    assert [m.wire_bytes for m in msgs] == [sum(len(d) for d, _, _ in e) for e in encoded]
    assert all(m.compressed for m in msgs) and all(i.compressed for i in infos)
    assert msgs[-1].frames == 3 and msgs[0].preview == (base % 0).decode()[:64] + "…"
    # The same frames without the context (a reset per message) cannot decode the later ones.
    _, events = feed_all(assembler(deflate=PMD_NCT), frames)
    assert K.DECOMPRESSION_FAILURE in kinds(events)


def test_pmd_no_context_takeover() -> None:
    originals = [[b"hello hello hello"], [b"hello hello hello"], [b"abc", b"def"]]
    encoded = ws_encode(originals, no_context_takeover=True, binary=True)
    assert encoded[0] == encoded[1]           # each message compressed from scratch
    _, events = feed_all(assembler(deflate=PMD_NCT, keep_payload=True), ws_frames(encoded, opcode=2))
    assert kinds(events) == []
    assert [m.payload for m in messages(events)] == [b"hello hello hello"] * 2 + [b"abcdef"]


def test_pmd_fragmented_message_with_split_character_and_interleaved_ping() -> None:
    text = "Grüße, ünïcödé! " * 40
    raw = text.encode()
    fragments = [raw[:101], raw[101:555], raw[555:]]       # cut inside two-byte characters
    assert raw[100] >= 0x80 or raw[554] >= 0x80
    (enc,) = ws_encode([fragments])
    assert [r for _, r, _ in enc] == [True, False, False]
    frames = ws_frames([enc])
    frames.insert(1, fr(9, b"p"))
    infos, events = feed_all(assembler(deflate=PMD), frames)
    assert kinds(events) == []
    (m,) = messages(events)
    assert (m.size, m.frames, m.compressed) == (len(raw), 3, True)
    assert m.preview == text[:64] + "…"
    assert [i.compressed for i in infos] == [True, False, True, True]


def test_pmd_uncompressed_message_between_compressed_ones() -> None:
    comp = zlib.compressobj(wbits=-15)
    frames = [fr(1, zlib_message(b"one one one", comp), rsv1=True), fr(1, b"plain"),
              fr(1, zlib_message(b"one one one", comp), rsv1=True)]
    infos, events = feed_all(assembler(deflate=PMD, keep_payload=True), frames)
    assert [(m.payload, m.compressed) for m in messages(events)] == [
        (b"one one one", True), (b"plain", False), (b"one one one", True)]
    assert [i.compressed for i in infos] == [True, False, True]


def test_deflate_params_of_the_sender_are_used() -> None:
    # Only the server resets its context; the client keeps it.
    params = DeflateParams("permessage-deflate", server_no_context_takeover=True)
    comp = zlib.compressobj(wbits=-15)
    frames = [fr(1, zlib_message(b"repeat me please", comp), rsv1=True) for _ in range(2)]
    _, events = feed_all(assembler(deflate=params, from_client=True), frames)
    assert kinds(events) == []
    _, events = feed_all(assembler(deflate=params, from_client=False), frames)
    assert kinds(events) == [K.DECOMPRESSION_FAILURE]


@pytest.mark.parametrize("bits", range(8, 16))
def test_window_bits(bits: int) -> None:
    data = os.urandom(200) * 5 + b"tail" + os.urandom(50) * 3
    originals = [[data], [data[:300]]]
    if bits == 8:
        # zlib (hence websockets) cannot compress with a 256-byte raw window; a zlib encoder that
        # negotiated 8 uses 9, whose longest distance (250) fits the 256-byte window.
        comp = zlib.compressobj(wbits=-9)
        frames = [fr(2, zlib_message(d[0], comp), rsv1=True) for d in originals]
    else:
        frames = ws_frames(ws_encode(originals, window_bits=bits), opcode=2)
    params = DeflateParams("permessage-deflate", client_max_window_bits=bits)
    _, events = feed_all(assembler(deflate=params, keep_payload=True), frames)
    assert kinds(events) == []
    assert [m.payload for m in messages(events)] == [data, data[:300]]


def test_window_bits_are_honoured() -> None:
    """The kept context is the negotiated window: a sender referencing farther back into an
    earlier message breaks the agreement, and that is reported, not guessed."""
    block = os.urandom(5000)
    comp = zlib.compressobj(wbits=-15)
    frames = [fr(2, zlib_message(block, comp), rsv1=True),
              fr(2, zlib_message(block, comp), rsv1=True)]   # distance 5000 > 2**9, into message 1
    params = DeflateParams("permessage-deflate", client_max_window_bits=9)
    _, events = feed_all(assembler(deflate=params), frames)
    assert [(p.kind, p.record_no) for p in problems(events)] == [(K.DECOMPRESSION_FAILURE, 2)]
    _, events = feed_all(assembler(deflate=PMD, keep_payload=True), frames)
    assert kinds(events) == [] and [m.payload for m in messages(events)] == [block, block]


def test_corrupt_message_then_later_messages_decode_without_context_takeover() -> None:
    good = zlib_message(b"good data " * 10)
    corrupt = b"\xff\xff\xff\xff\xff"                 # BTYPE 11: invalid block type
    frames = [fr(1, good, rsv1=True), fr(1, corrupt, rsv1=True), fr(1, good, rsv1=True),
              fr(1, good, rsv1=True)]
    _, events = feed_all(assembler(deflate=PMD_NCT, keep_payload=True), frames)
    assert [(p.kind, p.record_no) for p in problems(events)] == [(K.DECOMPRESSION_FAILURE, 2)]
    msgs = messages(events)
    assert [m.payload for m in msgs] == [b"good data " * 10, b"", b"good data " * 10, b"good data " * 10]
    assert msgs[1].complete      # it was all on the wire; only the content is bad


def test_corrupt_message_with_context_takeover_resyncs_on_self_contained_messages() -> None:
    comp = zlib.compressobj(wbits=-15)
    m1 = zlib_message(b"alpha beta gamma delta", comp)
    m3 = zlib_message(b"alpha beta gamma delta", comp)            # references m1's text
    fresh = zlib.compressobj(wbits=-15)
    m4 = zlib_message(b"a self contained message", fresh)          # references nothing before it
    m5 = zlib_message(b"a self contained message", fresh)          # references m4 only
    frames = [fr(1, m1, rsv1=True), fr(1, b"\xff\xff", rsv1=True), fr(1, m3, rsv1=True),
              fr(1, m4, rsv1=True), fr(1, m5, rsv1=True)]
    _, events = feed_all(assembler(deflate=PMD, keep_payload=True), frames)
    assert [(p.kind, p.record_no) for p in problems(events)] == [
        (K.DECOMPRESSION_FAILURE, 2), (K.DECOMPRESSION_FAILURE, 3)]
    assert "lost before" in problems(events)[1].detail
    assert [m.payload for m in messages(events)][3:] == [b"a self contained message"] * 2


def test_compressed_frame_without_payload() -> None:
    comp = zlib.compressobj(wbits=-15)
    frames = [fr(1, zlib_message(b"abc " * 50, comp), rsv1=True),
              fr(1, None, rsv1=True, payload_len=500),
              fr(1, zlib_message(b"xyz", comp), rsv1=True)]         # references nothing lost
    _, events = feed_all(assembler(deflate=PMD), frames)
    m1, m2, m3 = messages(events)
    assert (m1.size, m1.preview[:4]) == (200, "abc ")
    assert (m2.complete, m2.size, m2.wire_bytes, m2.preview) == (False, 0, 500, "")
    assert [(p.kind, p.record_no) for p in problems(events)] == [(K.DECOMPRESSION_FAILURE, 2)]
    assert (m3.complete, m3.preview) == (True, "xyz")


def test_gap_breaks_compressed_message_and_context() -> None:
    comp = zlib.compressobj(wbits=-15)
    raw = b"0123456789" * 100
    first = zlib_message(raw, comp)
    again = zlib_message(raw, comp)                                 # a back-reference into `first`
    asm = assembler(deflate=PMD)
    asm.feed(fr(2, first[:10], fin=False, rsv1=True))
    out = asm.gap(2, 2000)
    assert [m.complete for m in messages(out)] == [False]
    _, evs = asm.feed(fr(2, again, rsv1=True, rec=3))
    assert kinds(evs) == [K.DECOMPRESSION_FAILURE]


def test_pmd_over_limit_and_exact_limit() -> None:
    data = b"abcdefgh" * 1000                                       # 8000 bytes
    comp = zlib.compressobj(wbits=-15)
    frames = [fr(1, zlib_message(data, comp), rsv1=True)]
    _, events = feed_all(assembler(deflate=PMD, max_message_bytes=8000, keep_payload=True), frames)
    assert kinds(events) == [] and messages(events)[0].payload == data
    _, events = feed_all(assembler(deflate=PMD, max_message_bytes=7999, keep_payload=True), frames)
    (m,) = messages(events)
    assert kinds(events) == [K.MESSAGE_OVER_LIMIT]
    assert (m.size, m.payload, m.complete) == (7999, data[:7999], True)


def test_deflate_bomb_stops_at_the_limit_with_bounded_memory() -> None:
    zeros = bytes(50 << 20)
    bomb = zlib_message(zeros)
    del zeros
    assert len(bomb) < 100_000
    limit = 1 << 20
    frames = [fr(2, bomb[:20000], rsv1=True, fin=False), fr(0, bomb[20000:])]
    for keep in (False, True):
        asm = assembler(deflate=PMD, max_message_bytes=limit, keep_payload=keep)
        tracemalloc.start()
        try:
            _, events = feed_all(asm, frames)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        (m,) = messages(events)
        assert kinds(events) == [K.MESSAGE_OVER_LIMIT]
        assert m.size == limit and m.wire_bytes == len(bomb)
        assert m.payload == (bytes(limit) if keep else None)
        # Without the payload: a few output chunks; with it: the kept MiB plus its copy in Message.
        assert peak < (1 << 20 if not keep else 3.5 * limit), peak


def test_uncompressed_rsv1_without_deflate_is_plain_data() -> None:
    infos, events = feed_all(assembler(), [fr(1, b"hi", rsv1=True)])
    assert messages(events)[0].preview == "hi" and not infos[0].compressed


# --- deflate-frame (per frame) ------------------------------------------------------------------

@pytest.mark.parametrize("extension", ["x-webkit-deflate-frame", "deflate-frame"])
def test_deflate_frame_per_frame_with_context_takeover(extension: str) -> None:
    comp = zlib.compressobj(wbits=-15)
    parts = [b"frame one frame one ", b"frame one frame one ", b"plain", b"frame one!"]
    frames = [fr(1, zlib_message(parts[0], comp), rsv1=True, fin=False),
              fr(0, zlib_message(parts[1], comp), rsv1=True, fin=False),     # references frame 1
              fr(0, parts[2], fin=False),                                     # uncompressed frame
              fr(0, zlib_message(parts[3], comp), rsv1=True)]
    infos, events = feed_all(assembler(deflate=DeflateParams(extension), keep_payload=True), frames)
    assert kinds(events) == []
    (m,) = messages(events)
    assert m.payload == b"".join(parts) and m.compressed and m.frames == 4
    assert [i.compressed for i in infos] == [True, True, False, True]


def test_deflate_frame_no_context_takeover_and_corrupt_frame() -> None:
    params = DeflateParams("deflate-frame", client_no_context_takeover=True)
    frames = [fr(2, zlib_message(b"same same"), rsv1=True), fr(2, b"\x07\x00", rsv1=True),
              fr(2, zlib_message(b"same same"), rsv1=True)]
    _, events = feed_all(assembler(deflate=params, keep_payload=True), frames)
    assert [(p.kind, p.record_no) for p in problems(events)] == [(K.DECOMPRESSION_FAILURE, 2)]
    assert [m.payload for m in messages(events)] == [b"same same", b"", b"same same"]


def test_deflate_frame_over_limit_across_frames() -> None:
    params = DeflateParams("deflate-frame", client_no_context_takeover=True)
    frames = [fr(2, zlib_message(b"a" * 600), rsv1=True, fin=False),
              fr(0, zlib_message(b"b" * 600), rsv1=True)]
    _, events = feed_all(assembler(deflate=params, max_message_bytes=1000, keep_payload=True), frames)
    (m,) = messages(events)
    assert kinds(events) == [K.MESSAGE_OVER_LIMIT]
    assert (m.size, m.payload) == (1000, b"a" * 600 + b"b" * 400)


# --- the Inflater on its own --------------------------------------------------------------------

def test_inflater_streaming_equals_whole_and_context_takeover() -> None:
    data = os.urandom(3000) * 4
    comp = zlib.compressobj(wbits=-15)
    c1, c2 = zlib_message(data, comp), zlib_message(data, comp)
    inf = Inflater()
    assert inf.inflate_message([c1], 1 << 20) == (data, False)
    # Byte by byte through the streaming variant, the second message (all back-references).
    stream = inf.stream(1 << 20)
    out = b"".join(piece for i in range(len(c2)) for piece in stream.feed(c2[i:i + 1]))
    out += b"".join(stream.end())
    assert out == data and not stream.over_limit
    with pytest.raises(InflateError):
        Inflater().inflate_message([c2], 1 << 20)            # no history: distance too far back


def test_inflater_limits_and_corruption() -> None:
    data = b"z" * 100_000
    comp = zlib_message(data)
    assert Inflater().inflate_message([comp], 100_000) == (data, False)
    assert Inflater().inflate_message([comp], 99_999) == (data[:99_999], True)
    assert Inflater().inflate_message([comp], 0) == (b"", True)
    with pytest.raises(InflateError):
        Inflater().inflate_message([b"\xff\x00\x13"], 100)
    inf = Inflater(no_context_takeover=True)
    with pytest.raises(InflateError):
        inf.inflate_message([b"\xff"], 100)
    assert inf.inflate_message([comp], 1 << 20) == (data, False)
    assert inf.context_lost is None


def test_inflater_over_limit_loses_context_with_takeover() -> None:
    comp = zlib.compressobj(wbits=-15)
    big, small = zlib_message(b"q" * 5000, comp), zlib_message(b"q" * 10, comp)
    inf = Inflater()
    assert inf.inflate_message([big], 100)[1] is True
    assert inf.context_lost is not None
    with pytest.raises(InflateError, match="lost before"):
        inf.inflate_message([small], 100)


def test_inflater_bfinal_stream() -> None:
    comp = zlib.compressobj(wbits=-15)
    body = comp.compress(b"final block") + comp.flush()          # BFINAL=1, no sync flush
    assert Inflater().inflate_message([body], 100) == (b"final block", False)
    with pytest.raises(InflateError, match="BFINAL"):
        Inflater().inflate_message([body, zlib_message(b"more")], 100)


# --- split invariance --------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=100).map(str.encode)),
       st.lists(st.integers(0, 300), max_size=5), st.sampled_from([1, 2]), st.booleans(),
       st.sampled_from([0, 1, 2, 10]))
def test_fragmenting_a_message_changes_nothing_but_frame_counts(data: bytes, cuts: list[int], opcode: int,
                                                                compress: bool, preview_len: int) -> None:
    """One frame (the fast path) and the same bytes in fragments give the same message, preview
    (preview_len=0: none at all) and problems."""
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)] or [b""]

    def run(parts: list[bytes]) -> tuple[list[object], list[tuple[K, str]]]:
        deflate = PMD if compress else None
        if compress:
            encoded = ws_encode([parts], binary=opcode == 2)
            frames = ws_frames(encoded, opcode=opcode)
        else:
            frames = [fr(opcode if i == 0 else 0, p, fin=i == len(parts) - 1) for i, p in enumerate(parts)]
        _, events = feed_all(assembler(deflate=deflate, keep_payload=True, preview_len=preview_len,
                                       max_message_bytes=200), frames)
        (m,) = messages(events)
        return ([m.type, m.size, m.preview, m.payload, m.compressed, m.complete],
                [(p.kind, p.detail.split(":")[-2] if p.kind is K.INVALID_UTF8 else "")
                 for p in problems(events)])

    assert run([data]) == run(pieces)


# --- never raise ----------------------------------------------------------------------------------

_COMP = zlib.compressobj(wbits=-15)
_SAMPLES = [b"", b"hello", "é😀".encode(), b"\xff\xfe", b"\x03\xe8", b"\x03",
            zlib_message(b"hello hello", _COMP), zlib_message(b"hello again", _COMP), b"\x00\x00\xff\xff"]

frame_st = st.builds(
    fr,
    st.sampled_from([0, 0, 1, 2, 3, 8, 9, 10, 11]),
    st.one_of(st.sampled_from(_SAMPLES), st.binary(max_size=40), st.none()),
    fin=st.booleans(), rsv1=st.booleans(), payload_len=st.one_of(st.none(), st.integers(0, 10**9)),
)
action_st = st.one_of(frame_st, st.sampled_from(["gap", "finish"]))
deflate_st = st.sampled_from([None, PMD, PMD_NCT, DeflateParams("x-webkit-deflate-frame"),
                              DeflateParams("deflate-frame", client_no_context_takeover=True,
                                            client_max_window_bits=8)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action_st, max_size=25), deflate_st, st.integers(0, 40), st.booleans())
def test_random_frame_sequences_never_raise(actions: list[object], deflate: DeflateParams | None,
                                            limit: int, keep: bool) -> None:
    asm = assembler(deflate=deflate, max_message_bytes=limit, keep_payload=keep, preview_len=8)
    events: list[object] = []
    ids: list[int] = []
    for rec, action in enumerate(actions, 1):
        if action == "gap":
            events += asm.gap(rec, rec)
        elif action == "finish":
            events += asm.finish(rec, rec)
        else:
            assert isinstance(action, Frame)
            info, evs = asm.feed(action)
            events += evs
            if action.opcode >= 3:
                assert info.message_id is None and not info.compressed
            if info.message_id is not None:
                ids.append(info.message_id)
    events += asm.finish(None, None)
    msgs = messages(events)
    # Every message is emitted once, and every frame id belongs to an emitted message.
    assert len({m.message_id for m in msgs}) == len(msgs)
    assert set(ids) <= {m.message_id for m in msgs}
    for m in msgs:
        assert m.frames >= 1 and m.wire_bytes >= 0 and m.size >= 0
        if m.compressed and (deflate is None or deflate.extension == "permessage-deflate"):
            # (with deflate-frame a message may mix plain frames, whose size counts exactly even
            # past the limit, with compressed ones: only inflated bytes stop at the limit)
            assert m.size <= limit
        if m.payload is not None:
            assert len(m.payload) <= min(m.size, limit)
    # No bad-input kind stands for a bug of ours (an exception would have failed the test).
    assert K.MALFORMED_PACKET not in kinds(events)


def _deflate_message(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _fr(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, n: int = 1) -> Frame:
    return Frame(n, n * 1000, opcode, fin, rsv1, False, False, False, len(payload), payload, 2, None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.booleans(),
                       st.one_of(st.binary(max_size=300),
                                 st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))),
             min_size=1, max_size=6),
    st.sampled_from([8, 64, 1 << 20]), st.booleans(), st.booleans())
def test_one_frame_compressed_fast_path_matches_the_general_path(messages, limit, takeover, corrupt):
    """A permessage-deflate message in one frame (fast path) and the same bytes as two frames
    (general path) give the same messages, frame infos and problems."""
    deflate = DeflateParams("permessage-deflate", client_no_context_takeover=not takeover)

    def run(split: bool) -> list:
        a = MessageAssembler(next_message_id=itertools.count(1).__next__, from_client=True,
                             deflate=deflate, max_message_bytes=limit, keep_payload=True)
        comp = zlib.compressobj(wbits=-15)
        seen = []
        for i, (text, data) in enumerate(messages):
            wire = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
            wire = wire[:-4]
            if corrupt and i == 0:
                wire = b"\xff\xff" + wire
            if not takeover:
                comp = zlib.compressobj(wbits=-15)
            op = 1 if text else 2
            if split and len(wire) > 1:
                frames = [_fr(op, wire[:1], fin=False, rsv1=True, n=i), _fr(0, wire[1:], n=i)]
            else:
                frames = [_fr(op, wire, rsv1=True, n=i)]
            for f in frames:
                info, events = a.feed(f)
                seen.append(info.message_id)
                for ev in events:
                    if isinstance(ev, Message):
                        seen.append((ev.message_id, ev.type, ev.size, ev.compressed, ev.complete,
                                     ev.preview, ev.payload))
                    else:
                        seen.append((ev.kind, ev.detail))
        return seen

    whole, split = run(False), run(True)
    # frame infos differ in count (two frames vs one); compare messages and problems
    assert [x for x in whole if not isinstance(x, int)] == [x for x in split if not isinstance(x, int)]
