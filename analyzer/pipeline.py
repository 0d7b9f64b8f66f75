"""The pipeline, wired: capture → packets → streams → connections (handshake, WebSocket
conversations: frames, messages) → rows.

Read this file first. Each stage is a sans-IO object in its own module; this one only moves
records and events from one to the next, one capture file at a time, streaming.
"""

from __future__ import annotations

import gc
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from analyzer.connection import Connection, TlsKeys
from analyzer.events import (
    Problem,
    StreamClosed,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamOpened,
)
from analyzer.handover import Receiver, SplitCapture, packet_decoder
from analyzer.protocol import ProblemKind
from analyzer.ring import RingReader, open_capture, ring_name
from analyzer.streams import Reassembler
from analyzer.tables import ProblemLimiter, TableRows, capture_problem_row
from analyzer.tls import KeyLog
from analyzer.websocket import Budgets, Options

ProgressCallback = Callable[[int, int], None]   # (bytes read so far, file size)
#: called with the rows at each compaction (final False) and once when the capture is read (True);
#: it may take rows out of them (TableRows' take_rows: the out-of-core export, analyzer.outofcore)
RowsSink = Callable[[TableRows, bool], None]
COMPACT_EVERY = 1 << 14     # records between compactions (rows into columns, sink, progress callback)
REASSEMBLY_BUDGET = 64 << 20                    # out-of-order TCP bytes held for all flows
MAX_FLOWS = 100_000                             # open TCP flows tracked at once
MAX_HALF_OPEN = 20_000                          # flows without payload yet (SYN floods, scans)
GC_YOUNG_THRESHOLD = 50_000                     # allocations between young collections while reading


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


def _announcing_first(records: Iterable[Any], on_first: Callable[[int], None]) -> Iterator[Any]:
    """`records`, with the first one's timestamp given to `on_first` before it is yielded."""
    it = iter(records)
    for first in it:
        on_first(first.ts_ns)
        yield first
        break
    yield from it


def _with_idle_ticks(records: Iterable[Any], idle: float) -> Iterator[Any]:
    """`records` read ahead by a thread, with a None wherever none came for `idle` seconds. The
    thread's exceptions are raised here; it stops when the consumer does (its queue is bounded,
    so it never reads far ahead)."""
    handed: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=4096)
    stop = threading.Event()

    def read() -> None:
        try:
            for record in records:
                while not stop.is_set():
                    try:
                        handed.put((0, record), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handed.put((1, None))
        except BaseException as exc:       # handed over to the consumer, raised there
            handed.put((2, exc))

    thread = threading.Thread(target=read, name="ws-analyzer-reader", daemon=True)
    thread.start()
    waiting = False
    try:
        while True:
            try:
                what, item = handed.get(timeout=idle) if not waiting else handed.get()
            except queue.Empty:
                waiting = True      # one tick per quiet spell
                yield None
                continue
            waiting = False
            if what == 0:
                yield item
            elif what == 1:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join(timeout=1.0)


def _refuse(kind: str, record_no: int | None, ts_ns: int | None) -> bool:
    return False


def analyze_file(path: str | os.PathLike[str] | Sequence[str] | SplitCapture | Receiver,
                 options: Options, *, first_conn_id: int = 1,
                 capture_name: str | None = None, progress: ProgressCallback | None = None,
                 shard: tuple[int, int] = (0, 1), sink: RowsSink | None = None,
                 every: int | None = None, idle: float | None = None,
                 watch: Callable[[Connections], None] | None = None,
                 on_first: Callable[[int], None] | None = None, first_every: int | None = None) -> TableRows:
    """Run one capture through every stage and return its table rows.

    Args:
        path: the capture file, or the files of one ring buffer (a list or tuple: analyzer.ring),
            read as one capture; or one capture on several cores (analyzer.handover): a
            SplitCapture read here, its other shards' segments handed to workers, or a worker's
            Receiver of them.
        shard: (k, n): look only at the TCP connections process k of n owns (analyzer.sharding),
            so n processes can share one capture; capture-level problems are reported by shard 0.
        sink: called after each compaction and at the end (RowsSink), so that rows can be written
            while the capture is read; what it takes out is not in the rows returned.
        every: records between compactions, a power of two (default COMPACT_EVERY).
        first_every: the first compaction after this many records (a power of two), the gap then
            doubling up to `every`: a streamed listing's first rows come out at once, and later
            compactions are not more than needed.
        idle: records are read in a thread, and a compaction (with the sink's call) also happens
            when none has come for this many seconds: a pipe or a live capture shows its rows
            while it waits for more.
        watch: given the open connections once, before the first record (a streamed listing
            numbers connections as the final tables will, analyzer.streaming).
        on_first: given the first record's timestamp (ns) when it is read (a pipe's listing counts
            its times from it, as a file's counts from the file's first record).

    Raises:
        CaptureError: the file cannot be read as a capture at all (nothing was read).
    """
    shard_index, shards = shard
    # TLS keys: the key log files given, then the capture's own pcapng secrets as they are read
    keylog = KeyLog.from_files(options.keylog_files, environ=False)
    reader = open_capture(path, on_secrets=keylog.add_text)
    name = capture_name or (ring_name(reader.paths) if isinstance(reader, RingReader)
                            else os.path.basename(reader.path))
    rows = TableRows(capture=name)
    limiter = ProblemLimiter()
    # the decoder asks the limiter before it builds a problem: past a kind's cap, a flood of
    # defective records costs a counter each (shard 0 reports the capture's packet problems)
    decoder = packet_decoder(path, shard, admit=limiter.admit if shard_index == 0 else _refuse)
    # Memory caps are per analysis; processes sharing a capture split them, so the total and
    # what a hostile capture can make us hold stay the same whatever the number of processes.
    reassembler = Reassembler(max_buffered_total=REASSEMBLY_BUDGET // shards,
                              max_flows=max(1000, MAX_FLOWS // shards),
                              max_half_open=max(1000, MAX_HALF_OPEN // shards))
    connections = Connections(rows, options, name, first_conn_id - 1, Budgets.split(shards), TlsKeys(keylog),
                              reassembler.new_id)
    open_connection = connections.open.get         # (the dict stays the same until close_all)
    if watch is not None:
        watch(connections)
    every = COMPACT_EVERY if every is None else every
    for n in (every, first_every or every):
        if n < 1 or n & (n - 1):
            raise ValueError(f"records between compactions must be a power of two, not {n}")
    compact_mask = min(every, first_every or every) - 1
    full_mask = every - 1
    # The cyclic GC stays on (the caller's threads keep theirs), but every full collection would
    # rescan every object alive, and a capture can hold 100,000 connections open (measured:
    # +43 % CPU on 90,000 open flows). What is alive at each compaction is frozen, so collections
    # look only at what was made since; unfrozen at the end, it is collectable as before; and the
    # young generation is collected every GC_YOUNG_THRESHOLD allocations instead of 700 (on 9,000
    # open flows the default cost 6 % more instructions). The analysis makes no cycles; a caller's
    # thread's cyclic garbage frozen meanwhile waits for the end to be collected.
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        records = 0
        source: Iterable[Any] = reader if on_first is None else _announcing_first(reader, on_first)
        for record in (source if idle is None else _with_idle_ticks(source, idle)):
            if record is None:      # nothing came for `idle` seconds: show what is there
                rows.compact()
                if sink is not None:
                    sink(rows, False)
                continue
            records += 1
            segment = decoder.decode(record)
            if decoder.problems:
                rows.problems.extend(capture_problem_row(name, p) for p in decoder.problems)
                decoder.problems.clear()
            if segment is not None:
                events = reassembler.feed(segment)
                if events:
                    if len(events) == 1 and type(events[0]) is StreamData:
                        # the common case, in order data, without the dispatch loop
                        conn_id, direction, data, record_no, ts_ns = events[0]
                        connection = open_connection(conn_id)
                        if connection is not None:
                            connection.on_data(direction, data, record_no, ts_ns)
                    else:
                        connections.dispatch(events)
            elif decoder.dropped_ts is not None:
                # another process's segment: the idle checks run as if this one had seen it
                connections.dispatch(reassembler.tick(decoder.dropped_ts))
                decoder.dropped_ts = None
            if not records & compact_mask:
                compact_mask = min(compact_mask * 2 + 1, full_mask)
                rows.compact()
                if sink is not None:
                    sink(rows, False)
                gc.freeze()     # what lives on (open connections) is not rescanned (see below)
                if progress is not None:
                    progress(reader.position(), reader.size)
        decoder.finish()    # IPv4/IPv6 fragments still waiting become problems
        rows.problems.extend(capture_problem_row(name, p) for p in decoder.problems)
        connections.dispatch(reassembler.finish())
        connections.close_all()                     # flows the reassembler did not release
        capture_level = (reader.problems if shard_index == 0 else []) + _dropped(reassembler, shards)
        rows.problems.extend(capture_problem_row(name, p) for p in capture_level
                             if limiter.admit(str(p.kind), p.record_no, p.ts_ns))
        if isinstance(reader, RingReader) and shard_index == 0:     # where the ring's files do not join
            rows.problems.extend(capture_problem_row(name, p) for p in reader.ring_problems)
        rows.problems.extend(limiter.summary_rows(name, None, "in this capture"))
        rows.packets = records
        rows.bytes_read = reader.size
        rows.done()
        if sink is not None:
            sink(rows, True)
        if progress is not None:
            progress(reader.size, reader.size)
    finally:
        reader.close()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    return rows


class Connections:
    """The open connections of one analysis, fed the reassembler's events."""

    def __init__(self, rows: TableRows, options: Options, capture: str, id_offset: int,
                 budgets: Budgets, tls_keys: TlsKeys | None = None,
                 new_id: Callable[[], int] | None = None) -> None:
        self.open: dict[int, Connection] = {}
        self.rows = rows
        self.options = options
        self.capture = capture
        self.id_offset = id_offset
        self.budgets = budgets
        self.tls_keys = tls_keys if tls_keys is not None else TlsKeys()
        # more conn_ids, for the WebSockets after the first of an HTTP/2 connection
        self.new_id = (lambda: new_id() + id_offset) if new_id is not None else None

    def dispatch(self, events: list[StreamEvent]) -> None:
        for ev in events:
            if isinstance(ev, StreamOpened):
                self.open[ev.conn_id] = Connection(ev, self.rows, self.options, self.capture,
                                                   ev.conn_id + self.id_offset, self.budgets, self.tls_keys,
                                                   self.new_id)
                self.rows.tcp_connections += 1
                continue
            connection = self.open.pop(ev.conn_id, None) if isinstance(ev, StreamClosed) \
                else self.open.get(ev.conn_id)
            if connection is None:
                continue
            if isinstance(ev, StreamData):
                connection.on_data(ev.direction, ev.data, ev.record_no, ev.ts_ns)
            elif isinstance(ev, StreamGap):
                connection.on_gap(ev.direction, ev.size, ev.record_no, ev.ts_ns)
            elif isinstance(ev, StreamEnd):
                connection.on_end(ev.direction, ev.rst, ev.record_no, ev.ts_ns)
            elif isinstance(ev, StreamClosed):
                connection.close(ev.reason, ev.record_no, ev.ts_ns)
            else:
                connection.on_problem(ev.direction, ev.problem)

    def close_all(self) -> None:
        open_now, self.open = self.open, {}
        for connection in open_now.values():
            connection.close("end-of-capture", 0, connection.last_ts)
