"""Mutated and truncated captures through analyzer.analyze(), as Wireshark's fuzz-test.sh does with
`editcap -E`: it always returns (CaptureError only when the file header itself is destroyed, or
reading stops on damage before any record: "nothing readable", issue 13 item 21),
capture- and packet-level problems all reach the problems table, and a capture cut at any point
reports the frames before the cut exactly as the whole capture does."""

from __future__ import annotations

import os
import struct

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import analyzer
from analyzer.capture import CaptureReader
from analyzer.packets import PacketDecoder
from analyzer.protocol import ProblemKind
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.strategies import mutated
from tests.fuzz.targets import INTERNAL_DETAIL, capture_files

SMALL = [p for p in capture_files() if os.path.getsize(p) <= 200_000 and not p.endswith(".gz")]
KINDS = {k.value for k in ProblemKind}
FRAME_KEYS = ["conn_id", "frame_no", "ts", "sender", "opcode", "fin", "rsv1", "masked", "payload_len",
              "close_code", "close_reason"]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def header_len(data: bytes) -> int:
    """Bytes of the file header: 24 for pcap, the first Section Header Block for pcapng."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        return struct.unpack(endian + "I", data[4:8])[0]
    return 24


def records(data: bytes, boundaries: set[int] | None = None) -> list[tuple[int, int, int]]:
    """(record_no, start, end) of each packet record of an undamaged pcap or pcapng file; the
    offsets where a block (pcapng) or record (pcap) starts are added to `boundaries`."""
    out = []
    bounds = set() if boundaries is None else boundaries
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos, no = 0, 0
        while pos + 8 <= len(data):
            bounds.add(pos)
            btype, blen = struct.unpack_from(endian + "II", data, pos)
            if btype in (2, 3, 6):
                no += 1
                out.append((no, pos, pos + blen))
            pos += blen
        return out
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos, no = 24, 0
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
        no += 1
        bounds.add(pos)
        out.append((no, pos, pos + 16 + caplen))
        pos += 16 + caplen
    return out


def analyze_bytes(tmp_path, data: bytes, name: str = "fuzzed.pcap") -> analyzer.Analysis:
    path = tmp_path / name
    path.write_bytes(data)
    return analyzer.analyze(path)


def frames_before(a: analyzer.Analysis, record_no: int) -> pd.DataFrame:
    """The complete frames before `record_no` (a frame the cut ends inside is listed incomplete,
    numbered with its last packet before the cut; the whole capture completes it later)."""
    f = a.frames
    if "complete" in f.columns:
        f = f[f["complete"].astype(bool)]
    return f[f["frame_no"] < record_no][FRAME_KEYS].reset_index(drop=True)


def assert_same_frames_before(cut: analyzer.Analysis, whole: analyzer.Analysis, record_no: int) -> None:
    """Every frame the whole capture reports before `record_no`, the cut one reports identically.

    The cut capture may report more: at its end the reassembler gives up on holes that a later
    retransmission would have filled, and frames decoded from the bytes after such a hole are
    numbered with the flow's last packet (in the whole capture they come later, numbered with the
    retransmission). Each such extra frame must belong to a connection with a tcp-gap row."""
    got, expected = frames_before(cut, record_no), frames_before(whole, record_no)
    if got.equals(expected):
        return
    gapped = set(cut.problems.loc[cut.problems["kind"] == "tcp-gap", "conn_id"])
    kept = got[~got["conn_id"].isin(gapped)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, expected[~expected["conn_id"].isin(gapped)].reset_index(drop=True))
    for conn in gapped:
        ours = got[got["conn_id"] == conn].reset_index(drop=True)
        theirs = expected[expected["conn_id"] == conn].reset_index(drop=True)
        pd.testing.assert_frame_equal(ours.iloc[:len(theirs)], theirs)


def _lower_level_problems(path) -> list[str]:
    """The details of every problem the capture reader and the packet decoder report."""
    details = []
    try:
        reader = CaptureReader(path)
    except analyzer.CaptureError:
        return []
    dec = PacketDecoder()
    with reader:
        for rec in reader:
            dec.decode(rec)
    dec.finish()
    details += [p.detail for p in dec.problems]
    details += [p.detail for p in reader.problems]
    return details


@given(data=st.data())
@fuzz_settings(120)
def test_mutated_capture_always_returns(tmp_path_factory, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(SMALL))
    original = _read(path)
    damaged = data.draw(mutated((original,)), label="damaged")     # drawn edits: they shrink
    tmp = tmp_path_factory.mktemp("mut")
    try:
        a = analyze_bytes(tmp, damaged, os.path.basename(path))
    except analyzer.CaptureError as exc:
        hl = header_len(original)
        assert damaged[:hl] != original[:hl] or "nothing readable" in str(exc), \
            f"CaptureError with the file header intact: {exc}"
        assert "\n" not in str(exc)
        return
    assert set(a.problems["kind"]) <= KINDS
    internal = a.problems[a.problems["detail"].str.contains(INTERNAL_DETAIL, regex=True)]
    assert "internal-error" not in set(a.problems["kind"]) and internal.empty, internal["detail"].tolist()
    rows = set(a.problems["detail"])
    missing = [d for d in _lower_level_problems(tmp / os.path.basename(path)) if d not in rows]
    assert not missing, f"problems that never became rows: {missing[:3]}"


@given(data=st.data())
@fuzz_settings(80)
def test_truncated_capture_keeps_what_came_before(tmp_path_factory, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(SMALL))
    original = _read(path)
    bounds: set[int] = set()
    recs = records(original, bounds)
    if not recs:
        return
    cut = data.draw(st.integers(header_len(original), len(original) - 1))
    tmp = tmp_path_factory.mktemp("cut")
    whole = _whole(path)
    damaged_no = next((no for no, start, end in recs if end > cut), recs[-1][0] + 1)
    if damaged_no == 1 and cut not in bounds:
        with pytest.raises(analyzer.CaptureError, match="nothing readable"):   # cut in the first record
            analyze_bytes(tmp, original[:cut], os.path.basename(path))
        return
    a = analyze_bytes(tmp, original[:cut], os.path.basename(path))
    assert_same_frames_before(a, whole, damaged_no)
    if cut not in bounds:
        # cut inside a record (at a boundary the file just looks shorter): a problem row says so
        assert {"capture-truncated", "capture-unreadable"} & set(a.problems["kind"])


_WHOLE: dict[str, analyzer.Analysis] = {}


def _whole(path: str) -> analyzer.Analysis:
    if path not in _WHOLE:
        _WHOLE[path] = analyzer.analyze(path)
    return _WHOLE[path]


@pytest.mark.parametrize("path", SMALL[:6], ids=os.path.basename)
def test_every_cut_point_of_a_small_capture(tmp_path, path: str) -> None:
    """Deterministic sweep: cut inside every record of the smallest captures."""
    original = _read(path)
    whole = _whole(path)
    for no, start, end in records(original)[:60]:
        cut = (start + end) // 2
        if no == 1:        # nothing readable before the cut: one CaptureError line (issue 13 item 21)
            with pytest.raises(analyzer.CaptureError, match="nothing readable"):
                analyze_bytes(tmp_path, original[:cut], os.path.basename(path))
            continue
        a = analyze_bytes(tmp_path, original[:cut], os.path.basename(path))
        assert_same_frames_before(a, whole, no)
        assert "capture-truncated" in set(a.problems["kind"])
