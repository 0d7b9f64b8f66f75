"""Tests for analyzer.streams.Reassembler: segments built by hand (helpers_streams.Wire), plus one
real loopback recording (tests/data/tcp_echo.pcap, made by `python tests/helpers_streams.py`)."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.events import (
    Segment,
    StreamClosed,
    StreamData,
    StreamEnd,
    StreamGap,
    StreamOpened,
)
from analyzer.protocol import ProblemKind
from analyzer.streams import Reassembler
from tests.helpers_streams import (
    ACK,
    CLIENT_IP,
    FIN,
    MOD,
    PSH,
    RST,
    SERVER_IP,
    SYN,
    Wire,
    check_stream_order,
    data_of,
    echo_messages,
    of_type,
    problems,
    read_pcap_segments,
    run,
)

PCAP = os.path.join(os.path.dirname(__file__), "data", "tcp_echo.pcap")
TEXT = b"The quick brown fox jumps over the lazy dog. " * 3


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


# --- opening, in-order delivery, closing -------------------------------------------------------

def test_in_order_connection_lifecycle() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(),
            w.c(0, b"GET / HTTP/1.1\r\n", flags=ACK | PSH),
            w.c(16, b"\r\n", flags=ACK | PSH),
            w.s(0, b"HTTP/1.1 200 OK\r\n\r\n", ack=18),
            w.c(18, flags=ACK | FIN, ack=19),
            w.s(19, flags=ACK | FIN, ack=19),
            w.c(19, ack=20)]
    ev = run(r, segs, finish=False)
    check_stream_order(ev)
    assert kinds(ev) == ["StreamOpened", "StreamData", "StreamData", "StreamData",
                         "StreamEnd", "StreamEnd", "StreamClosed"]
    opened = ev[0]
    assert opened == StreamOpened(1, 1, segs[0].ts_ns, 4, CLIENT_IP, 51000, SERVER_IP, 8080, True)
    assert [(e.direction, e.data, e.record_no) for e in of_type(ev, StreamData)] == [
        (0, b"GET / HTTP/1.1\r\n", 4), (0, b"\r\n", 5), (1, b"HTTP/1.1 200 OK\r\n\r\n", 6)]
    assert [(e.direction, e.rst, e.record_no) for e in of_type(ev, StreamEnd)] == [(0, False, 7),
                                                                                   (1, False, 8)]
    assert ev[-1] == StreamClosed(1, "closed", 8, segs[7].ts_ns)
    assert r.flows_open == 0
    assert r.finish() == []


def test_pure_acks_produce_nothing() -> None:
    w = Wire()
    r = Reassembler()
    run(r, w.handshake(), finish=False)
    assert list(r.feed(w.c(0))) == []
    assert list(r.feed(w.s(0))) == []
    assert r.flows_open == 1
    assert r.bytes_buffered == 0


def test_ipv6_and_ipv4_flows_are_distinct() -> None:
    w4 = Wire()
    w6 = Wire(client=bytes(15) + b"\x01", server=bytes(15) + b"\x02", ip_version=6, cisn=5)
    r = Reassembler()
    ev = run(r, [*w4.handshake(), *w6.handshake(), w4.c(0, b"four"), w6.c(0, b"six")])
    opened = of_type(ev, StreamOpened)
    assert [(o.conn_id, o.ip_version, len(o.client)) for o in opened] == [(1, 4, 4), (2, 6, 16)]
    assert data_of(ev, 1, 0) == b"four"
    assert data_of(ev, 2, 0) == b"six"


# --- reordering, retransmission, overlap -------------------------------------------------------

def test_every_permutation_delivers_the_same_bytes() -> None:
    cuts = [0, 7, 20, 33, len(TEXT)]
    for order in itertools.permutations(range(4)):
        w = Wire()
        r = Reassembler()
        segs = w.handshake()
        segs += [w.c(cuts[i], TEXT[cuts[i]:cuts[i + 1]]) for i in order]
        ev = run(r, segs, finish=False)
        assert data_of(ev, 1, 0) == TEXT, order
        assert not of_type(ev, StreamGap)
        assert r.bytes_buffered == 0
        # The last piece delivered is the one that arrived when the first piece arrived or later:
        # the packet that filled the hole is credited with the data it released.
        first_arrival = segs[3 + order.index(0)].record_no
        assert of_type(ev, StreamData)[0].record_no == first_arrival


def test_filling_packet_is_credited_with_released_data() -> None:
    w = Wire()
    r = Reassembler()
    run(r, w.handshake(), finish=False)
    assert list(r.feed(w.c(10, b"0123456789"))) == []           # record 4: out of order
    assert r.bytes_buffered == 10
    assert list(r.feed(w.c(20, b"abc"))) == []                  # record 5
    ev = r.feed(w.c(0, b"ABCDEFGHIJ"))                          # record 6 fills the hole
    assert kinds(ev) == ["StreamData"]
    assert ev[0].data == b"ABCDEFGHIJ0123456789abc"
    assert ev[0].record_no == 6
    assert r.bytes_buffered == 0


def test_full_and_partial_retransmissions_are_dropped() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(), w.c(0, b"hello "), w.c(0, b"hello "), w.c(6, b"world"),
            w.c(3, b"lo world!!"),          # partial: only "!!" is new
            w.c(0, b"hel"), w.c(13, b"")]
    ev = run(r, segs)
    assert data_of(ev, 1, 0) == b"hello world!!"
    assert [e.record_no for e in of_type(ev, StreamData)] == [4, 6, 7]
    assert not problems(ev)


def test_partial_overlaps_with_buffered_data() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(),
            w.c(10, TEXT[10:20]), w.c(30, TEXT[30:40]),
            w.c(15, TEXT[15:35]),            # bridges the two buffered chunks, overlapping both
            w.c(5, TEXT[5:50]),              # covers everything buffered and more
            w.c(0, TEXT[0:12])]              # fills the start, overlapping the buffer
    ev = run(r, segs, finish=False)
    assert data_of(ev, 1, 0) == TEXT[:50]
    assert kinds(ev) == ["StreamOpened", "StreamData"] and ev[-1].record_no == segs[-1].record_no
    assert not problems(ev)
    assert r.bytes_buffered == 0


def test_conflicting_overlap_keeps_first_copy_and_reports() -> None:
    w = Wire()
    r = Reassembler()
    run(r, w.handshake(), finish=False)
    r.feed(w.c(10, b"AAAAAAAAAA"))                              # [10, 20)
    ev = r.feed(w.c(15, b"BBBBBBBBBB"))                         # [15, 25): 5 bytes differ
    conflicts = problems(ev, ProblemKind.TCP_OVERLAP_CONFLICT)
    assert len(conflicts) == 1
    assert conflicts[0].direction == 0 and conflicts[0].conn_id == 1
    assert "5 bytes at relative seq 16" in conflicts[0].problem.detail
    assert conflicts[0].problem.record_no == 5
    ev = r.feed(w.c(0, b"0123456789CC"))                        # in order, overlaps [10, 12)
    assert problems(ev, ProblemKind.TCP_OVERLAP_CONFLICT)[0].problem.detail.startswith(
        "overlapping copies differ: 2 bytes at relative seq 11")
    assert data_of(ev, 1, 0) == b"0123456789" + b"A" * 10 + b"BBBBB"
    # Identical overlapping copies are not a conflict.
    ev = r.feed(w.c(20, b"BBBBBCD"))
    assert not problems(ev)
    assert data_of(ev, 1, 0) == b"CD"


def test_sequence_wraparound() -> None:
    w = Wire(cisn=MOD - 5, sisn=MOD - 1)
    r = Reassembler()
    segs = [*w.handshake(), w.c(8, TEXT[8:40]), w.c(0, TEXT[0:8]),       # straddles 2**32
            w.s(0, b"pong", ack=40), w.c(40, TEXT[40:], flags=ACK | FIN, ack=4),
            w.s(4, flags=ACK | FIN, ack=len(TEXT) + 1), w.c(len(TEXT) + 1, ack=5)]
    assert segs[3].seq < segs[4].seq                            # the later bytes have the smaller seq
    ev = run(r, segs, finish=False)
    assert data_of(ev, 1, 0) == TEXT
    assert data_of(ev, 1, 1) == b"pong"
    assert ev[-1] == StreamClosed(1, "closed", 8, segs[7].ts_ns)  # the last ACK is a stray
    assert not problems(ev)


def test_wraparound_gap_is_detected_by_ack() -> None:
    w = Wire(cisn=MOD - 3)
    r = Reassembler()
    ev = run(r, [*w.handshake(), w.c(0, b"ab"), w.c(6, b"ghij"), w.s(0, ack=10)], finish=False)
    gaps = of_type(ev, StreamGap)
    assert [(g.direction, g.size, g.record_no) for g in gaps] == [(0, 4, 6)]
    assert data_of(ev, 1, 0) == b"abghij"


def test_syn_payload_tfo() -> None:
    w = Wire()
    r = Reassembler()
    segs = [w.syn(b"early"), w.syn_ack(), w.c(5, b" data", ack=0)]
    segs[1] = segs[1]._replace(ack=w.cseq(5))
    ev = run(r, segs, finish=False)
    assert [(e.data, e.record_no) for e in of_type(ev, StreamData)] == [(b"early", 1), (b" data", 3)]
    assert run(r, [w.syn(b"early")], finish=False) == []        # retransmitted SYN: nothing new


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_split_reorder_duplicate_invariance(data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=1, max_size=1500), label="payload")
    isn = data.draw(st.integers(0, MOD - 1), label="isn")
    n = len(payload)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=10), label="cuts")) | {0, n})
    pieces = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]
    extras = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 400)), max_size=5),
                       label="retransmissions")
    pieces += [(a, min(n, a + k)) for a, k in extras]
    items: list[tuple[int, int] | None] = [*pieces, None]        # None: the FIN
    order = data.draw(st.permutations(items), label="order")
    w = Wire(cisn=isn)
    r = Reassembler()
    segs = w.handshake()
    for item in order:
        if item is None:
            segs.append(w.c(n, flags=ACK | FIN))
        else:
            segs.append(w.c(item[0], payload[item[0]:item[1]]))
    segs += [w.s(0, flags=ACK | FIN, ack=n + 1), w.c(n + 1, ack=1)]
    ev = run(r, segs, finish=False)
    check_stream_order(ev)
    assert data_of(ev, 1, 0) == payload
    assert not of_type(ev, StreamGap)
    assert not problems(ev)
    assert kinds(ev)[-3:] == ["StreamEnd", "StreamEnd", "StreamClosed"]
    assert ev[-1].reason == "closed"
    assert r.flows_open == 0 and r.bytes_buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_first_copy_wins_for_every_byte(data: st.DataObject) -> None:
    """Overlapping segments with different contents: each byte comes from the first segment
    (in arrival order) that carried it, whatever was delivered or buffered at the time."""
    n = data.draw(st.integers(1, 400), label="n")
    covering = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=6), label="cuts")) | {0, n})
    spans = [(a, b) for a, b in itertools.pairwise(covering) if b > a]
    spans += data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 120)).map(
        lambda t: (t[0], min(n, t[0] + t[1]))), max_size=8), label="overlaps")
    order = data.draw(st.permutations(spans), label="order")
    w = Wire(cisn=data.draw(st.integers(0, MOD - 1), label="isn"))
    segs = w.handshake()
    model: list[int | None] = [None] * n
    for k, (a, b) in enumerate(order):
        fill = bytes([k]) * (b - a)
        segs.append(w.c(a, fill))
        for o in range(a, b):
            if model[o] is None:
                model[o] = k
    ev = run(Reassembler(), segs)
    assert data_of(ev, 1, 0) == bytes(model)  # type: ignore[arg-type]
    assert not of_type(ev, StreamGap)


# --- gaps ---------------------------------------------------------------------------------------

def test_gap_declared_when_peer_acks_past_it() -> None:
    w = Wire()
    r = Reassembler()
    run(r, w.handshake(), finish=False)
    assert data_of(r.feed(w.c(0, b"a" * 100)), 1, 0) == b"a" * 100
    assert list(r.feed(w.c(200, b"c" * 100))) == []             # [100, 200) never captured
    assert r.bytes_buffered == 100
    ack = w.s(0, ack=300)
    ev = r.feed(ack)
    assert kinds(ev) == ["StreamGap", "StreamProblem", "StreamData"]
    assert ev[0] == StreamGap(1, 0, 100, ack.record_no, ack.ts_ns)
    assert ev[1].problem.kind is ProblemKind.TCP_GAP
    assert ev[1].problem.detail == "100 bytes missing at relative seq 101"
    assert ev[2].data == b"c" * 100 and ev[2].record_no == ack.record_no
    assert r.bytes_buffered == 0
    # The late retransmission of the lost bytes is old news now.
    assert list(r.feed(w.c(100, b"b" * 100))) == []


def test_gap_only_up_to_what_was_acknowledged() -> None:
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"a" * 100), w.c(200, b"c" * 100)], finish=False)
    ev = r.feed(w.s(0, ack=150))                                 # peer got up to 150 only
    assert [g.size for g in of_type(ev, StreamGap)] == [50]
    assert data_of(ev, 1, 0) == b""
    ev = r.feed(w.c(150, b"b" * 50))                             # the rest is retransmitted
    assert data_of(ev, 1, 0) == b"b" * 50 + b"c" * 100
    assert not of_type(ev, StreamGap)


def test_ack_before_data_arrives_declares_gap_on_arrival() -> None:
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"x" * 10), w.s(0, ack=40)], finish=False)
    ev = r.feed(w.c(30, b"y" * 20))
    assert [g.size for g in of_type(ev, StreamGap)] == [20]
    assert data_of(ev, 1, 0) == b"y" * 20


def test_gaps_at_finish_exact_sizes_and_following_data() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(), w.c(0, b"0" * 10), w.c(25, b"2" * 5), w.c(40, b"4" * 10),
            w.s(0, b"server"), w.s(100, b"late")]
    ev = run(r, segs, finish=False)
    assert r.bytes_buffered == 19
    fin = r.finish()
    check_stream_order(ev + fin)
    gaps = [(g.direction, g.size) for g in of_type(fin, StreamGap)]
    assert gaps == [(0, 15), (0, 10), (1, 94)]
    assert data_of(fin, 1, 0) == b"2" * 5 + b"4" * 10
    assert data_of(fin, 1, 1) == b"late"
    assert [p.problem.detail for p in problems(fin, ProblemKind.TCP_GAP)] == [
        "15 bytes missing at relative seq 11", "10 bytes missing at relative seq 31",
        "94 bytes missing at relative seq 7"]
    assert fin[-1] == StreamClosed(1, "end-of-capture", segs[-1].record_no, segs[-1].ts_ns)
    assert r.flows_open == 0 and r.bytes_buffered == 0


def test_trailing_acked_bytes_at_finish() -> None:
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"z" * 10), w.s(0, ack=60)], finish=False)
    fin = r.finish()
    assert [g.size for g in of_type(fin, StreamGap)] == [50]
    # One byte acknowledged past the data is an uncaptured FIN, not data.
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"z" * 10), w.s(0, ack=11)], finish=False)
    assert not of_type(r.finish(), StreamGap)


def test_fin_after_hole_waits_for_retransmission() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(), w.c(0, b"a" * 10), w.c(20, b"c" * 10, flags=ACK | FIN)]
    ev = run(r, segs, finish=False)
    assert not of_type(ev, StreamGap) and not of_type(ev, StreamEnd)
    ev = r.feed(w.c(10, b"b" * 10))                              # the reordered segment
    assert data_of(ev, 1, 0) == b"b" * 10 + b"c" * 10
    assert kinds(ev) == ["StreamData", "StreamEnd"]


def test_fin_after_hole_declared_when_peer_acks_the_fin() -> None:
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"a" * 10), w.c(15, flags=ACK | FIN)], finish=False)
    ev = r.feed(w.s(0, ack=16))
    assert kinds(ev) == ["StreamGap", "StreamProblem", "StreamEnd"]
    assert ev[0].size == 5
    # A hole before a FIN with no ACK is declared at finish().
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"a" * 10), w.c(15, b"b", flags=ACK | FIN)], finish=False)
    fin = r.finish()
    assert [g.size for g in of_type(fin, StreamGap)] == [5]
    assert data_of(fin, 1, 0) == b"b"
    assert of_type(fin, StreamEnd)[0].direction == 0


def test_truncated_segment_leaves_a_gap() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(), w.c(0, b"a" * 100, truncated=True),   # 1000 on the wire, 100 captured
            w.c(1000, b"b" * 10), w.s(0, ack=1010)]
    ev = run(r, segs, finish=False)
    assert [g.size for g in of_type(ev, StreamGap)] == [900]
    assert data_of(ev, 1, 0) == b"a" * 100 + b"b" * 10


# --- picking up connections without their SYN ----------------------------------------------------

def test_mid_stream_start_guesses_client_by_port() -> None:
    w = Wire(cport=50123, sport=443)
    r = Reassembler()
    segs = [w.s(5000, b"server speaks first", ack=300), w.c(300, b"client", ack=5019),
            w.s(5019, b"more", ack=306)]
    ev = run(r, segs)
    opened = ev[0]
    assert isinstance(opened, StreamOpened)
    assert (opened.client, opened.client_port, opened.server, opened.server_port, opened.syn_seen) == (
        CLIENT_IP, 50123, SERVER_IP, 443, False)
    assert data_of(ev, 1, 1) == b"server speaks firstmore"
    assert data_of(ev, 1, 0) == b"client"
    assert not of_type(ev, StreamGap)                             # no gap before the first byte
    assert ev[-1].reason == "end-of-capture"


def test_mid_stream_equal_ports_first_sender_is_client() -> None:
    w = Wire(cport=7000, sport=7000)
    r = Reassembler()
    ev = run(r, [w.s(0, b"first"), w.c(0, b"second")])
    assert ev[0].client == SERVER_IP and ev[0].server == CLIENT_IP
    assert data_of(ev, 1, 0) == b"first" and data_of(ev, 1, 1) == b"second"


def test_syn_ack_only_pickup() -> None:
    w = Wire(cport=40000, sport=50000)                            # ports would point the other way
    r = Reassembler()
    ev = run(r, [w.syn_ack(), w.c(10, b"k" * 10), w.s(0, ack=20)], finish=False)
    opened = ev[0]
    assert (opened.client, opened.client_port, opened.syn_seen) == (CLIENT_IP, 40000, False)
    # The SYN-ACK told where the client's data starts, so the lost first 10 bytes are a gap.
    gaps = of_type(ev, StreamGap)
    assert [(g.direction, g.size) for g in gaps] == [(0, 10)]
    assert problems(ev, ProblemKind.TCP_GAP)[0].problem.detail == "10 bytes missing at relative seq 1"
    assert data_of(ev, 1, 0) == b"k" * 10


# --- FIN, RST, closing, reuse ---------------------------------------------------------------------

def test_rst_ends_and_releases_after_delivering() -> None:
    w = Wire()
    r = Reassembler()
    segs = [*w.handshake(), w.c(0, b"hi"), w.s(10, b"tail")]       # server bytes [0, 10) missing
    run(r, segs, finish=False)
    rst = w.c(2, flags=RST | ACK, ack=0)
    ev = r.feed(rst)
    assert kinds(ev) == ["StreamGap", "StreamProblem", "StreamData", "StreamEnd", "StreamClosed"]
    assert (ev[0].direction, ev[0].size) == (1, 10)
    assert ev[2].data == b"tail" and ev[2].record_no == rst.record_no
    assert ev[3] == StreamEnd(1, 0, True, rst.record_no, rst.ts_ns)
    assert ev[4] == StreamClosed(1, "reset", rst.record_no, rst.ts_ns)
    assert r.flows_open == 0
    # The server's answer to the RST and further data do not open a new connection.
    assert list(r.feed(w.s(14, b"more", ack=2))) == []
    assert list(r.feed(w.s(18, flags=RST))) == []
    assert r.flows_open == 0 and r.finish() == []


def test_rst_after_fin_does_not_end_twice() -> None:
    w = Wire()
    r = Reassembler()
    ev = run(r, [*w.handshake(), w.c(0, b"x", flags=ACK | FIN), w.c(2, flags=RST)], finish=False)
    assert [(e.direction, e.rst) for e in of_type(ev, StreamEnd)] == [(0, False)]
    assert ev[-1].reason == "reset"


def test_lone_rst_opens_nothing() -> None:
    r = Reassembler()
    assert list(r.feed(Wire().c(0, flags=RST))) == []
    assert r.flows_open == 0


def _closed_connection(w: Wire) -> list[Segment]:
    return [*w.handshake(), w.c(0, b"req"), w.s(0, b"resp", ack=3),
            w.c(3, flags=ACK | FIN, ack=4), w.s(4, flags=ACK | FIN, ack=4), w.c(4, ack=5)]


def test_stray_retransmissions_after_close_open_nothing() -> None:
    w = Wire()
    r = Reassembler()
    ev = run(r, _closed_connection(w), finish=False)
    assert ev[-1].reason == "closed" and r.flows_open == 0
    strays = [w.s(4, flags=ACK | FIN, ack=4), w.c(3, flags=ACK | FIN, ack=5), w.c(4, ack=5),
              w.c(0, b"req"), w.s(4, b"junk", ack=4), w.syn()]         # the old SYN too
    assert run(r, strays) == []
    assert r.flows_open == 0


def test_port_reuse_after_close_is_a_new_connection() -> None:
    w = Wire()
    r = Reassembler()
    ev = run(r, _closed_connection(w), finish=False)
    w2 = Wire(cisn=9_999_999, sisn=123, rec=w.rec, ts_ns=w.ts_ns)
    ev2 = run(r, [*w2.handshake(), w2.c(0, b"again")])
    assert [o.conn_id for o in of_type(ev + ev2, StreamOpened)] == [1, 2]
    assert of_type(ev2, StreamOpened)[0].syn_seen
    assert data_of(ev2, 2, 0) == b"again"


def test_new_isn_on_open_tuple_closes_old_connection() -> None:
    w = Wire()
    r = Reassembler()
    run(r, [*w.handshake(), w.c(0, b"old"), w.c(10, b"buffered")], finish=False)
    ev = r.feed(w.syn())                                           # same ISN: retransmission
    assert list(ev) == []
    w2 = Wire(cisn=42, rec=w.rec, ts_ns=w.ts_ns)
    ev = r.feed(w2.syn())
    assert kinds(ev) == ["StreamGap", "StreamProblem", "StreamData", "StreamClosed", "StreamOpened"]
    assert ev[0].size == 7 and ev[2].data == b"buffered"
    assert ev[3].conn_id == 1 and ev[4].conn_id == 2 and ev[4].syn_seen
    ev = run(r, [w2.syn_ack(), w2.c(0, b"new")], finish=False)
    assert data_of(ev, 2, 0) == b"new"
    assert r.flows_open == 1


# --- idle release, flow limit, buffer limits -------------------------------------------------------

def test_idle_flows_are_released() -> None:
    second = 10**9
    r = Reassembler(idle_timeout_ns=10 * second)
    a = Wire(ts_ns=0)
    b = Wire(cport=52000, ts_ns=25 * second)
    ev = run(r, [*a.handshake(), a.c(0, b"a")], finish=False)
    last_a, last_a_ts = a.rec, a.ts_ns
    b.rec = a.rec
    # t = 25 s: a has been idle 25 s. The clock's jump is believed at the 4th packet after it.
    ev = run(r, b.handshake(), finish=False)
    assert not of_type(ev, StreamClosed)
    ev = r.feed(b.c(0, b"b"))
    closed = of_type(ev, StreamClosed)
    assert [(c.conn_id, c.reason, c.record_no, c.ts_ns) for c in closed] == [
        (1, "idle", last_a, last_a_ts)]                            # dated by a's last packet
    idle = problems(ev, ProblemKind.FLOW_IDLE_RELEASED)            # and said, before the release
    assert [(p.conn_id, p.direction, p.problem.record_no) for p in idle] == [(1, None, last_a)]
    assert "no packet for 25 s (idle timeout 10 s)" in idle[0].problem.detail
    assert ev.index(idle[0]) < ev.index(closed[0])
    assert r.flows_open == 1
    b.ts_ns = 30 * second
    ev = r.feed(b.c(1, b"b"))                                      # b idle for 5 s only: kept
    assert kinds(ev) == ["StreamData"] and ev[0].conn_id == 2
    # An idle-released flow that speaks again is picked up as a new (mid-stream) connection.
    a.rec = b.rec
    a.ts_ns = 31 * second
    ev = r.feed(a.c(1, b"back"))
    assert of_type(ev, StreamOpened)[0].conn_id == 3 and not ev[0].syn_seen
    assert data_of(ev, 3, 0) == b"back"
    assert r.flows_open == 2


def test_max_flows_evicts_least_recently_active() -> None:
    r = Reassembler(max_flows=2)
    wires = [Wire(cport=50000 + i) for i in range(3)]
    for i, w in enumerate(wires):
        w.rec = 10 * i
    run(r, [*wires[0].handshake(), *wires[1].handshake()], finish=False)
    run(r, [wires[0].c(0, b"keep me")], finish=False)              # conn 1 is now the most recent
    ev = run(r, wires[2].handshake(), finish=False)
    flow_limit = problems(ev, ProblemKind.FLOW_LIMIT)
    assert [p.conn_id for p in flow_limit] == [2]
    assert [(c.conn_id, c.reason) for c in of_type(ev, StreamClosed)] == [(2, "idle")]
    assert of_type(ev, StreamOpened)[0].conn_id == 3
    assert r.flows_open == 2


def test_per_flow_buffer_limit() -> None:
    r = Reassembler(max_buffered_per_flow=1000)
    w = Wire()
    run(r, [*w.handshake(), w.c(0, b"s")], finish=False)
    # Holes [1, 101) and [701, 801); chunks A, B before the second hole, C, D after it.
    out = []
    for off, fill in ((101, b"A"), (401, b"B"), (801, b"C"), (1101, b"D")):
        out += r.feed(w.c(off, fill * 300))
        assert r.bytes_buffered <= 1000
    limit = problems(out, ProblemKind.TCP_BUFFER_LIMIT)
    assert len(limit) == 1 and limit[0].problem.record_no == w.rec
    assert "gave up waiting for 100 bytes at relative seq 2" in limit[0].problem.detail
    assert [(g.size, g.record_no) for g in of_type(out, StreamGap)] == [(100, w.rec)]
    assert data_of(out, 1, 0) == b"A" * 300 + b"B" * 300              # only the oldest hole given up
    assert r.bytes_buffered == 600
    fin = r.finish()
    assert [g.size for g in of_type(fin, StreamGap)] == [100]
    assert data_of(fin, 1, 0) == b"C" * 300 + b"D" * 300
    assert not problems(fin, ProblemKind.TCP_BUFFER_LIMIT)


def test_total_buffer_limit_spans_flows() -> None:
    r = Reassembler(max_buffered_total=1000)
    a = Wire()
    b = Wire(cport=52000)
    b.rec = 100
    run(r, [*a.handshake(), *b.handshake()], finish=False)
    ev = run(r, [a.c(10, b"a" * 600)], finish=False)
    assert r.bytes_buffered == 600
    ev = run(r, [b.c(10, b"b" * 600)], finish=False)
    assert r.bytes_buffered <= 1000
    limit = problems(ev, ProblemKind.TCP_BUFFER_LIMIT)
    assert len(limit) == 1 and limit[0].conn_id == 2
    assert data_of(ev, 2, 0) == b"b" * 600
    fin = r.finish()
    assert data_of(fin, 1, 0) == b"a" * 600 and r.bytes_buffered == 0


# --- robustness ---------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 3000), st.integers(0, 3000),
                          st.sampled_from([0, SYN, SYN | ACK, ACK, ACK | FIN, RST, ACK | PSH, FIN | SYN]),
                          st.integers(0, 300)), max_size=60))
def test_garbage_segments_never_crash(spec: list[tuple[bool, bool, int, int, int, int]]) -> None:
    r = Reassembler(max_buffered_per_flow=2000, max_buffered_total=3000, max_flows=3,
                    idle_timeout_ns=50_000)
    wires = [Wire(cisn=MOD - 1000), Wire(cport=40001, sisn=5)]
    ev = []
    for from_client, second, seq, ack, flags, size in spec:
        w = wires[second]
        rnd = random.Random(seq)
        maker = w.c if from_client else w.s
        ev += r.feed(maker(seq, rnd.randbytes(size), ack=ack, flags=flags))
        assert r.bytes_buffered <= 3000
    ev += r.finish()
    check_stream_order(ev)
    assert r.flows_open == 0 and r.bytes_buffered == 0
    opened = {e.conn_id for e in of_type(ev, StreamOpened)}
    assert opened == {e.conn_id for e in of_type(ev, StreamClosed)}


# --- a real loopback recording -------------------------------------------------------------------------

def test_real_capture_reassembles_exactly() -> None:
    segs = list(read_pcap_segments(PCAP))
    assert max(len(s.payload) for s in segs) > 1460               # loopback: big segments, read whole
    r = Reassembler()
    ev = run(r, segs)
    check_stream_order(ev)
    expected = b"".join(echo_messages())
    assert len(expected) > 300_000
    opened = of_type(ev, StreamOpened)
    assert len(opened) == 1 and opened[0].syn_seen
    assert opened[0].client_port == segs[0].sport
    assert data_of(ev, 1, 0) == expected
    assert data_of(ev, 1, 1) == expected
    assert not of_type(ev, StreamGap) and not problems(ev)
    assert [(e.direction, e.rst) for e in of_type(ev, StreamEnd)] == [(0, False), (1, False)]
    assert ev[-1].reason == "closed"


def test_real_capture_shuffled_and_duplicated_within_a_window() -> None:
    """Segments reordered within each run of one sender (nothing overtakes the peer's ACK of it,
    as at any single capture point) and duplicated later: the same bytes come out."""
    segs = list(read_pcap_segments(PCAP))
    runs = [list(g) for _, g in itertools.groupby(segs, key=lambda s: s.sport)]
    expected = b"".join(echo_messages())
    for seed in range(5):
        rnd = random.Random(seed)
        order: list[Segment] = []
        for run_ in runs:
            rnd.shuffle(run_)
            order += run_
        for seg in rnd.sample([s for s in segs if s.payload], 6):
            order.insert(rnd.randrange(order.index(seg) + 1, len(order) + 1), seg)
        ev = run(Reassembler(), order)
        check_stream_order(ev)
        assert data_of(ev, 1, 0) == expected and data_of(ev, 1, 1) == expected
        assert not of_type(ev, StreamGap) and not problems(ev)


def test_real_capture_picked_up_mid_stream() -> None:
    segs = list(read_pcap_segments(PCAP))
    first_data = next(i for i, s in enumerate(segs) if s.payload)
    start = first_data + 2                                         # skip SYN, SYN-ACK and the first request
    ev = run(Reassembler(), segs[start:])
    opened = of_type(ev, StreamOpened)
    assert len(opened) == 1 and not opened[0].syn_seen
    assert opened[0].client_port == segs[0].sport                 # the ephemeral port's side
    expected = b"".join(echo_messages())
    skipped_c = sum(len(s.payload) for s in segs[:start] if s.sport == segs[0].sport)
    skipped_s = sum(len(s.payload) for s in segs[:start] if s.sport != segs[0].sport)
    assert data_of(ev, 1, 0) == expected[skipped_c:]
    assert data_of(ev, 1, 1) == expected[skipped_s:]
    assert not of_type(ev, StreamGap)


@pytest.mark.parametrize("drop", [10, 17])
def test_real_capture_lost_segment_is_an_exact_gap(drop: int) -> None:
    segs = list(read_pcap_segments(PCAP))
    lost = segs[drop]
    assert lost.payload
    ev = run(Reassembler(), segs[:drop] + segs[drop + 1:])
    direction = 0 if lost.sport == segs[0].sport else 1
    gaps = of_type(ev, StreamGap)
    assert [(g.direction, g.size) for g in gaps] == [(direction, len(lost.payload))]
    sent = b"".join(s.payload for s in segs if s.sport == lost.sport)
    offset = sum(len(s.payload) for s in segs[:drop] if s.sport == lost.sport)
    assert data_of(ev, 1, direction) == sent[:offset] + sent[offset + len(lost.payload):]
