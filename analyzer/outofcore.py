"""The out-of-core export (issue 18): one capture's tables written as Parquet while it is read, so
that the peak memory does not grow with the capture's frames and messages.

The pipeline calls a ParquetSink at each compaction (analyzer.pipeline.RowsSink); once
CHUNK_ROWS frames (or messages) wait in the rows, the sink takes them out (TableRows' take_rows)
and writes them as one Parquet row group of a temporary file, made by the same frames_frame /
messages_frame as the in-memory tables, with the conn_ids the process gave them (provisional:
final ids number the connections by first packet, known only at the end). When the capture is
read, the connections and problems (one row per connection; problems capped per analysis), and
the app_messages and exchanges (rows of the connections whose application protocol is decoded,
held until the end), are made as analyze() makes them (analyzer.merge.tables_from_rows), and
each temporary file is copied row group by row group into its final file with the final conn_id
put in. Memory: a row group, the connections' rows and the application rows, whatever the
number of frames.

Row order: connections by conn_id and problems as in memory. Frames and messages come in row
groups in the order they were collected; within a group, frames by frame_no and messages by
(conn_id, message_id). Sorted by those keys, the tables equal analyze()'s (tests/test_outofcore).
One process reads the capture (no --jobs split).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analyzer.api import CaptureInfo, PathLike, keylog_files
from analyzer.export import CHUNK_ROWS, _arrow_schema, make_subdir, open_output, write_table
from analyzer.pipeline import ProgressCallback, analyze_file
from analyzer.tables import TableRows, frames_frame, messages_frame
from analyzer.websocket import Options

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: the files written, in the order export() writes them
TABLE_ORDER = ("connections", "frames", "messages", "problems", "app_messages", "exchanges")


@dataclass
class Written:
    """What export_parquet wrote: the file paths, the two small tables (for warnings and
    summaries) and what was read."""

    paths: list[str]
    connections: pd.DataFrame
    problems: pd.DataFrame
    capture: CaptureInfo


class ParquetSink:
    """A RowsSink writing frames and messages as Parquet row groups with provisional conn_ids
    into `workdir` (see the module doc). `top` is the largest conn_id written."""

    def __init__(self, workdir: str, capture: str, payloads: bool, min_rows: int = CHUNK_ROWS) -> None:
        self.workdir = workdir
        self.capture = capture
        self.payloads = payloads
        self.min_rows = max(1, min_rows)
        self.top = 0
        self.row_groups = {"frames": 0, "messages": 0}
        self._writers: dict[str, tuple[Any, Any]] = {}       # table → (file, ParquetWriter)

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, f"{name}.parquet")

    def __call__(self, rows: TableRows, final: bool) -> None:
        if self._due("frames", len(rows.frames), final):
            self._write("frames", self._frames(rows))
        if self._due("messages", len(rows.messages), final):
            self._write("messages", self._messages(rows))
        if final:
            self.close()

    def _due(self, name: str, waiting: int, final: bool) -> bool:
        """Enough rows for a row group; at the end, what is left (or an empty file's schema)."""
        return waiting >= self.min_rows or (final and (waiting > 0 or name not in self._writers))

    def _frames(self, rows: TableRows) -> pd.DataFrame:
        columns, reasons = rows.frames.take_rows_in_order()
        return frames_frame(columns, reasons, self.capture)

    def _messages(self, rows: TableRows) -> pd.DataFrame:
        columns, previews, payload = rows.messages.take_rows()
        return messages_frame(columns, previews, payload, self.capture)

    def _write(self, name: str, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        if len(df):
            self.top = max(self.top, int(df["conn_id"].max()))
        opened = self._writers.get(name)
        if opened is None:
            schema = _arrow_schema(df)
            if name == "messages" and self.payloads:        # the first rows may have kept none
                i = schema.get_field_index("payload")
                schema = schema.set(i, schema.field(i).with_type(pa.binary()))
            fh = open(self.path(name), "wb")    # noqa: SIM115 - closed by close()
            opened = self._writers[name] = (fh, pq.ParquetWriter(fh, schema))
        writer = opened[1]
        writer.write_table(pa.Table.from_pandas(df, schema=writer.schema, preserve_index=False))
        self.row_groups[name] += 1

    def close(self) -> None:
        writers, self._writers = self._writers, {}
        for fh, writer in writers.values():
            try:
                writer.close()
            finally:
                fh.close()


def _final_copy(source: str, target: str, lut: np.ndarray, sort_messages: bool) -> str:
    """`source` copied into `target` row group by row group, conn_id mapped through `lut`
    (messages then sorted by (conn_id, message_id) within the group)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    parquet = pq.ParquetFile(source)
    with open_output(target, "wb") as fh, pq.ParquetWriter(fh, parquet.schema_arrow) as writer:
        for i in range(parquet.num_row_groups):
            table = parquet.read_row_group(i, use_threads=False)
            index = table.schema.get_field_index("conn_id")
            ids = lut[table.column(index).to_numpy()]
            table = table.set_column(index, table.schema.field(index), pa.array(ids))
            if sort_messages and len(ids) > 1:
                order = np.lexsort((table.column("message_id").to_numpy(), ids))
                if not bool((order[1:] > order[:-1]).all()):
                    table = table.take(pa.array(order))
            writer.write_table(table)
            del table, ids
    return target


def options_for(*, ports: Iterable[int] | None = None, max_message_bytes: int = 16 << 20,
                payloads: bool | float = False, preview_len: int = 64, validate_utf8: bool = True,
                max_payload_bytes: int = 256 << 20,
                keylog: PathLike | Iterable[PathLike] | None = None, app: bool = True) -> Options:
    """The analysis options of analyze()'s keyword arguments of the same names."""
    sample = isinstance(payloads, float) and 0 < payloads < 1
    return Options(ports=frozenset(int(p) for p in ports or ()), max_message_bytes=int(max_message_bytes),
                   payloads=payloads if sample else bool(payloads), preview_len=int(preview_len),
                   validate_utf8=bool(validate_utf8), max_payload_bytes=int(max_payload_bytes),
                   keylog_files=keylog_files(keylog), app=bool(app))


def export_parquet(path: PathLike, directory: PathLike, *, progress: ProgressCallback | None = None,
                   min_rows: int = CHUNK_ROWS, **options: Any) -> Written:
    """Analyse one capture and write its tables into `directory` as connections.parquet,
    frames.parquet, messages.parquet, problems.parquet, app_messages.parquet and
    exchanges.parquet, frames and messages while the capture is read (the module doc says in
    which order).

    Args:
        path: the capture file.
        directory: created if missing; the temporary files go into a hidden folder in it.
        progress: a callback (bytes read, file size).
        min_rows: frames (messages) written at a time, one row group each.
        options: analyze()'s ports, max_message_bytes, payloads, preview_len, validate_utf8,
            max_payload_bytes, keylog and app.

    Raises:
        CaptureError: the file cannot be read as a capture.
        KeyLogError: a key log given cannot be read.
        OSError: the directory or a file cannot be written.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    opts = options_for(**options)
    created = not os.path.isdir(directory)
    directory = make_subdir(directory)
    workdir = tempfile.mkdtemp(prefix=".ws-analyzer-", dir=directory)
    sink = ParquetSink(workdir, name, bool(opts.payloads), min_rows)
    try:
        with _system_pool():
            rows = analyze_file(path, opts, capture_name=name, progress=progress, sink=sink)
            info = CaptureInfo(path, name, rows.packets, rows.tcp_connections, rows.bytes_read)
            written = _finish(rows, sink, directory)
    except BaseException:
        if created:                 # a capture that cannot be read leaves no folder behind
            _remove(sink, workdir)
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise
    finally:
        _remove(sink, workdir)
    return Written([target for target, _ in written.values()], written["connections"][1],
                   written["problems"][1], info)


def _remove(sink: ParquetSink, workdir: str) -> None:
    sink.close()
    shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _system_pool() -> Iterator[None]:
    """Arrow allocates from the system allocator meanwhile: its default pool (mimalloc) keeps what
    each row group freed for later, which measured 40 MB more at the peak (benchmarks/README)."""
    import pyarrow as pa
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _finish(rows: TableRows, sink: ParquetSink, directory: str) -> dict[str, tuple[str, Any]]:
    """The final files: connections and problems made from the rows, frames and messages copied
    with their final conn_ids; by table name, (path, the DataFrame for the small ones)."""
    from analyzer.merge import conn_id_lookup, merge_captures, tables_from_rows
    lut = conn_id_lookup(rows, sink.top)
    tables = merge_captures([tables_from_rows([rows])], [rows.capture])
    out: dict[str, tuple[str, Any]] = {}
    for table in TABLE_ORDER:
        target = os.path.join(directory, f"{table}.parquet")
        if table in sink.row_groups:
            out[table] = (_final_copy(sink.path(table), target, lut, table == "messages"), None)
        else:
            out[table] = (write_table(tables[table], target, "parquet"), tables[table])
    return out


__all__ = ["ParquetSink", "Written", "export_parquet", "options_for"]
