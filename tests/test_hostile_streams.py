"""Issue 13, the TCP reassembler under hostile captures (items 1, 3 and 18), on the shapes of
tests/hostile/streams.py. Complexity is checked by counting work, not by timing: the number of
lines of analyzer/streams.py executed per segment (sys.settrace), which must not grow with the
number of flows buffering or of buffered pieces a retransmission covers."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import analyzer
import analyzer.streams
from analyzer.capture import CaptureReader
from analyzer.events import Segment, StreamData, StreamEvent, StreamProblem
from analyzer.packets import PacketDecoder
from analyzer.pipeline import analyze_file
from analyzer.protocol import ProblemKind
from analyzer.streams import Reassembler
from analyzer.tables import PROBLEM_COLUMNS
from analyzer.websocket import Options
from tests.hostile import streams as shapes
from tests.pcapgen import frame, write_pcap


def segments_of(path: pathlib.Path) -> list[Segment]:
    reader = CaptureReader(path)
    decoder = PacketDecoder()
    try:
        return [seg for rec in reader if (seg := decoder.decode(rec)) is not None]
    finally:
        reader.close()


def lines_executed(work: Callable[[], Any]) -> tuple[Any, int]:
    """Run `work`, counting the lines of analyzer/streams.py it executes (loop iterations of a
    comprehension included: each jumps back to its line)."""
    target = analyzer.streams.__file__
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> Callable | None:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: object) -> Callable | None:
        return local if frame.f_code.co_filename == target else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        result = work()
    finally:
        sys.settrace(previous)
    return result, count


def feed_all(r: Reassembler, segs: list[Segment]) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    for seg in segs:
        out += r.feed(seg)
    return out


def of_kind(events: list[StreamEvent], kind: ProblemKind) -> list[StreamProblem]:
    return [e for e in events if type(e) is StreamProblem and e.problem.kind is kind]


def delivered(events: list[StreamEvent], conn_id: int, direction: int) -> bytes:
    return b"".join(e.data for e in events
                    if type(e) is StreamData and e.conn_id == conn_id and e.direction == direction)


# --- item 1: the total out-of-order cap with many flows buffering --------------------------------

TRACED = 200        # over-cap segments whose work is counted


def over_cap_work(tmp_path: pathlib.Path, scale: float) -> tuple[float, int]:
    """Lines executed per segment over the total cap, the cap set to one chunk per flow (so the
    second out-of-order segment of every flow is over it), and the number of flows."""
    flows = shapes.ooo_flows(scale)
    segs = segments_of(shapes.ooo_many_flows(tmp_path, scale))
    cap = 256 * flows                                   # = `flows` chunks of out-of-order data
    r = Reassembler(max_buffered_total=cap)
    before: list[StreamEvent] = []
    first = 0
    while not r.bytes_given_up:                          # untraced up to the first over the cap
        before += r.feed(segs[first])
        first += 1
    traced = segs[first:first + TRACED]
    events, lines = lines_executed(lambda: feed_all(r, traced))
    # every other one is over the cap (each gives up on two chunks of its own flow)
    assert len(of_kind(events, ProblemKind.TCP_BUFFER_LIMIT)) >= TRACED // 2
    assert r._total_chunks <= flows and r.bytes_buffered <= cap
    after = feed_all(r, segs[first + TRACED:]) + r.finish()
    assert r.bytes_buffered == 0 and r.flows_open == 0
    # nothing after a hole is lost: every flow's segments are delivered, at the cap or at the end
    got = delivered(before + events + after, 1, 1)
    assert got == b"o" * shapes.OOO_SEGMENT * shapes.OOO_SEGMENTS
    assert sum(len(e.data) for e in before + events + after
               if type(e) is StreamData and e.direction == 1) == (
        flows * shapes.OOO_SEGMENT * shapes.OOO_SEGMENTS)
    return lines / TRACED, flows


def test_total_cap_work_per_segment_does_not_grow_with_buffering_flows(tmp_path: pathlib.Path) -> None:
    small, n_small = over_cap_work(tmp_path, 0.25)
    large, n_large = over_cap_work(tmp_path, 1.0)
    assert n_large == 4 * n_small == shapes.OOO_FLOWS
    # The old code built a list of every buffering flow per segment: ~n lines each (450, 1,800).
    assert small < 150 and large < 150, (small, large)
    assert large < small * 1.25 + 10, (small, large)


def test_total_cap_gives_up_the_oldest_buffering_flow_next() -> None:
    """Over the total cap with the segment's own flow empty: the flow buffering longest is given
    up on first, and only as much as needed."""
    from tests.helpers_streams import Wire
    r = Reassembler(max_buffered_total=1000, max_buffered_per_flow=1000)
    a, b, c = Wire(cport=51000), Wire(cport=52000, rec=100), Wire(cport=53000, rec=200)
    feed_all(r, [*a.handshake(), *b.handshake(), *c.handshake()])
    feed_all(r, [a.c(10, b"a" * 400), b.c(10, b"b" * 400)])
    r.max_buffered_total = 700          # lowered: the next out-of-order segment must make room
    ev = r.feed(c.c(10, b"c" * 100))
    limit = of_kind(ev, ProblemKind.TCP_BUFFER_LIMIT)
    assert [p.conn_id for p in limit] == [3, 1]          # its own flow, then the oldest (a), not b
    assert delivered(ev, 1, 0) == b"a" * 400 and delivered(ev, 2, 0) == b""
    assert r.bytes_buffered == 400


# --- item 3: overlapping retransmissions over many buffered pieces -------------------------------

@pytest.mark.parametrize("differ", [True, False], ids=["conflicting", "identical"])
def test_retransmission_over_many_pieces_costs_constant_work(tmp_path: pathlib.Path,
                                                             differ: bool) -> None:
    writer = shapes.overlap_conflict if differ else shapes.overlap_identical
    segs = segments_of(writer(tmp_path, 1.0))
    slivers = shapes.OVERLAP_SEGMENT // 2
    assert len(segs) == 5 + slivers + shapes.OVERLAP_REPEATS
    r = Reassembler()
    head = feed_all(r, segs[:5 + slivers])               # handshake, upgrade, 700 one-byte slivers
    assert len(r._buffering) == 1 and r.bytes_buffered == slivers
    first, merging = lines_executed(lambda: r.feed(segs[5 + slivers]))
    rest, lines = lines_executed(lambda: feed_all(r, segs[6 + slivers:]))
    events = list(first) + rest
    per_segment = lines / (shapes.OVERLAP_REPEATS - 1)
    # The old code compared (and reported) each of the 1,400 buffered pieces on every
    # retransmission: over 10,000 lines per segment. Now the first retransmission merges them
    # into one chunk (work in proportion to the pieces, once) and the others compare one chunk.
    assert merging < 12 * shapes.OVERLAP_SEGMENT, merging
    assert per_segment < 200, per_segment
    assert r._total_chunks == 1
    conflicts = of_kind(events, ProblemKind.TCP_OVERLAP_CONFLICT)
    seq = len(shapes.upgrade_response(accept=shapes.SAMPLE_ACCEPT)) + 2   # after the lost byte
    if differ:
        # one problem per segment, however many places differ
        assert len(conflicts) == shapes.OVERLAP_REPEATS
        assert conflicts[0].problem.detail == (
            f"overlapping copies differ: {slivers} bytes in {slivers} places from relative seq {seq} "
            "(first copy kept)")
        assert conflicts[1].problem.detail == (
            f"overlapping copies differ: {shapes.OVERLAP_SEGMENT} bytes at relative seq {seq} "
            "(first copy kept)")
    else:
        assert conflicts == []
    tail = r.finish()
    whole = b"a" * shapes.OVERLAP_SEGMENT
    first_copies = bytes(ord("#") if differ and i % 2 == 0 else ord("a") for i in range(len(whole)))
    assert delivered(head + events + tail, 1, 1)[-len(whole):] == first_copies


@pytest.mark.parametrize("name", ["overlap-conflict", "overlap-identical"])
def test_overlap_shapes_through_the_pipeline(tmp_path: pathlib.Path, name: str) -> None:
    path = shapes.SHAPES[name](tmp_path, 2.0)
    rows = analyze_file(path, Options())
    kind = [name for name, _, _ in PROBLEM_COLUMNS].index("kind")
    kinds = [row[kind] for row in rows.problems]
    conflicts = kinds.count("tcp-overlap-conflict")
    assert conflicts == (2 * shapes.OVERLAP_REPEATS if name == "overlap-conflict" else 0)
    assert "internal-error" not in kinds


# --- item 18: one timestamp far ahead, and flows released for idleness --------------------------

def test_one_syn_two_hours_ahead_loses_no_frame(tmp_path: pathlib.Path) -> None:
    """The issue's shape: 100 frames over two connections, one unrelated SYN stamped 2 h ahead
    halfway: every frame is decoded, nothing is released for idleness."""
    rows = analyze_file(shapes.time_jump(tmp_path, 1.0), Options())
    kind = [name for name, _, _ in PROBLEM_COLUMNS].index("kind")
    assert [row[kind] for row in rows.problems] == []
    a = analyzer.analyze(shapes.time_jump(tmp_path, 1.0))
    assert len(a.frames) == 2 * shapes.JUMP_FRAMES
    texts = [(shapes.JUMP_TEXT % i).decode() for i in range(2 * shapes.JUMP_FRAMES)]
    assert sorted(a.messages["preview"]) == sorted(texts)
    assert list(a.connections["close_status"]) == ["open-at-end", "open-at-end"]


def test_idle_flow_that_resumes_is_said(tmp_path: pathlib.Path) -> None:
    """A WebSocket connection silent for longer than the idle timeout (1 h) while another one
    keeps the clock going: released with a flow-released-idle row; its later frame belongs to a
    new connection picked up mid-stream."""
    idle = shapes._websocket(1, 1_700_000_000.0)
    idle.send(1, frame(1, b"before"))
    busy = shapes._websocket(2, idle.t + 1)
    for _ in range(75):                                  # a frame a minute for 75 minutes
        busy.t += 60
        busy.send(1, frame(1, b"tick"))
    idle.t = busy.t + 1
    idle.send(1, frame(1, b"after"))
    path = tmp_path / "idle.pcap"
    write_pcap(path, idle.packets[:-1] + busy.packets + idle.packets[-1:])
    a = analyzer.analyze(path)
    released = a.problems[a.problems["kind"] == "flow-released-idle"]
    assert list(released["conn_id"]) == [1]
    assert "no packet for" in released["detail"].iloc[0] and "idle timeout 3600 s" in \
        released["detail"].iloc[0]
    first = a.frames[a.frames["conn_id"] == 1]
    assert len(first) == 1 and len(a.frames[a.frames["conn_id"] == 2]) == 75


def _segment(n: int, ts: int, flags: int = 0x18, payload: bytes = b"x", seq: int = 1) -> Segment:
    client = bytes([10, 0, n >> 8, n & 255])
    return Segment(0, ts, 4, client, b"\xc0\xa8\x00\x01", 40000, 80, seq, 0, flags, payload, False)


def test_idle_clock_believes_a_jump_only_when_confirmed() -> None:
    s = 10**9
    t0 = 1_700_000_000 * s
    r = Reassembler(idle_timeout_ns=3600 * s, half_open_timeout_ns=10**6 * s)   # checks every 60 s
    events: list[StreamEvent] = []

    def closed(evs: list[StreamEvent]) -> list[int]:
        return sorted(e.conn_id for e in evs if type(e).__name__ == "StreamClosed")

    for n in range(10):                                  # conns 1-10 carry data, 11 is bare
        events += r.feed(_segment(n, t0 + n * s, seq=1))
    events += r.feed(_segment(99, t0 + 10 * s, flags=0x02, payload=b""))
    for k in range(3):                                   # three SYNs in a row 2 h ahead: 12-14
        events += r.feed(_segment(200 + k, t0 + 7200 * s, flags=0x02, payload=b""))
    assert closed(events) == []
    for m in range(1, 71):                               # 70 minutes go by: conn 1 talks
        events += r.feed(_segment(0, t0 + 60 * m * s, seq=1 + m))
        if m == 1:
            events += r.feed(_segment(5, t0 + 60 * s, seq=2))   # conn 6, behind the SYNs ahead
        if m == 10:                                      # three more ahead (15-17): each run of
            for k in range(3):                           # them ended by the next regular check
                events += r.feed(_segment(300 + k, t0 + 7200 * s, flags=0x02, payload=b""))
    # Released on schedule, an hour after their last packet: the flows with data said so (the
    # SYNs stamped ahead do not hide conn 6), the bare one silently; the clock did not jump.
    assert sorted(p.conn_id for p in of_kind(events, ProblemKind.FLOW_IDLE_RELEASED)) == list(range(2, 11))
    assert closed(events) == list(range(2, 12))
    assert r.flows_open == 7
    # The capture really jumps: four packets in a row at the new time confirm it.
    jump = [r.feed(_segment(400 + k, t0 + 11_000 * s + k, flags=0x02, payload=b"")) for k in range(4)]
    assert [closed(ev) for ev in jump] == [[], [], [], [1, *range(12, 18)]]
    released = of_kind(jump[3], ProblemKind.FLOW_IDLE_RELEASED)
    assert [p.conn_id for p in released] == [1]
    assert "no packet for 6800 s (idle timeout 3600 s)" in released[0].problem.detail
