"""Writing the tables (connections, frames, messages, problems, app_messages, exchanges) to CSV,
Parquet or JSON, safely; or one file in another tool's
format (Zeek websocket.log, Suricata EVE, HAR: analyzer.formats).

CSV is opened by spreadsheets, so a text cell in which any line starts like a formula (=, +, -, @,
tab, CR) gets an apostrophe before that line, the usual neutralisation (OWASP "CSV injection");
numeric columns are left as numbers. Rows end in CRLF (RFC 4180), so a cell holding a CR or LF is
always quoted and stays one cell. In CSV and JSON, bytes payloads become hex, durations seconds
(float) and times ISO 8601 UTC text, list cells ", "-joined text in CSV (JSON arrays in JSON,
lists in Parquet); JSON escapes C1 and bidi control characters. Parquet keeps
the native types.

Tables are written CHUNK_ROWS rows at a time, so writing adds memory bounded by a chunk, not a
multiple of the table. Files are created under a temporary name (O_EXCL, O_NOFOLLOW) and renamed
into place: a symbolic link already at the destination is replaced, never followed. File names
are fixed (connections.csv…), never captured values.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzer.formats import FORMATS, TABLE_FORMATS, TOOL_FORMATS
from analyzer.stats import json_safe
from analyzer.tables import SCHEMAS

if TYPE_CHECKING:
    from analyzer.api import Analysis

TABLES = tuple(SCHEMAS)  # frames, messages, connections, problems, app_messages, exchanges
#: the tables export() writes, in that order
EXPORTED = ("connections", "frames", "messages", "problems", "app_messages", "exchanges")

#: rows converted and written at a time
CHUNK_ROWS = 100_000

_FORMULA_CHARS = "=+\\-@\\t\\r"
_RISKY_LINE = f"(?:^|[\\r\\n])[{_FORMULA_CHARS}]"          # some line of the cell starts a formula
_LINE_START = f"(?:^|(?<=[\\r\\n]))(?=[{_FORMULA_CHARS}])"  # where the apostrophes go


# --- files that do not follow links ---------------------------------------------------------------

@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open `path` for writing as a brand-new file; on success it is renamed over `path`.

    The data goes to a temporary file beside it, created with O_CREAT|O_EXCL|O_NOFOLLOW, so a
    symbolic link (or anything else) already at `path` is replaced, never written through. On an
    exception the temporary file is removed and `path` is untouched. `kwargs` go to open()
    (encoding, newline).
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_subdir(path: str | os.PathLike[str]) -> str:
    """Create directory `path` (and parents) if missing; refuse it if it is a symbolic link.

    For the directories the tool names itself (tables/, figures/): a link planted there would
    send our files somewhere else.
    """
    path = os.fspath(path)
    if os.path.islink(path):
        raise OSError(errno.ELOOP, "is a symbolic link; refusing to write through it", path)
    os.makedirs(path, exist_ok=True)
    return path


# --- conversions -------------------------------------------------------------------------------

def is_text(s: pd.Series) -> bool:
    return (pd.api.types.is_string_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype)
            or s.dtype == object)


def _iso_text(s: pd.Series) -> pd.Series:
    """Datetimes as ISO 8601 text with nanoseconds ('…T22:13:20.005000000Z' when tz-aware).

    numpy does it in C; pandas' own CSV/JSON writers format tz-aware times ~10x slower.
    """
    aware = getattr(s.dtype, "tz", None) is not None
    values = s.to_numpy(dtype="datetime64[ns]")
    text = np.datetime_as_string(values, unit="ns", timezone="UTC" if aware else "naive")
    return pd.Series(pd.array(text, dtype="string"), index=s.index).mask(s.isna())


def plain_table(df: pd.DataFrame) -> pd.DataFrame:
    """Text-format friendly copy: bytes → hex, timedelta → seconds, datetimes → ISO text."""
    out = df.copy(deep=False)
    for name in out.columns:
        s = out[name]
        if pd.api.types.is_timedelta64_dtype(s.dtype):
            out[name] = s.dt.total_seconds()
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            out[name] = _iso_text(s)
        elif s.dtype == object:
            present = s.notna()
            if present.any():
                out[name] = s.where(~present, s[present].map(_plain_value))
    return out


def _plain_value(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v


def _joined_lists(df: pd.DataFrame) -> pd.DataFrame:
    """List cells (connections' *_list columns) as ", "-joined text, for CSV."""
    out = df
    for name in df.columns:
        s = df[name]
        first = s.first_valid_index() if s.dtype == object else None
        if first is not None and isinstance(s.loc[first], (list, tuple, np.ndarray)):
            if out is df:
                out = df.copy(deep=False)
            present = s.notna()
            out[name] = s.where(~present, s[present].map(lambda v: ", ".join(map(str, v))))
    return out


def _neutralise_text(text: pd.Series) -> pd.Series:
    risky = text.str.contains(_RISKY_LINE, regex=True, na=False)
    if not risky.any():
        return text
    return text.mask(risky, text[risky].str.replace(_LINE_START, "'", regex=True))


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every line of a text cell that starts with =, +, -, @, tab or CR gets a `'`.

    A line starts at the start of the cell and after each CR or LF. Numeric, boolean and
    datetime columns are untouched (a negative number stays a number). Categorical columns are
    neutralised through their categories, not row by row.
    """
    out = df.copy(deep=False)
    for name in out.columns:
        s = out[name]
        if not is_text(s):
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = pd.Series(s.cat.categories.astype("string"))
            safe = _neutralise_text(cats)
            if safe is cats:
                continue
            if safe.is_unique:
                out[name] = s.cat.rename_categories(safe.tolist())
                continue
        out[name] = _neutralise_text(s.astype("string"))
    return out


def chunks(df: pd.DataFrame, size: int | None = None) -> Iterator[pd.DataFrame]:
    """df in slices of `size` rows, CHUNK_ROWS by default (one empty slice for an empty table)."""
    size = size or CHUNK_ROWS
    yield df.iloc[:size]
    for start in range(size, len(df), size):
        yield df.iloc[start:start + size]


# --- writers -----------------------------------------------------------------------------------

def _write_csv(df: pd.DataFrame, fh: IO[str]) -> None:
    for i, part in enumerate(chunks(df)):
        neutralise_formulas(_joined_lists(plain_table(part))).to_csv(fh, index=False, header=i == 0,
                                                                 lineterminator="\r\n")


def _write_json_records(df: pd.DataFrame, fh: IO[str]) -> None:
    """df as a JSON array of row objects, chunk by chunk."""
    fh.write("[")
    first = True
    for part in chunks(df):
        body = plain_table(part).to_json(orient="records", force_ascii=False)[1:-1]
        if body:
            fh.write(("" if first else ",") + json_safe(body))
            first = False
    fh.write("]")


def _arrow_schema(df: pd.DataFrame) -> Any:
    """The Arrow schema of the whole table, from its dtypes (object columns: from a first value)."""
    import pyarrow as pa

    schema = pa.Schema.from_pandas(df.iloc[:0], preserve_index=False)
    for name in df.columns:
        s = df[name]
        if s.dtype == object:
            first = s.first_valid_index()
            if first is not None:
                i = schema.get_field_index(name)
                schema = schema.set(i, schema.field(i).with_type(pa.infer_type([s.loc[first]])))
    return schema


def _write_parquet(df: pd.DataFrame, fh: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(df)
    with pq.ParquetWriter(fh, schema) as writer:
        for part in chunks(df):
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], fmt: str) -> str:
    """Write one DataFrame as `fmt` to `path` (CSV neutralised, see the module doc); returns the path."""
    path = os.fspath(path)
    if fmt == "csv":
        with open_output(path, "w", encoding="utf-8", newline="") as fh:
            _write_csv(df, fh)
    elif fmt == "parquet":
        with open_output(path, "wb") as fh:
            _write_parquet(df, fh)
    elif fmt == "json":
        with open_output(path, "w", encoding="utf-8") as fh:
            _write_json_records(df, fh)
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(TABLE_FORMATS)}")
    return path


def _write_tool_format(a: Analysis, path: str, fmt: str) -> list[str]:
    """One file of another tool's format (analyzer.formats); for zeek and zeek-json also
    websocket_app.log beside it when there are exchanges."""
    from analyzer.formats import eve, har, zeek

    writer = {"zeek": zeek.write_tsv, "zeek-json": zeek.write_json, "eve": eve.write_eve,
              "har": har.write_har}[fmt]
    with open_output(path, "w", encoding="utf-8", newline="\n") as fh:
        writer(a, fh)
    if fmt not in ("zeek", "zeek-json") or not zeek.has_app_log(a):
        return [path]
    app_path = zeek.app_log_path(path)
    with open_output(app_path, "w", encoding="utf-8", newline="\n") as fh:
        (zeek.write_app_tsv if fmt == "zeek" else zeek.write_app_json)(a, fh)
    return [path, app_path]


def exported_tables(a: Analysis) -> dict[str, pd.DataFrame]:
    """The tables export() writes, by name (EXPORTED); an object without the application tables
    (made before they existed) gets them empty."""
    from analyzer.tables import make_frame
    return {name: getattr(a, name) if hasattr(a, name) else make_frame(SCHEMAS[name], [])
            for name in EXPORTED}


def export(a: Analysis, directory_or_file: str | os.PathLike[str], fmt: str = "csv") -> list[str]:
    """Write the tables (connections, frames, messages, problems, app_messages, exchanges).

    Args:
        a: the analysis.
        directory_or_file: a directory (created if missing) that receives connections.<fmt>,
            frames.<fmt>, messages.<fmt>, problems.<fmt>, app_messages.<fmt> and exchanges.<fmt>;
            for fmt="json" a path ending in ".json" instead gets one object {"connections": [...],
            "frames": [...], ...}.
        fmt: "csv", "parquet" or "json" (the four tables), or one file in another tool's format:
            "zeek" (Zeek's websocket.log, TSV), "zeek-json" (the same as JSON lines), "eve"
            (Suricata EVE JSON lines, one per frame) or "har" (HAR 1.2 with Chrome's
            _webSocketMessages). For these, a directory or a path without an extension gets the
            file under its usual name (websocket.log, eve.json, websocket.har); a path with an
            extension is the file itself. zeek and zeek-json also write websocket_app.log (one
            line per exchange; "_app" before the extension of a named file) when the analysis
            has exchanges.

    Returns:
        The paths written.

    Raises:
        ValueError: an unknown format.
        OSError: the directory or a file cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    target = os.fspath(directory_or_file)
    if fmt in TOOL_FORMATS:
        if os.path.isdir(target) or target.endswith(os.sep) or not os.path.splitext(target)[1]:
            os.makedirs(target, exist_ok=True)
            target = os.path.join(target, TOOL_FORMATS[fmt])
        elif os.path.dirname(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
        return _write_tool_format(a, target, fmt)
    tables = exported_tables(a)
    if fmt == "json" and target.lower().endswith(".json") and not os.path.isdir(target):
        parent = os.path.dirname(target)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open_output(target, "w", encoding="utf-8") as fh:
            fh.write("{")
            for i, (name, df) in enumerate(tables.items()):
                fh.write(f'{"," if i else ""}"{name}":')
                _write_json_records(df, fh)
            fh.write("}")
        return [target]
    os.makedirs(target, exist_ok=True)
    return [write_table(df, os.path.join(target, f"{name}.{fmt}"), fmt) for name, df in tables.items()]


__all__ = [
    "CHUNK_ROWS",
    "EXPORTED",
    "FORMATS",
    "TABLE_FORMATS",
    "TOOL_FORMATS",
    "chunks",
    "export",
    "exported_tables",
    "is_text",
    "make_subdir",
    "neutralise_formulas",
    "open_output",
    "plain_table",
    "write_table",
]
