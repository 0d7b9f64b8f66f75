"""Fuzz targets: one function per pipeline stage, each taking raw bytes and checking invariants.

Every target is deterministic in its input bytes (parameters come from the first byte, cut points
from a PRNG seeded with a CRC of the input), so a crasher is reproduced by its bytes alone and can
be stored as a file under tests/fuzz/crashers/<target>/. A target raises AssertionError when an
invariant breaks; any other exception escaping a stage is a crash.

Used by the hypothesis tests (tests/fuzz/test_fuzz_*.py) and by the mutation campaign
(tests/fuzz/campaign.py).
"""

from __future__ import annotations

import os
import random
import struct
import tempfile
import zlib
from collections.abc import Callable
from functools import cache, lru_cache

from analyzer.capture import CaptureError, CaptureReader
from analyzer.events import (
    DeflateParams,
    Frame,
    HandshakeDone,
    Message,
    NotWebSocket,
    PacketRecord,
    Problem,
    Segment,
    StreamClosed,
    StreamData,
    StreamEnd,
    StreamGap,
    StreamOpened,
    StreamProblem,
)
from analyzer.frames import FrameDecoder, PayloadBudget
from analyzer.frames_hixie import HixieFrameDecoder
from analyzer.handshake import HandshakeParser
from analyzer.inflate import InflateError, Inflater
from analyzer.messages import MessageAssembler
from analyzer.packets import PacketDecoder
from analyzer.protocol import ProblemKind
from analyzer.streams import Reassembler

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CRASHERS = os.path.join(HERE, "crashers")

#: Separates the pieces of a multi-part input (two directions, several messages, several records).
SEP = b"\n--8<--\n"

_MAX_PAYLOADS = (0, 1, 125, 126, 1000, 65536, 16 << 20)


def _rng(data: bytes) -> random.Random:
    return random.Random(zlib.crc32(data) ^ len(data) << 32)


def _chunks(data: bytes, rng: random.Random, max_pieces: int = 12) -> list[bytes]:
    """Cut data at random points (at most max_pieces pieces)."""
    if len(data) < 2:
        return [data] if data else []
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randrange(0, max_pieces))})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]  # noqa: RUF007 (3.10 has pairwise; kept plain)


def _param(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


# --- handshake ----------------------------------------------------------------------------------

def fuzz_handshake(data: bytes) -> None:
    """Two directions (split at SEP) fed interleaved in random pieces, with an occasional gap."""
    p, body = _param(data)
    client, _, server = body.partition(SEP)
    rng = _rng(data)
    budget = PayloadBudget((300, 1 << 30)[(p >> 6) & 1])
    parser = HandshakeParser(max_header_bytes=(256, 4096, 65536)[p % 3], budget=budget)
    queues = [_chunks(client, rng), _chunks(server, rng)]
    fed: list[bytearray] = [bytearray(), bytearray()]
    done = False
    record = 0
    while queues[0] or queues[1]:
        d = rng.randrange(2) if queues[0] and queues[1] else (0 if queues[0] else 1)
        piece = queues[d].pop(0)
        record += 1
        if p & 0x80 and rng.random() < 0.05:
            events = parser.gap(d)
        else:
            fed[d] += piece
            events = parser.feed(d, piece, record, record * 1000)
        if done:
            assert events == [], f"events after the parser finished: {events}"
        done = _check_handshake_events(events, fed) or done
    events = parser.finish()
    if done:
        assert events == []
    _check_handshake_events(events, fed)
    assert budget.held == 0, f"{budget.held} bytes still held after finish()"
    assert parser.feed(0, b"GET / HTTP/1.1\r\n\r\n", record + 1, 0) == [] or not done


def _check_handshake_events(events: list, fed: list[bytearray]) -> bool:
    finished = False
    for ev in events:
        assert type(ev) in (HandshakeDone, NotWebSocket, Problem), type(ev)
        assert not finished, f"{ev!r} after the parser finished (ok HandshakeDone or NotWebSocket)"
        if type(ev) is Problem:
            assert isinstance(ev.kind, ProblemKind)
        elif type(ev) is HandshakeDone:
            assert ev.client_direction in (0, 1)
            for d in (0, 1):
                assert bytes(fed[d]).endswith(ev.trailing[d]), "trailing bytes were never fed"
            if ev.handshake.ok:
                finished = True
        else:
            finished = True
    return finished


# --- frames -------------------------------------------------------------------------------------

def fuzz_frames(data: bytes) -> None:
    """RFC 6455 decoder: random pieces and gaps; bytes_consumed accounts for every byte."""
    p, body = _param(data)
    rng = _rng(data)
    budget = PayloadBudget((64, 1 << 30)[p >> 7])
    dec = FrameDecoder(from_client=bool(p & 1), hybi04_opcodes=bool(p & 2), allowed_rsv=(p >> 2) & 7,
                       max_payload=_MAX_PAYLOADS[(p >> 5) % len(_MAX_PAYLOADS)], budget=budget)
    _drive_frames(dec, body, rng, gaps=bool(p & 0x80 and p & 0x10))
    assert budget.held == 0, f"{budget.held} bytes still held after finish()"


def fuzz_hixie(data: bytes) -> None:
    """hixie-75/76 decoder: same invariants as fuzz_frames."""
    p, body = _param(data)
    rng = _rng(data)
    budget = PayloadBudget((64, 1 << 30)[p >> 7 ^ p & 1])
    dec = HixieFrameDecoder(from_client=bool(p & 1), max_payload=_MAX_PAYLOADS[(p >> 1) % len(_MAX_PAYLOADS)],
                            budget=budget)
    _drive_frames(dec, body, rng, gaps=bool(p & 0x80))
    assert budget.held == 0, f"{budget.held} bytes still held after finish()"


def _drive_frames(dec: FrameDecoder | HixieFrameDecoder, body: bytes, rng: random.Random,
                  gaps: bool) -> list:
    total = 0
    events: list = []
    for n, piece in enumerate(_chunks(body, rng), start=1):
        events += dec.feed(piece, n, n)
        total += len(piece)
        if gaps and rng.random() < 0.3:
            size = rng.choice((1, 2, 7, 100, 70000))
            events += dec.gap(size, n, n)
            total += size
    events += dec.finish()
    assert dec.bytes_consumed == total, f"bytes_consumed={dec.bytes_consumed}, fed={total}"
    assert dec.finish() == [] or True
    max_payload = dec._max_payload
    for ev in events:
        assert type(ev) in (Frame, Problem), type(ev)
        if type(ev) is Frame:
            assert 0 <= ev.opcode <= 15
            assert ev.payload_len >= 0
            if ev.payload is not None:
                assert len(ev.payload) == ev.payload_len
                assert ev.payload_len <= max_payload
    return events


# --- messages -----------------------------------------------------------------------------------

_DEFLATES = (
    None,
    DeflateParams("permessage-deflate"),
    DeflateParams("permessage-deflate", server_no_context_takeover=True, client_no_context_takeover=True),
    DeflateParams("permessage-deflate", server_max_window_bits=9, client_max_window_bits=8),
    DeflateParams("x-webkit-deflate-frame"),
    DeflateParams("deflate-frame", client_no_context_takeover=True),
)


def fuzz_messages(data: bytes) -> None:
    """Frames (decoded from the input, any RSV allowed) into the message assembler."""
    p, body = _param(data)
    rng = _rng(data)
    limit = (0, 10, 1000, 1 << 20)[(p >> 4) & 3]
    deflate = _DEFLATES[(p >> 1) % len(_DEFLATES)]
    dec = FrameDecoder(from_client=bool(p & 1), allowed_rsv=7, max_payload=limit if p & 0x40 else 1 << 20)
    ids = iter(range(1, 1 << 30))
    asm = MessageAssembler(next_message_id=ids.__next__, from_client=bool(p & 1),
                           deflate=deflate, max_message_bytes=limit,
                           keep_payload=bool(p & 0x80), preview_len=(0, 8, 64)[p % 3])
    events: list = []
    for n, piece in enumerate(_chunks(body, rng), start=1):
        for ev in dec.feed(piece, n, n):
            if type(ev) is Frame:
                _info, mevs = asm.feed(ev)
                events += mevs
        if rng.random() < 0.05:
            dec.gap(3, n, n)
            events += asm.gap(n, n)
    dec.finish()
    events += asm.finish(None, None)
    last_id = 0
    for ev in events:
        assert type(ev) in (Message, Problem), type(ev)
        if type(ev) is Problem:
            assert ev.kind is not ProblemKind.MALFORMED_PACKET, f"internal error: {ev.detail}"
        else:
            assert ev.message_id > last_id
            last_id = ev.message_id
            if ev.compressed and deflate is not None and deflate.extension == "permessage-deflate":
                assert ev.size <= limit     # inflating stops at the limit (deflate-frame may mix in
                                            # uncompressed frames, whose size stays exact)
            if ev.payload is not None:
                assert len(ev.payload) <= limit
                assert len(ev.payload) <= ev.size


# --- inflate ------------------------------------------------------------------------------------

def fuzz_inflate(data: bytes) -> None:
    """Messages (split at SEP) inflated in chunks; output per message never over the limit."""
    p, body = _param(data)
    rng = _rng(data)
    limit = (0, 1, 100, 1 << 16, 1 << 20)[p % 5]
    inflater = Inflater(window_bits=8 + (p >> 3) % 8, no_context_takeover=bool(p & 0x80))
    for message in body.split(SEP):
        stream = inflater.stream(limit)
        produced = 0
        try:
            for chunk in _chunks(message, rng, 6):
                for piece in stream.feed(chunk):
                    produced += len(piece)
            if rng.random() < 0.1:
                stream.abandon("fuzz")
            else:
                for piece in stream.end():
                    produced += len(piece)
        except InflateError:
            pass
        assert produced <= limit, f"inflated {produced} > limit {limit}"
        assert stream.produced == produced


# --- reassembler --------------------------------------------------------------------------------

_ADDRS = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x03")
_SEG = struct.Struct("!BBIIH")      # flow/direction, flags, seq, ack, payload length


def decode_segments(data: bytes) -> list[Segment]:
    """Input bytes → segments: 12-byte headers (see _SEG) each followed by its payload."""
    segs: list[Segment] = []
    pos = 0
    ts = 1_000_000_000
    rec = 0
    while pos + _SEG.size <= len(data):
        who, flags, seq, ack, n = _SEG.unpack_from(data, pos)
        pos += _SEG.size
        payload = data[pos:pos + (n & 0x3FF)]
        pos += len(payload)
        flow = who & 3
        a, b = _ADDRS[flow % 3], _ADDRS[(flow + 1) % 3]
        pa, pb = 40000 + (who >> 4 & 3), 80
        if who & 4:
            a, b, pa, pb = b, a, pb, pa
        rec += 1
        ts += (who >> 6) * 10**9 * (1 if who & 8 else 4000)     # sometimes a long idle time
        segs.append(Segment(rec, ts, 4, a, b, pa, pb, seq, ack, flags, payload, bool(flags & 0x40)))
    return segs


def encode_segments(segs: list[tuple[int, int, int, int, bytes]]) -> bytes:
    """(who, flags, seq, ack, payload) → the input format of decode_segments."""
    return b"".join(_SEG.pack(w, f, s & 0xFFFFFFFF, a & 0xFFFFFFFF, len(p)) + p for w, f, s, a, p in segs)


def fuzz_reassembler(data: bytes) -> None:
    """Random segments: never more bytes out than in, caps hold, every flow released at the end."""
    p, body = _param(data)
    per_flow = (64, 1000, 8 << 20)[p % 3]
    total_cap = (100, 3000, 256 << 20)[(p >> 2) % 3]
    r = Reassembler(max_buffered_per_flow=per_flow, max_buffered_total=total_cap,
                    idle_timeout_ns=(10**9, 3600 * 10**9)[(p >> 4) & 1], max_flows=(1, 2, 100)[(p >> 5) % 3])
    fed: dict[tuple, int] = {}
    open_ids: dict[int, tuple] = {}
    delivered: dict[tuple, int] = {}
    events: list = []
    for seg in decode_segments(body):
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        fed[key] = fed.get(key, 0) + len(seg.payload)
        evs = r.feed(seg)
        _check_stream_events(evs, open_ids, delivered)
        events += evs
        assert 0 <= r.bytes_buffered <= max(total_cap, 0) + 1024, r.bytes_buffered
    _check_stream_events(r.finish(), open_ids, delivered)
    assert r.flows_open == 0 and r.bytes_buffered == 0
    assert not open_ids, f"flows never closed: {open_ids}"
    assert sum(delivered.values()) <= sum(fed.values()), "delivered more bytes than were fed"


def _check_stream_events(evs: list, open_ids: dict[int, tuple], delivered: dict[tuple, int]) -> None:
    for ev in evs:
        t = type(ev)
        if t is StreamOpened:
            assert ev.conn_id not in open_ids
            open_ids[ev.conn_id] = (ev.client, ev.client_port, ev.server, ev.server_port)
        elif t in (StreamData, StreamGap, StreamEnd, StreamProblem):
            assert ev.conn_id in open_ids, f"{t.__name__} for a flow that is not open"
            if t is StreamData:
                assert ev.data, "empty StreamData"
                key = (ev.conn_id, ev.direction)
                delivered[key] = delivered.get(key, 0) + len(ev.data)
            elif t is StreamGap:
                assert ev.size > 0
        elif t is StreamClosed:
            assert open_ids.pop(ev.conn_id, None) is not None, "closed twice"
        else:
            raise AssertionError(f"unexpected event {ev!r}")


# --- packets ------------------------------------------------------------------------------------

_LINKTYPES = (1, 1, 1, 113, 276, 0, 108, 101, 228, 229, 12, 14, 1, 1, 1, 1)


def fuzz_packets(data: bytes) -> None:
    """Records (split at SEP) of one link type; caplen/wirelen sometimes disagree."""
    p, body = _param(data)
    lt = _LINKTYPES[p & 15]
    dec = PacketDecoder()
    for n, rec in enumerate(body.split(SEP), start=1):
        wirelen = len(rec) + (p >> 4 & 3) * 100
        seg = dec.decode(PacketRecord(n, n * 1000, lt, len(rec), wirelen, rec))
        if seg is not None:
            assert type(seg) is Segment
            assert len(seg.payload) <= len(rec) + 65535 + 8
            assert 0 <= seg.sport < 65536 and 0 <= seg.dport < 65536
            assert seg.ip_version in (4, 6)
    dec.finish()
    for prob in dec.problems:
        assert isinstance(prob.kind, ProblemKind)


# --- capture files ------------------------------------------------------------------------------

def _tmp_capture(data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="wsfuzz-", suffix=".pcap")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def fuzz_capture(data: bytes) -> None:
    """Any bytes as a capture file: CaptureError on open, or records (+ problems), nothing else."""
    path = _tmp_capture(data)
    try:
        try:
            reader = CaptureReader(path)
        except CaptureError as exc:
            assert "\n" not in str(exc)
            return
        with reader:
            n = last = 0
            try:
                for rec in reader:
                    n += 1
                    assert rec.record_no > last     # a skipped record keeps its number (Wireshark's)
                    last = rec.record_no
                    assert len(rec.data) == rec.caplen, (len(rec.data), rec.caplen)
                    assert isinstance(rec.ts_ns, int)
            except CaptureError as exc:             # damage before any record: nothing readable
                assert n == 0 and "nothing readable" in str(exc) and "\n" not in str(exc)
        assert reader.records_read == n
        for prob in reader.problems:
            assert isinstance(prob.kind, ProblemKind)
    finally:
        os.unlink(path)


def fuzz_pipeline(data: bytes) -> None:
    """Any bytes as a capture through the whole pipeline (rows only, no DataFrames)."""
    from analyzer.pipeline import analyze_file
    from analyzer.session import Options

    path = _tmp_capture(data)
    try:
        try:
            limit = (1 << 16) if data[-1:] == b"\x00" else 16 << 20
            rows = analyze_file(path, Options(max_message_bytes=limit))
        except CaptureError as exc:
            assert "\n" not in str(exc)
            return
        assert rows.packets >= 0
    finally:
        os.unlink(path)


def fuzz_analyze(data: bytes) -> None:
    """Any bytes through analyzer.analyze(): the DataFrames too."""
    import analyzer

    path = _tmp_capture(data)
    try:
        try:
            a = analyzer.analyze(path)
        except analyzer.CaptureError as exc:
            assert "\n" not in str(exc)
            return
        assert list(a.problems.columns)[:1] or True
        len(a.frames), len(a.connections), len(a.messages), len(a.problems)
    finally:
        os.unlink(path)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "handshake": fuzz_handshake,
    "frames": fuzz_frames,
    "hixie": fuzz_hixie,
    "messages": fuzz_messages,
    "inflate": fuzz_inflate,
    "reassembler": fuzz_reassembler,
    "packets": fuzz_packets,
    "capture": fuzz_capture,
    "pipeline": fuzz_pipeline,
    "analyze": fuzz_analyze,
}


# --- seeds: real bytes from the repository's captures -------------------------------------------

def capture_files() -> list[str]:
    """The captures under captures/ and tests/data/ (smallest first)."""
    out = []
    for folder in (os.path.join(ROOT, "captures"), os.path.join(ROOT, "tests", "data")):
        for name in sorted(os.listdir(folder)):
            if name.endswith((".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")):
                out.append(os.path.join(folder, name))
    return sorted(out, key=os.path.getsize)


@lru_cache(maxsize=1)
def _streams() -> tuple[list[bytes], list[tuple[bytes, bytes]], list[tuple[int, bytes]], list[bytes]]:
    """(records as linktype+bytes, per-connection (client, server) stream bytes, segments)."""
    records: list[tuple[int, bytes]] = []
    pairs: list[tuple[bytes, bytes]] = []
    segs: list[bytes] = []
    for path in capture_files():
        if os.path.getsize(path) > 1_000_000:
            continue
        dec = PacketDecoder()
        r = Reassembler()
        data: dict[int, list[bytearray]] = {}
        seg_list = []
        with CaptureReader(path) as reader:
            for rec in reader:
                if len(records) < 4000 and rec.record_no % 3 == 0:
                    records.append((rec.linktype, rec.data[:2000]))
                seg = dec.decode(rec)
                if seg is None:
                    continue
                if len(seg_list) < 60:
                    seg_list.append(seg)
                for ev in r.feed(seg):
                    if type(ev) is StreamOpened:
                        data[ev.conn_id] = [bytearray(), bytearray()]
                    elif type(ev) is StreamData and len(data[ev.conn_id][ev.direction]) < 20000:
                        data[ev.conn_id][ev.direction] += ev.data
        for a, b in data.values():
            if a or b:
                pairs.append((bytes(a), bytes(b)))
        if seg_list:
            segs.append(_encode_real_segments(seg_list))
    return [], pairs, records, segs


def _encode_real_segments(seg_list: list[Segment]) -> bytes:
    first = seg_list[0]
    out = []
    for s in seg_list:
        who = 0 if (s.src, s.sport) == (first.src, first.sport) else 4
        out.append((who, s.flags, s.seq, s.ack, s.payload[:1023]))
    return encode_segments(out)


def _deflate_messages(rng: random.Random) -> list[bytes]:
    msgs = []
    comp = zlib.compressobj(wbits=-15)
    for _ in range(4):
        text = bytes(rng.choice(b"abc {}:\"0123") for _ in range(rng.randrange(1, 3000)))
        msgs.append((comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4])
    return msgs


def bomb(size: int) -> bytes:
    """A raw-deflate message (tail removed) that inflates to `size` zero bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = []
    left = size
    while left > 0:
        n = min(left, len(chunk))
        out.append(comp.compress(chunk[:n]))
        left -= n
    out.append(comp.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(out)[:-4]


def _ws_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
              mask: bytes | None = None) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask:
        from analyzer.masking import unmask
        return head + mask + unmask(payload, mask)
    return head + payload


@cache
def seeds(target: str) -> tuple[bytes, ...]:
    """Well-formed inputs for a target, from the captures and a few hand-made ones."""
    rng = random.Random(1234)
    _, pairs, records, segs = _streams()
    out: list[bytes] = []
    if target == "handshake":
        for p, (a, b) in enumerate(pairs):
            out.append(bytes([p % 256]) + a[:4000] + SEP + b[:4000])
    elif target in ("frames", "hixie", "messages"):
        for p, (a, b) in enumerate(pairs):
            for d, stream in enumerate((a, b)):
                cut = stream.find(b"\r\n\r\n")
                body = stream[cut + 4:] if cut >= 0 else stream
                if target == "hixie" and d == 0 and len(body) >= 8:
                    body = body[8:]               # hixie-76 key3
                if body:
                    param = (p * 7 + d) % 256
                    if target != "hixie":
                        param = (param & ~1) | (d == 0)
                    out.append(bytes([param]) + body[:8000])
        if target == "messages":
            for msg in _deflate_messages(rng):
                out.append(bytes([0x12]) + _ws_frame(1, msg, rsv=4))
            out.append(bytes([0x12]) + _ws_frame(2, bomb(1 << 22), rsv=4))
        if target == "frames":
            out.append(bytes([0x00]) + b"\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff" + b"x" * 100)
    elif target == "inflate":
        for p in range(8):
            out.append(bytes([p * 37 % 256]) + SEP.join(_deflate_messages(rng)))
        out.append(bytes([4]) + bomb(1 << 22))
    elif target == "reassembler":
        for p, s in enumerate(segs):
            out.append(bytes([p * 29 % 256]) + s)
    elif target == "packets":
        for p, (lt, rec) in enumerate(records[:600]):
            param = _LINKTYPES.index(lt) if lt in _LINKTYPES else 0
            out.append(bytes([param | (p % 4) << 4]) + rec)
    elif target in ("capture", "pipeline", "analyze"):
        for path in capture_files():
            if os.path.getsize(path) <= (200_000 if target != "capture" else 1_000_000):
                with open(path, "rb") as f:
                    out.append(f.read())
        if target == "capture":
            import gzip
            out.append(gzip.compress(out[0]))
    return tuple(out)


def crashers(target: str) -> list[tuple[str, bytes]]:
    """The stored crashers of a target: (file name, bytes)."""
    folder = os.path.join(CRASHERS, target)
    if not os.path.isdir(folder):
        return []
    out = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.append((name, f.read()))
    return out
