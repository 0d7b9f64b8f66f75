"""Streamed listings: rows handed over while the capture is read, in capture order, so that
`ws-analyzer frames big.pcap | head` answers at once and a pipe or a live capture shows its rows as
they come (issue 16).

The pipeline calls a ChunkSink at each compaction (every COMPACT_EVERY records, and after a quiet
spell when reading a pipe: analyzer.pipeline's `idle`). The sink takes the frames and messages out
of the rows (memory stays bounded whatever the capture's size), takes the problems added since the
last call, and hands them over as a Chunk of DataFrames shaped as analyze()'s tables, with the
connection ids the final tables give.

Connection ids: the final tables number the connections 1, 2, 3… by first packet among those that
are listed (WebSocket or TLS: Connection.listed); the pipeline's own ids number every TCP flow. When
a chunk names a connection not numbered yet, every listed connection known by then (closed ones'
rows, open ones) that is not numbered yet is numbered, in first-packet order. That is the final
numbering unless a connection that opened earlier becomes listed later (an HTTP keep-alive
connection that upgrades after another one's first frame): ShownIds.differences() counts those at
the end, and the command line says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analyzer.pipeline import Connections, analyze_file
from analyzer.tables import PROBLEM_COLUMNS, TableRows, frames_frame, make_frame, messages_frame
from analyzer.websocket import Options

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from analyzer.api import CaptureInfo

#: records read before the first rows are handed over (then twice as many each time, up to
#: analyzer.pipeline.COMPACT_EVERY): `| head` answers after a few milliseconds of reading
FIRST_ROWS_AFTER = 512

__all__ = ["FIRST_ROWS_AFTER", "Chunk", "ChunkSink", "ShownIds", "StreamResult", "stream_capture"]


class ShownIds:
    """The pipeline's connection ids → the final tables' ids (see the module doc)."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self._connections: Connections | None = None
        self._closed_seen = 0       # connections rows looked at so far

    def watch(self, connections: Connections) -> None:
        self._connections = connections

    def lookup(self, provisional: np.ndarray, rows: TableRows) -> np.ndarray:
        """`provisional` ids (int64) as shown ids."""
        import numpy as np
        if not len(provisional):
            return provisional
        wanted = np.unique(provisional)
        ids = self.ids
        if any(int(p) not in ids for p in wanted):
            self._number_known(rows)
            for p in wanted.tolist():       # not listed anywhere yet (cannot happen): next numbers
                if p not in ids:
                    ids[p] = len(ids) + 1
        keys = np.fromiter(ids.keys(), dtype=np.int64, count=len(ids))
        values = np.fromiter(ids.values(), dtype=np.int64, count=len(ids))
        order = np.argsort(keys)
        keys, values = keys[order], values[order]
        return values[np.searchsorted(keys, provisional)]

    def lookup_nullable(self, provisional: pd.Series, rows: TableRows) -> pd.Series:
        """The conn_id column of problems (capture-level ones null) as shown ids."""
        import pandas as pd
        known = provisional.notna().to_numpy()
        if not known.any():
            return provisional
        out = provisional.copy()
        out[known] = self.lookup(provisional[known].to_numpy(dtype="int64"), rows)
        return pd.Series(out, index=provisional.index, dtype="Int64")

    def _number_known(self, rows: TableRows) -> None:
        """Number every listed connection known by now and not numbered yet, by first packet."""
        cols = rows.connections.columns
        found = list(zip(cols["first_packet"][self._closed_seen:], cols["conn_id"][self._closed_seen:]))
        self._closed_seen = len(rows.connections)
        for c in (self._connections.open.values() if self._connections is not None else ()):
            if not c.listed:
                continue
            first = c.opened.record_no
            streams = c.h2_streams.streams.values() if c.h2_streams is not None and c.h2_streams.any else ()
            found.extend((first, s.conn_id) for s in streams)
            if not streams:
                found.append((first, c.conn_id))
        for _, provisional in sorted((int(f), int(p)) for f, p in found):
            if provisional not in self.ids:
                self.ids[provisional] = len(self.ids) + 1

    def differences(self, rows: TableRows) -> int:
        """How many shown ids differ from the final tables' (the rows as the capture left them)."""
        from analyzer.merge import conn_id_lookup
        if not self.ids:
            return 0
        lut = conn_id_lookup(rows, max(self.ids))
        return sum(1 for p, shown in self.ids.items() if int(lut[p]) != shown)


@dataclass
class Chunk:
    """The rows of one stretch of the capture, as analyze()'s tables (conn_id final)."""

    frames: pd.DataFrame
    messages: pd.DataFrame
    problems: pd.DataFrame


@dataclass
class StreamResult:
    """What a streamed analysis leaves at the end: the connections and problems tables (for the
    end-of-run checks and notes), what was read, and how many shown ids differ from final ones."""

    connections: pd.DataFrame
    problems: pd.DataFrame
    frames: pd.DataFrame
    captures: list[CaptureInfo] = field(default_factory=list)
    ids_differing: int = 0


class ChunkSink:
    """A pipeline RowsSink handing Chunks to `on_chunk` (see the module doc). `tables` names the
    tables the caller looks at; the others are taken out and dropped unmade."""

    def __init__(self, capture: str, on_chunk: Callable[[Chunk], None], ids: ShownIds,
                 tables: Sequence[str] = ("frames", "messages", "problems")) -> None:
        self.capture = capture
        self.on_chunk = on_chunk
        self.ids = ids
        self.tables = frozenset(tables)
        self._problems_seen = 0

    def __call__(self, rows: TableRows, final: bool) -> None:
        frames = self._frames(rows)
        messages = self._messages(rows)
        problems = self._problems(rows)
        if len(frames) or len(messages) or len(problems) or final:
            self.on_chunk(Chunk(frames, messages, problems))

    def _frames(self, rows: TableRows) -> pd.DataFrame:
        import numpy as np
        columns, reasons = rows.frames.take_rows_in_order()
        if "frames" not in self.tables:
            columns = {name: column[:0] for name, column in columns.items()}
            reasons = {}
        columns["conn_id"] = self.ids.lookup(columns["conn_id"].astype(np.int64), rows)
        return frames_frame(columns, reasons, self.capture)

    def _messages(self, rows: TableRows) -> pd.DataFrame:
        import numpy as np
        columns, previews, payload = rows.messages.take_rows()
        if "messages" not in self.tables and "frames" not in self.tables:
            columns = {name: column[:0] for name, column in columns.items()}
            previews, payload = previews[:0], {}
        columns["conn_id"] = self.ids.lookup(columns["conn_id"].astype(np.int64), rows)
        return messages_frame(columns, previews, payload, self.capture)

    def _problems(self, rows: TableRows) -> pd.DataFrame:
        new = rows.problems[self._problems_seen:]
        self._problems_seen = len(rows.problems)
        table = make_frame(PROBLEM_COLUMNS, new if "problems" in self.tables else [])
        if len(table):
            table["conn_id"] = self.ids.lookup_nullable(table["conn_id"], rows)
            table = table.sort_values(["frame_no", "conn_id"], kind="stable", na_position="last")
        return table.reset_index(drop=True)


def stream_capture(path: str | Sequence[str], options: Options, on_chunk: Callable[[Chunk], None], *,
                   tables: Sequence[str] = ("frames", "messages", "problems"), idle: float | None = None,
                   capture_name: str | None = None,
                   on_first: Callable[[int], None] | None = None) -> StreamResult:
    """Analyse one capture (or the files of one ring buffer), handing its rows to `on_chunk` as
    they are made (Chunk); returns what is left at the end (StreamResult).

    Args:
        idle: seconds without a record after which the rows so far are handed over (pipes and
            live captures; None for files).
        on_first: given the first record's timestamp (ns since the epoch) when it is read.

    Raises:
        CaptureError: the capture cannot be read at all.
    """
    from analyzer.api import CaptureInfo
    from analyzer.merge import merge_captures, tables_from_rows
    from analyzer.ring import ring_name

    name = capture_name or (ring_name(list(path)) if not isinstance(path, str)
                            else os.path.basename(path) or path)
    ids = ShownIds()
    sink = ChunkSink(name, on_chunk, ids, tables)
    rows = analyze_file(path if isinstance(path, str) else list(path), options, capture_name=name,
                        sink=sink, idle=idle, watch=ids.watch, on_first=on_first,
                        first_every=FIRST_ROWS_AFTER)
    differing = ids.differences(rows)
    final = merge_captures([tables_from_rows([rows])], [name])
    info = CaptureInfo(path if isinstance(path, str) else name, name, rows.packets, rows.tcp_connections,
                       rows.bytes_read)
    return StreamResult(final["connections"], final["problems"], final["frames"], [info], differing)
