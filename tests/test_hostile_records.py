"""Tiny hostile records in a gzip (issue 13, item 2, left over): millions of identical 1..60-byte
records that are malformed (runts, a bad IPv4 header length, a bad TCP data offset) or plain
non-TCP packets (UDP, ARP). Past a problem kind's cap a record must cost next to nothing: no
Problem built, no detail formatted, a few calls; the first MAX_PROBLEMS_PER_KIND are listed
exactly and the rest counted in one summary row. Shapes: tests/hostile/capture.py."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import analyzer
from analyzer import packets
from analyzer.tables import MAX_PROBLEMS_PER_KIND
from tests.hostile.capture import FRAMES, SHAPES, TINY_RECORDS, conversation

#: shape → the problem kind each of its tiny records is (None: not a defect, silently dropped)
KINDS = {
    "gzip-runts": "malformed-packet",
    "gzip-malformed-ipv4": "malformed-packet",
    "gzip-bad-tcp-offset": "malformed-packet",
    "gzip-udp": None,
    "gzip-arp": None,
}
#: Python-level calls into analyzer/ per tiny record, the reader's generator included (the old
#: code made 7 or 8 for a malformed record: the decoder's layers, Problem, the pipeline's
#: capture_problems, the limiter, ProblemKind.__str__; now: reader, decode, layer, _malformed, admit)
MAX_CALLS_PER_RECORD = 5


class CallCounter:
    """Counts Python function calls (and generator resumptions) in the analyzer package."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._root = str(Path(analyzer.__file__).parent)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(self._root):
            self.calls[frame.f_code.co_qualname] += 1

    def __enter__(self) -> CallCounter:
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


@pytest.fixture
def problems_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the Problem objects the packet decoder builds."""
    built: list[str] = []
    real = packets.Problem

    def counting(kind: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(str(kind))
        return real(kind, *args, **kwargs)

    monkeypatch.setattr(packets, "Problem", counting)
    return built


@pytest.mark.parametrize("shape", sorted(KINDS))
def test_tiny_records_past_the_cap_cost_no_problem_and_lose_nothing(
        tmp_path: Path, shape: str, problems_built: list[str]) -> None:
    path = SHAPES[shape](tmp_path, 1.0)
    a = analyzer.analyze(path, jobs=1)
    kind = KINDS[shape]
    packets_per_conversation = len(conversation())
    # the good data on both sides of the flood is all there
    assert len(a.connections) == 2
    assert (a.frames["opcode"] == 1).sum() == 2 * FRAMES
    summary = a.summary().to_dict()
    assert summary["packets"] == TINY_RECORDS + 2 * packets_per_conversation
    internal = a.problems[a.problems["kind"] == "internal-error"]
    assert internal.empty, internal
    if kind is None:
        # plain non-TCP traffic: dropped silently, not a problem of any kind
        assert problems_built == []
        assert a.problems.empty, a.problems
        return
    # no Problem is built past the cap: the decoder asks first
    assert problems_built == [kind] * MAX_PROBLEMS_PER_KIND
    rows = a.problems[a.problems["kind"] == kind]
    assert len(rows) == MAX_PROBLEMS_PER_KIND + 1
    listed = rows.iloc[:MAX_PROBLEMS_PER_KIND]
    first = packets_per_conversation + 1
    # the first N exact: record by record, each with its own detail
    assert listed["frame_no"].tolist() == list(range(first, first + MAX_PROBLEMS_PER_KIND))
    assert listed["detail"].str.contains("expected=").all()
    last = first + TINY_RECORDS - 1
    detail = rows.iloc[-1]["detail"]
    assert detail.startswith(f"{TINY_RECORDS - MAX_PROBLEMS_PER_KIND} more {kind} problems in this capture "
                             f"not listed (records {first + MAX_PROBLEMS_PER_KIND} to {last})"), detail
    assert rows.iloc[-1]["frame_no"] == last


@pytest.mark.parametrize("shape", sorted(KINDS))
def test_tiny_records_cost_a_few_calls_each(tmp_path: Path, shape: str) -> None:
    path = SHAPES[shape](tmp_path, 0.25)
    records = int(0.25 * TINY_RECORDS)
    with CallCounter() as counter:
        a = analyzer.analyze(path, jobs=1)
    assert (a.frames["opcode"] == 1).sum() == 2 * FRAMES
    # what is called once per tiny record; everything else (setup, the two conversations, the
    # listed problems, tables) is far less than one call per record
    per_record = {name: n for name, n in counter.calls.items() if n >= records}
    assert sum(per_record.values()) <= MAX_CALLS_PER_RECORD * records + 2_000, per_record
    # the detail of a problem past the cap is never formatted, its Problem never built
    assert counter.calls["Problem.__init__"] <= MAX_PROBLEMS_PER_KIND + 50, counter.calls["Problem.__init__"]


def test_an_unlimited_decoder_still_lists_every_defect() -> None:
    """Without `admit` (a decoder used alone) every defect is a Problem, its detail formatted."""
    from analyzer.events import PacketRecord

    dec = packets.PacketDecoder()
    runt = b"\x00" * 10
    for no in range(1, 4):
        assert dec.decode(PacketRecord(no, no * 1000, 1, len(runt), len(runt), runt)) is None
    assert [(p.kind, p.detail, p.record_no) for p in dec.problems] == [
        ("malformed-packet", "Ethernet header: expected=14 bytes, found=10", no) for no in range(1, 4)]


def test_admit_is_asked_before_the_problem_is_built(problems_built: list[str]) -> None:
    from analyzer.events import PacketRecord
    from analyzer.tables import ProblemLimiter

    limiter = ProblemLimiter()
    dec = packets.PacketDecoder(admit=limiter.admit)
    short_ip = b"\x45" + bytes(10)          # raw IPv4 link: a 11-byte IPv4 header
    total = MAX_PROBLEMS_PER_KIND + 7
    for no in range(1, total + 1):
        dec.decode(PacketRecord(no, no, 101, len(short_ip), len(short_ip), short_ip))
    assert len(problems_built) == MAX_PROBLEMS_PER_KIND
    assert len(dec.problems) == MAX_PROBLEMS_PER_KIND
    assert dec.problems[-1].record_no == MAX_PROBLEMS_PER_KIND
    (row,) = limiter.summary_rows("x", None, "in this capture")
    assert row.stands_for == 7
    assert "7 more malformed-packet problems in this capture not listed (records 1001 to 1007)" in row[6]
