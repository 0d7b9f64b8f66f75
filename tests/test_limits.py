"""Resource limits that must hold on hostile input: nothing a capture claims is allocated before it
is there, decompression stops at max_message_bytes, and flow/buffer/fragment tables stay bounded.

Memory is measured with tracemalloc (Python-level allocations: bytes, bytearrays, objects).
"""

from __future__ import annotations

import gc
import struct
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

import analyzer
from analyzer import packets as packets_mod
from analyzer.budget import SHARED_BUDGET, PayloadBudget
from analyzer.capture import CaptureReader
from analyzer.events import Frame, PacketRecord, Problem, Segment, StreamData, StreamProblem
from analyzer.frames import FrameDecoder
from analyzer.frames_hixie import HixieFrameDecoder
from analyzer.handshake import HandshakeParser
from analyzer.messages import MessageAssembler
from analyzer.packets import PacketDecoder
from analyzer.protocol import ProblemKind as K
from analyzer.streams import Reassembler
from tests.pcapgen import (
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    Conversation,
    frame,
    upgrade_request,
    upgrade_response,
    write_pcap,
)

MB = 1 << 20


def peak_of(fn: Callable[[], object]) -> tuple[object, int]:
    """(result, peak bytes allocated above the level at the start) of fn()."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak


def kinds(events: list) -> list[K]:
    return [e.kind for e in events if isinstance(e, Problem)]


# --- frames: lengths are counted, never allocated --------------------------------------------------

def test_64bit_length_2_63_minus_1_allocates_nothing() -> None:
    dec = FrameDecoder(from_client=False)
    head = b"\x82\x7f" + struct.pack("!Q", (1 << 63) - 1)
    chunk = bytes(64 * 1024)

    def run() -> list:
        out = dec.feed(head, 1, 1)
        for n in range(16):
            out += dec.feed(chunk, 2 + n, 2 + n)
        return out

    events, peak = peak_of(run)
    assert peak < 64 * 1024, f"{peak} bytes allocated for a frame that was only counted"
    assert kinds(events) == [K.FRAME_TOO_LARGE]
    assert not [e for e in events if isinstance(e, Frame)]
    end = dec.finish()
    assert kinds(end) == [K.CAPTURE_ENDS_MID_FRAME]
    assert dec.bytes_consumed == len(head) + 16 * len(chunk)


def test_64bit_length_with_top_bit_is_reported_not_allocated() -> None:
    dec = FrameDecoder(from_client=False)
    events, peak = peak_of(lambda: dec.feed(b"\x82\xff" + b"\xff" * 8 + b"\x00" * 4 + b"x" * 100, 1, 1))
    assert K.LENGTH_TOP_BIT_SET in kinds(events)
    assert peak < 16 * 1024


def test_1gb_frame_is_counted_not_buffered() -> None:
    """A 1 GiB server frame streamed through the decoder and the message layer in 1 MiB chunks."""
    size = 1 << 30
    dec = FrameDecoder(from_client=False, max_payload=16 * MB)
    asm = MessageAssembler(next_message_id=iter(range(1, 100)).__next__, from_client=False,
                           max_message_bytes=16 * MB)
    head = b"\x82\x7f" + struct.pack("!Q", size)
    chunk = b"\xab" * MB          # allocated before measuring; fed 1024 times

    def run() -> list:
        out = []
        for ev in dec.feed(head, 1, 1):
            out.append(ev)
        for n in range(size // MB):
            for ev in dec.feed(chunk, 2 + n, 2 + n):
                out.append(ev)
                if isinstance(ev, Frame):
                    _info, mevs = asm.feed(ev)
                    out += mevs
        return out

    events, peak = peak_of(run)
    assert peak < 2 * MB, f"peak {peak} bytes while streaming a 1 GiB frame"
    frames = [e for e in events if isinstance(e, Frame)]
    assert len(frames) == 1 and frames[0].payload is None and frames[0].payload_len == size
    assert frames[0].record_no == 1 + size // MB            # the packet that completed it
    assert K.FRAME_TOO_LARGE in kinds(events) and K.MESSAGE_OVER_LIMIT in kinds(events)
    messages = [e for e in events if type(e).__name__ == "Message"]
    assert [m.size for m in messages] == [size]             # exact size, nothing kept
    assert dec.bytes_consumed == len(head) + size


def test_hixie_huge_frames_are_counted_not_buffered() -> None:
    dec = HixieFrameDecoder(from_client=False, max_payload=MB)
    # binary frame: type 0x80, length 2^60 in base-128 digits; then a text frame that never ends
    digits = []
    n = 1 << 60
    while n:
        digits.append(n & 0x7F)
        n >>= 7
    length = bytes(d | 0x80 for d in reversed(digits[1:])) + bytes([digits[0]])
    chunk = bytes(MB)

    def run() -> list:
        out = dec.feed(b"\x80" + length, 1, 1)
        for i in range(8):
            out += dec.feed(chunk, 2 + i, 2 + i)
        return out

    events, peak = peak_of(run)
    assert kinds(events) == [K.FRAME_TOO_LARGE]
    assert peak < 256 * 1024


def test_partial_frames_on_many_connections_share_one_bounded_budget() -> None:
    """1000 connections each in the middle of a 64 KiB frame would hold 64 MB; the budget holds 1 MiB."""
    budget = PayloadBudget(MB)
    decoders = [FrameDecoder(from_client=False, budget=budget) for _ in range(1000)]
    head = b"\x82\x7e" + struct.pack("!H", 65535)
    events: list = []
    for d in decoders:
        events += d.feed(head + b"a" * 60000, 1, 1)
        assert budget.held <= MB
    kept = [d for d in decoders if d._payload is not None]
    assert len(kept) == MB // 60000 and budget.refused == 1000 - len(kept)
    assert kinds(events) == [K.FRAME_TOO_LARGE] * budget.refused
    frames = []
    for d in decoders:
        frames += [e for e in d.feed(b"b" * 5535, 2, 2) if isinstance(e, Frame)]
    assert budget.held == 0
    assert sum(f.payload is not None for f in frames) == len(kept)
    assert {f.payload_len for f in frames} == {65535}


def test_a_decoder_dropped_mid_frame_gives_its_budget_back() -> None:
    budget = PayloadBudget(MB)
    d = FrameDecoder(from_client=False, budget=budget)
    d.feed(b"\x82\x7e\x10\x00" + b"x" * 100, 1, 1)
    assert budget.held == 100
    del d
    assert budget.held == 0


def test_handshake_buffers_of_many_connections_share_one_bounded_budget() -> None:
    """Upgrade requests whose clients keep sending with no response: each parser may hold 1 MiB;
    all of them together hold at most the budget, and the ones refused give up with a problem."""
    budget = PayloadBudget(4 * MB)
    parsers = [HandshakeParser(budget=budget) for _ in range(20)]
    request = upgrade_request()
    gave_up = 0
    for p in parsers:
        p.feed(0, request, 1, 1)
        for i in range(8):
            events = p.feed(0, b"\x81\x85" + bytes(64 * 1024), 2 + i, 2 + i)
            gave_up += any(isinstance(e, Problem) and "shared budget" in e.detail for e in events)
        assert budget.held <= 4 * MB
    assert gave_up == 20 - 4 * MB // (8 * (64 * 1024 + 2))
    for p in parsers:
        p.finish()
    assert budget.held == 0


# --- permessage-deflate bombs through analyze() --------------------------------------------------

def _full_flush_block() -> bytes:
    """Raw DEFLATE of 1 MiB of zeros ended by a full flush: ~1 KB, and repeatable (no shared
    window), so N copies inflate to N MiB."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(bytes(MB)) + comp.flush(zlib.Z_FULL_FLUSH)


def _send(conv: Conversation, direction: int, data: bytes, mss: int = 60000) -> None:
    for i in range(0, len(data), mss):
        conv.send(direction, data[i:i + mss])


def _deflate_capture(path, compressed: bytes, *, fragments: int = 1) -> None:
    conv = Conversation()
    conv.handshake()
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    conv.send(0, upgrade_request(key=SAMPLE_KEY, extra=ext))
    conv.send(1, upgrade_response(accept=SAMPLE_ACCEPT, extra=ext))
    step = -(-len(compressed) // fragments)
    parts = [compressed[i:i + step] for i in range(0, len(compressed), step)]
    wire = b"".join(frame(2 if i == 0 else 0, p, fin=i == len(parts) - 1, rsv=4 if i == 0 else 0)
                    for i, p in enumerate(parts))
    _send(conv, 1, wire)
    conv.send(1, frame(1, b"still decoded after the bomb"))
    conv.fin(0)
    conv.fin(1)
    write_pcap(path, conv.packets)


def _bomb_checks(a: analyzer.Analysis, limit: int) -> None:
    assert a.connections["compression"].tolist() == ["permessage-deflate"]
    bomb = a.messages.iloc[0]
    assert bool(bomb["compressed"]) and bomb["size"] == limit
    assert "message-over-limit" in set(a.problems["kind"])
    after = a.messages.iloc[1]
    assert after["preview"] == "still decoded after the bomb"


def test_1kb_deflate_bomb_stops_at_max_message_bytes(tmp_path) -> None:
    block = _full_flush_block()
    assert len(block) < 1100
    path = tmp_path / "bomb1k.pcap"
    _deflate_capture(path, block)
    limit = 64 * 1024
    a, peak = peak_of(lambda: analyzer.analyze(path, max_message_bytes=limit))
    _bomb_checks(a, limit)
    assert peak < 32 * MB


def test_gigabyte_deflate_bomb_stops_at_max_message_bytes(tmp_path) -> None:
    """~2 MB on the wire inflating to 2 GiB, in 4 fragments: inflating stops at the default 16 MiB."""
    compressed = _full_flush_block() * 2048
    path = tmp_path / "bomb2g.pcap"
    _deflate_capture(path, compressed, fragments=4)
    a, peak = peak_of(lambda: analyzer.analyze(path))
    _bomb_checks(a, 16 * MB)
    assert peak < 120 * MB, f"peak {peak / MB:.0f} MiB"
    assert SHARED_BUDGET.held == 0          # every partial frame gave its bytes back


# --- TCP: half-open floods and endless out-of-order data ----------------------------------------

def _syn(i: int, ts: int) -> Segment:
    src = struct.pack("!I", 0x0A000000 + i)
    return Segment(i + 1, ts, 4, src, b"\xc0\xa8\x00\x01", 1024 + i % 60000, 80, i * 7919, 0, 0x02, b"",
                   False)


def test_200k_half_open_connections_keep_the_tables_bounded() -> None:
    r = Reassembler()
    cap = r.max_half_open
    gc.disable()                   # 200k flows opened and released: the cyclic GC only slows this
    try:
        opened = 0
        for i in range(200_000):
            for ev in r.feed(_syn(i, 1_700_000_000 * 10**9 + i * 1000)):
                opened += type(ev).__name__ == "StreamOpened"
    finally:
        gc.enable()
    assert opened == 200_000
    assert r.flows_open == cap and len(r._table) == 2 * cap and len(r._bare) == cap
    assert r.half_open_released == 200_000 - cap and r.flows_evicted == 0


def test_half_open_flood_memory_is_bounded_by_the_cap() -> None:
    cap = 2000
    r = Reassembler(max_half_open=cap)
    for i in range(cap):           # fill up to the cap first: what is measured is the steady state
        r.feed(_syn(i, 10**18))

    def run() -> None:
        for i in range(cap, 10 * cap):
            r.feed(_syn(i, 10**18))

    _, peak = peak_of(run)
    assert r.flows_open == cap
    # Objects made before tracing started are not counted, so the peak is about one cap's worth of
    # new flows (~1.2 KB each); unbounded, the 18,000 SYNs would take over 20 MB.
    assert peak < cap * 2048, f"{peak} bytes while {9 * cap} SYNs replaced {cap} half-open flows"


def test_half_open_flow_released_then_its_data_is_picked_up_midstream() -> None:
    r = Reassembler(max_half_open=2)
    t = 10**18
    c = b"\x0a\x00\x00\x01"
    s = b"\x0a\x00\x00\x02"
    r.feed(Segment(1, t, 4, c, s, 5000, 80, 100, 0, 0x02, b"", False))          # SYN
    r.feed(Segment(2, t, 4, s, c, 80, 5000, 900, 101, 0x12, b"", False))        # SYN-ACK
    for i in range(3):                                                          # other SYNs evict it
        r.feed(_syn(i, t))
    assert r.half_open_released == 2
    events = r.feed(Segment(6, t, 4, c, s, 5000, 80, 101, 901, 0x18, b"GET / HTTP/1.1\r\n\r\n", False))
    data = [e for e in events if isinstance(e, StreamData)]
    assert data and data[0].data == b"GET / HTTP/1.1\r\n\r\n"


def test_half_open_flows_idle_past_the_timeout_are_released() -> None:
    r = Reassembler(half_open_timeout_ns=10 * 10**9)
    t = 10**18
    for i in range(100):
        r.feed(_syn(i, t))
    for i in range(1000, 1004):    # the clock's jump is believed at its 4th packet (issue 13, 18)
        r.feed(_syn(i, t + 60 * 10**9))
    assert r.flows_open == 4 and r.half_open_released == 100


def test_endless_out_of_order_segments_on_one_flow_stay_under_the_flow_cap() -> None:
    per_flow = 256 * 1024
    r = Reassembler(max_buffered_per_flow=per_flow)
    c, s = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    t = 10**18
    r.feed(Segment(1, t, 4, c, s, 5000, 80, 0, 0, 0x02, b"", False))
    payload = b"x" * 1000
    delivered = given_up = 0
    peak_buffered = 0
    for i in range(20_000):        # 20 MB after a 1-byte hole that never fills
        for ev in r.feed(Segment(2 + i, t, 4, c, s, 5000, 80, 2 + i * 1000, 0, 0x18, payload, False)):
            if isinstance(ev, StreamData):
                delivered += len(ev.data)
            elif isinstance(ev, StreamProblem) and ev.problem.kind is K.TCP_BUFFER_LIMIT:
                given_up += 1
        peak_buffered = max(peak_buffered, r.bytes_buffered)
    assert peak_buffered <= per_flow
    assert given_up >= 1 and r.bytes_given_up >= 1
    assert delivered > 19_000_000          # the data after the hole still arrives


def test_out_of_order_segments_on_many_flows_stay_under_the_total_cap() -> None:
    total = 1 * MB
    r = Reassembler(max_buffered_total=total, max_buffered_per_flow=64 * 1024)
    t = 10**18
    s = b"\x0a\x00\x00\x02"
    flows = [struct.pack("!I", 0x0B000000 + n) for n in range(1000)]
    for c in flows:                # SYN: data starts at 1001, and the first 499 bytes never come
        r.feed(Segment(0, t, 4, c, s, 5000, 80, 1000, 0, 0x02, b"", False))

    def run() -> tuple[int, int]:
        worst = given_up = 0
        for i in range(40_000):    # 20 MB of out-of-order data over 1000 flows
            c = flows[i % 1000]
            k = i // 1000
            seg = Segment(i + 1, t, 4, c, s, 5000, 80, 1500 + k * 500, 0, 0x18, b"y" * 500, False)
            for ev in r.feed(seg):
                given_up += isinstance(ev, StreamProblem) and ev.problem.kind is K.TCP_BUFFER_LIMIT
            worst = max(worst, r.bytes_buffered)
        return worst, given_up

    (worst, given_up), peak = peak_of(run)
    assert total // 2 < worst <= total
    assert given_up >= 1
    assert peak < 8 * MB


# --- IP fragments and capture records ----------------------------------------------------------

def _ipv4_fragment(ident: int, offset: int, payload: bytes, more: bool = True) -> bytes:
    total = 20 + len(payload)
    flags = (0x2000 if more else 0) | (offset >> 3)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, flags, 64, 6, 0,
                      b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
    return b"\x00" * 12 + b"\x08\x00" + hdr + payload


def test_overlapping_fragment_flood_is_bounded() -> None:
    dec = PacketDecoder()
    piece = b"z" * 60000

    def run() -> None:
        for i in range(3000):          # 180 MB of fragments that overlap and never complete
            data = _ipv4_fragment(i % 700, 0, piece)
            dec.decode(PacketRecord(i + 1, i, 1, len(data), len(data), data))
            assert dec._frag_bytes <= packets_mod.MAX_FRAG_BYTES

    _, peak = peak_of(run)
    assert peak < packets_mod.MAX_FRAG_BYTES + 8 * MB
    assert any(p.kind is K.IP_FRAGMENT_UNREASSEMBLED for p in dec.problems)


def test_corrupt_record_length_in_a_short_file_allocates_nothing(tmp_path) -> None:
    path = tmp_path / "claims200mb.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    path.write_bytes(header + struct.pack("<IIII", 1, 0, 200 * MB, 200 * MB) + b"x" * 1000)

    def run() -> list:
        with CaptureReader(path) as reader:
            records: list = []
            with pytest.raises(analyzer.CaptureError, match="nothing readable"):   # no record before it
                records.extend(reader)
            return [records, reader.problems]

    (records, problems), peak = peak_of(run)
    assert records == [] and [p.kind for p in problems] == [K.CAPTURE_TRUNCATED]
    assert peak < 4 * MB, f"peak {peak / MB:.0f} MiB for a record that is not there"


@pytest.mark.parametrize("gz", [False, True])
def test_corrupt_pcapng_block_length_allocates_nothing(tmp_path, gz: bool) -> None:
    import gzip

    from tests.helpers.pcapgen_link import ng_idb, ng_shb
    data = ng_shb() + ng_idb(1) + struct.pack("<II", 6, 200 * MB) + b"\x00" * 5000
    path = tmp_path / ("big.pcapng.gz" if gz else "big.pcapng")
    path.write_bytes(gzip.compress(data) if gz else data)

    def run() -> list:
        with CaptureReader(path) as reader:
            records: list = []
            with pytest.raises(analyzer.CaptureError, match="nothing readable"):   # no record before it
                records.extend(reader)
            return [records, reader.problems]

    (records, problems), peak = peak_of(run)
    assert records == [] and [p.kind for p in problems] == [K.CAPTURE_TRUNCATED]
    assert peak < 4 * MB
