"""The pipeline, wired: capture → packets → streams → sessions (handshake, frames, messages) → rows.

Read this file first. Each stage is a sans-IO object in its own module; this one only moves
records and events from one to the next, one capture file at a time, streaming.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

from analyzer.capture import CaptureReader
from analyzer.events import (
    Problem,
    StreamClosed,
    StreamData,
    StreamEnd,
    StreamGap,
    StreamOpened,
    StreamProblem,
)
from analyzer.packets import PacketDecoder
from analyzer.protocol import ProblemKind
from analyzer.session import Budgets, Options, Session, problem_row
from analyzer.sharding import ConnectionOwners, process_weights
from analyzer.streams import Reassembler
from analyzer.tables import ProblemLimiter, TableRows

ProgressCallback = Callable[[int, int], None]   # (bytes read so far, file size)
_COMPACT_MASK = (1 << 14) - 1     # every 16,384 records: rows into columns, a progress callback
REASSEMBLY_BUDGET = 64 << 20                    # out-of-order TCP bytes held for all flows
MAX_FLOWS = 100_000                             # open TCP flows tracked at once
MAX_HALF_OPEN = 20_000                          # flows without payload yet (SYN floods, scans)


def _dropped(reassembler: Reassembler, shards: int) -> list[Problem]:
    """What the reassembler had to let go of to keep memory bounded, as capture-level problems."""
    problems = []
    if reassembler.flows_evicted:
        problems.append(Problem(ProblemKind.FLOW_LIMIT,
                                f"{reassembler.flows_evicted} TCP connections released before their end: "
                                f"more than {reassembler.max_flows} were open at once"
                                + (f" (in one of {shards} processes)" if shards > 1 else "")))
    if reassembler.bytes_given_up:
        problems.append(Problem(ProblemKind.TCP_BUFFER_LIMIT,
                                f"{reassembler.bytes_given_up} bytes of out-of-order TCP data given up at "
                                "the reassembly memory cap"))
    return problems


def _refuse(kind: str, record_no: int | None, ts_ns: int | None) -> bool:
    return False


def analyze_file(path: str | os.PathLike[str], options: Options, *, first_conn_id: int = 1,
                 capture_name: str | None = None, progress: ProgressCallback | None = None,
                 shard: tuple[int, int] = (0, 1)) -> TableRows:
    """Run one capture through every stage and return its table rows.

    Args:
        shard: (k, n): look only at the TCP connections process k of n owns (analyzer.sharding),
            so n processes can share one capture; capture-level problems are reported by shard 0.

    Raises:
        CaptureError: the file cannot be read as a capture at all (nothing was read).
    """
    shard_index, shards = shard
    name = capture_name or os.path.basename(os.fspath(path))
    rows = TableRows(capture=name)
    reader = CaptureReader(path)
    limiter = ProblemLimiter()
    # the decoder asks the limiter before it builds a problem: past a kind's cap, a flood of
    # defective records costs a counter each (shard 0 reports the capture's packet problems)
    decoder = PacketDecoder(keep=None if shards == 1 else
                            ConnectionOwners(shards, shard_index, process_weights(shards)).keep,
                            admit=limiter.admit if shard_index == 0 else _refuse)
    # Memory caps are per analysis; processes sharing a capture split them, so the total and
    # what a hostile capture can make us hold stay the same whatever the number of processes.
    budgets = Budgets.split(shards)
    reassembler = Reassembler(max_buffered_total=REASSEMBLY_BUDGET // shards,
                              max_flows=max(1000, MAX_FLOWS // shards),
                              max_half_open=max(1000, MAX_HALF_OPEN // shards))
    sessions: dict[int, Session] = {}
    conn_offset = first_conn_id - 1

    def capture_problems(problems: list[Problem], admitted: bool = False) -> None:
        for p in problems:
            if admitted or limiter.admit(str(p.kind), p.record_no, p.ts_ns):
                rows.problems.append(problem_row(name, p))

    def dispatch(events: list) -> None:
        for ev in events:
            kind = type(ev)
            if kind is StreamData:
                session = sessions.get(ev.conn_id)
                if session is not None and session.state != "ignored":
                    session.on_data(ev.direction, ev.data, ev.record_no, ev.ts_ns)
            elif kind is StreamOpened:
                sessions[ev.conn_id] = Session(ev, rows, options, name, ev.conn_id + conn_offset,
                                               budgets)
                rows.tcp_connections += 1
            elif kind is StreamGap:
                session = sessions.get(ev.conn_id)
                if session is not None:
                    session.on_gap(ev.direction, ev.size, ev.record_no, ev.ts_ns)
            elif kind is StreamEnd:
                session = sessions.get(ev.conn_id)
                if session is not None:
                    session.on_end(ev.direction, ev.rst, ev.record_no, ev.ts_ns)
            elif kind is StreamClosed:
                session = sessions.pop(ev.conn_id, None)
                if session is not None:
                    session.close(ev.reason, ev.record_no, ev.ts_ns)
            elif kind is StreamProblem:
                session = sessions.get(ev.conn_id)
                if session is not None:
                    session.on_problem(ev.direction, ev.problem)

    # The cyclic garbage collector would rescan every row collected so far at each full
    # collection, which makes the run grow faster than the file (measured: 40 % of the time on
    # 100k packets). The pipeline makes no reference cycles worth collecting, so it stays off
    # while the capture streams.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        records = 0
        for record in reader:
            records += 1
            segment = decoder.decode(record)
            if decoder.problems:
                capture_problems(decoder.problems, admitted=True)
                decoder.problems.clear()
            if segment is not None:
                events = reassembler.feed(segment)
                if events:
                    if len(events) == 1 and type(events[0]) is StreamData:
                        # the common case, in order data, without the dispatch loop
                        conn_id, direction, data, record_no, ts_ns = events[0]
                        session = sessions.get(conn_id)
                        if session is not None and session.state != "ignored":
                            session.on_data(direction, data, record_no, ts_ns)
                    else:
                        dispatch(events)
            elif decoder.dropped_ts is not None:
                # another process's segment: the idle checks run as if this one had seen it
                events = reassembler.tick(decoder.dropped_ts)
                decoder.dropped_ts = None
                if events:
                    dispatch(events)
            if not records & _COMPACT_MASK:
                rows.compact()
                if progress is not None:
                    progress(reader.position(), reader.size)
        decoder.finish()    # IPv4/IPv6 fragments still waiting become problems
        capture_problems(decoder.problems, admitted=True)
        decoder.problems.clear()
        dispatch(reassembler.finish())
        for session in list(sessions.values()):   # flows the reassembler did not release
            session.close("end-of-capture", 0, session.last_ts)
        if shard_index == 0:
            capture_problems(reader.problems)
        capture_problems(_dropped(reassembler, shards))
        rows.problems.extend(limiter.summary_rows(name, None, "in this capture"))
        rows.packets = records
        rows.bytes_read = reader.size
        if progress is not None:
            progress(reader.size, reader.size)
    finally:
        reader.close()
        if gc_was_enabled:
            gc.enable()
    return rows
