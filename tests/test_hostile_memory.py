"""Issue 13, items 5, 6 and 8: memory that grew with hostile input (tables of 2-byte frames,
problem floods across connections, kept payloads of deflate bombs). The captures come from
tests/hostile/memory.py, the shapes the benchmark measures at larger scales."""

from __future__ import annotations

import re

import pytest

import analyzer
import analyzer.api
from tests.hostile import memory
from tests.pcapgen import frame, write_pcap

MB = 1 << 20
MAX_ANALYSIS_PROBLEMS_PER_KIND = 10_000     # the promise (analyzer.tables has the same number)


# --- item 6: problem floods across connections ----------------------------------------------------

def _flood_counts(problems, kind: str) -> tuple[int, int]:
    """(rows listed of this kind, problems they stand for: listed + the counts of summary rows)."""
    rows = problems[problems.kind == kind]
    listed = 0
    for detail in rows.detail:
        more = re.match(r"(\d+) more ", detail)
        listed += int(more.group(1)) if more else 1
    return len(rows), listed


def test_problem_flood_over_many_connections_is_capped_per_analysis(tmp_path) -> None:
    path = memory.problem_flood(tmp_path, 1.0)
    conns = memory.problem_flood_connections(1.0)
    a = analyzer.analyze(path, jobs=1)
    total = conns * memory.FLOOD_PER_KIND
    assert len(a.frames) == 2 * total                  # every frame is still there
    assert len(a.connections) == conns
    for kind in ("unmasked-client-frame", "masked-server-frame"):
        rows, counted = _flood_counts(a.problems, kind)
        assert rows <= MAX_ANALYSIS_PROBLEMS_PER_KIND + 1, (kind, rows)
        assert counted == total, kind                   # nothing silently lost: the rest is counted
        summary = a.problems[(a.problems.kind == kind) & a.problems.conn_id.isna()]
        assert len(summary) == 1
        assert summary.detail.iloc[0].startswith(f"{total - MAX_ANALYSIS_PROBLEMS_PER_KIND} more {kind} "
                                                 "problems in this analysis not listed")


def test_problem_cap_in_all_kinds_together(tmp_path, monkeypatch) -> None:
    import analyzer.tables as tables
    monkeypatch.setattr(tables, "MAX_ANALYSIS_PROBLEMS", 3000)
    a = analyzer.analyze(memory.problem_flood(tmp_path, 0.25), jobs=1)
    listed = a.problems[~a.problems.detail.str.contains(" more ")]
    assert len(listed) == 3000
    total = memory.problem_flood_connections(0.25) * memory.FLOOD_PER_KIND
    for kind in ("unmasked-client-frame", "masked-server-frame"):
        assert _flood_counts(a.problems, kind)[1] == total


def test_problem_cap_is_shared_by_processes_that_split_a_capture(tmp_path, monkeypatch) -> None:
    """Two processes (the parent and a worker) each keep half of the cap: the merged table
    lists at most the cap, and the counts of both are summed in one row per kind."""
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    path = memory.problem_flood(tmp_path, 1.0)
    a = analyzer.analyze(path, jobs=2)
    total = memory.problem_flood_connections(1.0) * memory.FLOOD_PER_KIND
    for kind in ("unmasked-client-frame", "masked-server-frame"):
        rows, counted = _flood_counts(a.problems, kind)
        assert rows <= MAX_ANALYSIS_PROBLEMS_PER_KIND + 1
        assert counted == total
        assert (a.problems.conn_id.isna() & (a.problems.kind == kind)).sum() == 1


# --- item 8: kept payloads have a budget ---------------------------------------------------------

def _kept_sizes(a: analyzer.Analysis) -> list[int | None]:
    return [None if p is None else len(p) for p in a.messages.payload]


def test_deflate_bombs_keep_payloads_only_up_to_the_budget(tmp_path) -> None:
    path = memory.deflate_bombs(tmp_path, 1.0, inflated=2 * MB)     # 4 bombs, then a text message
    a = analyzer.analyze(path, payloads=True, max_message_bytes=MB, max_payload_bytes=2 * MB + MB // 2)
    assert list(a.messages["size"]) == [MB] * 4 + [15]
    assert _kept_sizes(a) == [MB, MB, None, None, 15]
    assert a.messages.preview.iloc[3].startswith("0000")          # the preview is still there
    rows = a.problems[a.problems.kind == "kept-payload-limit"]
    assert len(rows) == 1
    assert rows.detail.iloc[0].startswith(f"2 message payloads ({2 * MB} bytes) not kept")
    assert (a.problems.kind == "message-over-limit").sum() == 4


def test_kept_payload_budget_bounds_memory(tmp_path) -> None:
    """16 bombs of 1 MiB (and a text message) with a 2 MiB budget: the tables hold ~2 MiB of
    payloads, not 16."""
    import tracemalloc
    path = memory.deflate_bombs(tmp_path, 4.0, inflated=2 * MB)
    tracemalloc.start()
    try:
        a = analyzer.analyze(path, payloads=True, max_message_bytes=MB, max_payload_bytes=2 * MB)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert _kept_sizes(a)[:3] == [MB, MB, None]
    assert sum(s or 0 for s in _kept_sizes(a)) <= 2 * MB
    assert held < 8 * MB, f"{held / MB:.1f} MiB held"
    assert a.problems[a.problems.kind == "kept-payload-limit"].detail.iloc[0].startswith(
        f"15 message payloads ({14 * MB + 15} bytes) not kept")   # 14 bombs, the text


def test_fragmented_messages_past_the_budget_are_not_kept(tmp_path) -> None:
    """The general path (fragments): a message that cannot fit stops being held as it grows."""
    conv = memory._opened(50000)
    chunk = bytes(range(256)) * 512                               # 128 KiB
    for _ in range(3):
        memory._send(conv, 1, frame(2, chunk, fin=False))
        memory._send(conv, 1, frame(0, chunk))                    # 256 KiB messages in 2 fragments
    conv.fin(0)
    conv.fin(1)
    path = tmp_path / "fragments.pcap"
    write_pcap(path, conv.packets)
    a = analyzer.analyze(path, payloads=True, max_payload_bytes=MB // 4 + MB // 8)
    assert list(a.messages.frames) == [2, 2, 2]
    assert _kept_sizes(a) == [MB // 4, None, None]
    assert a.messages.payload.iloc[0] == chunk * 2
    detail = a.problems[a.problems.kind == "kept-payload-limit"].detail
    assert detail.iloc[0].startswith(f"2 message payloads ({MB // 2} bytes) not kept")


@pytest.mark.parametrize("payloads", [False, True])
def test_default_budget_keeps_ordinary_payloads(tmp_path, payloads: bool) -> None:
    path = memory.tiny_frames(tmp_path, 0.02)
    a = analyzer.analyze(path, payloads=payloads)
    assert len(a.messages) == memory.tiny_frames_frames(0.02)
    assert _kept_sizes(a) == ([0] if payloads else [None]) * len(a.messages)
    assert "kept-payload-limit" not in set(a.problems.kind)


# --- item 5: 2-byte frames -----------------------------------------------------------------------

def test_tiny_frames_peak_memory_per_frame(tmp_path) -> None:
    """Back-to-back 2-byte frames (each a message): the peak of analyze() per frame, as traced by
    tracemalloc (numpy and Python allocations), was 254 bytes: the rows held twice while they were
    moved into columns, copies of the time columns, an object array per nullable column, a sort of
    rows already in order. Now ~208: the tables themselves and little more."""
    import tracemalloc
    path = memory.tiny_frames(tmp_path, 1.0)
    analyzer.analyze(memory.tiny_frames(tmp_path, 0.02))          # imports and caches warmed up
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        a = analyzer.analyze(path, jobs=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    n = memory.tiny_frames_frames(1.0)
    assert len(a.frames) == len(a.messages) == n
    assert (a.frames.payload_len == 0).all() and (a.messages.preview == "").all()
    assert peak / n < 225, f"{peak / n:.0f} bytes per frame at the peak"


def test_compacting_many_rows_never_holds_them_twice() -> None:
    """Records of hundreds of frames each: compact() (every 16,384 records) may find millions of
    rows waiting. Moving them into columns used to hold them twice (2x the table at that moment)."""
    import tracemalloc

    from analyzer.tables import FRAME_FIELDS, FrameColumns
    n = 200_000
    size = n * 8 * len(FRAME_FIELDS)
    tracemalloc.start()
    try:
        rows = FrameColumns()
        for i in range(n):
            rows.extend((1, i, i, 0x11, 0, -1, i, -1))
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        rows.compact()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < size * 0.25, f"{peak / size:.2f} of the rows' size allocated at once"
    assert list(rows.column("frame_no")[[0, 1, n - 1]]) == [0, 1, n - 1]
    assert list(rows.column("flags")[:2]) == [0x11, 0x11] and len(rows) == n


def test_frames_table_uses_the_collected_columns_without_copies() -> None:
    """The int64 columns of the frames table are the collected arrays themselves (ts viewed as
    datetimes, rtt converted in place), and the close reasons need no object array."""
    import numpy as np

    from analyzer.tables import FrameColumns, frames_frame
    rows = FrameColumns()
    for i in range(1000):
        close = i == 7
        rows.add(1, i + 1, 10**18 + i, 0x18 if close else 0x11, 2, 1000 if close else -1, -1 if close else i,
                 -1, "bye" if close else None)
    cols = {name: rows.column(name, take=True) for name in rows.FIELDS}
    kept = dict(cols)
    df = frames_frame(cols, rows.close_reason, "x.pcap")
    for name, column in (("conn_id", "conn_id"), ("frame_no", "frame_no"), ("payload_len", "payload_len"),
                         ("ts", "ts"), ("rtt", "rtt_ns")):
        assert np.shares_memory(np.asarray(df[name].array._ndarray if name == "ts" else df[name].to_numpy()),
                                kept[column]), name
    assert df.close_reason.isna().sum() == 999 and df.close_reason.iloc[7] == "bye"
    assert df.close_code.iloc[7] == 1000 and df.close_code.isna().sum() == 999
    assert df.rtt.isna().all() and str(df.ts.dtype) == "datetime64[ns, UTC]"
    assert df.opcode_name.iloc[7] == "close" and df.message_id.isna().sum() == 1
