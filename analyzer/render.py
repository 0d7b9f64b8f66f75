"""Listings written out: aligned text (one line a row, tshark-like), JSON, JSON lines, CSV or TSV.

Captured text is escaped on the way out in every format (control and bidi characters as \\xNN /
\\uNNNN in text, CSV and TSV; as JSON escapes in JSON), so nothing printed can drive a terminal.
CSV follows analyzer.export's rules (cells quoted when needed, CRLF rows, spreadsheet formulas
neutralised); TSV cells are escaped so that a tab or newline never splits a row, and neutralised
too. For lossless tables, `export` writes files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import IO

import pandas as pd

from analyzer.export import chunks, is_text, neutralise_formulas, plain_table
from analyzer.stats import CONTROL_ESCAPES, json_safe

FORMATS = ("text", "json", "jsonl", "csv", "tsv")
CHUNK = 5000     # rows converted to text at a time


def cell_text(s: pd.Series) -> pd.Series:
    """A column as display text (unescaped): numbers as they are, seconds with 6 decimals, yes/no as
    true/false, times as ISO text, null as ""."""
    dtype = s.dtype
    if pd.api.types.is_timedelta64_dtype(dtype):
        secs: pd.Series = s.dt.total_seconds()
        return secs.map("{:.6f}".format).astype("string").mask(secs.isna(), "")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        text: pd.Series = plain_table(s.to_frame())[s.name]
        return text.astype("string").fillna("")
    if pd.api.types.is_bool_dtype(dtype):
        return s.map({True: "true", False: "false"}).astype("string").fillna("")
    if pd.api.types.is_float_dtype(dtype):
        return s.map("{:.6f}".format).astype("string").mask(s.isna(), "")
    return s.astype("string").fillna("")


_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in CONTROL_ESCAPES) + "]")


def _escaped(s: pd.Series) -> pd.Series:
    """Control and bidi characters as \\xNN / \\uNNNN; only the cells holding one are rewritten."""
    risky = s.str.contains(_UNSAFE, na=False)
    if not risky.any():
        return s
    return s.mask(risky, s[risky].str.translate(CONTROL_ESCAPES))


def _right_aligned(s: pd.Series) -> bool:
    """Numbers and durations line up on the right."""
    return (pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)) \
        or pd.api.types.is_timedelta64_dtype(s.dtype)


def text_lines(df: pd.DataFrame, columns: Sequence[str], labels: dict[str, str] | None = None, *,
               max_width: int | None = None, blocks: pd.Series | None = None,
               cells: Callable[[pd.Series], pd.Series] = cell_text,
               widths: dict[str, int] | None = None, header: bool = True) -> Iterator[str]:
    """The rows as aligned text lines, header first, in chunks (each chunk ends with a newline).

    Numbers are right-aligned, text left-aligned, the last column is not padded. `max_width` (a
    terminal's width) cuts the last column so that lines fit, before escaping (so no escape is cut).
    `blocks` holds, per row, text printed under its line, indented (payloads), or "".
    `widths`: the column widths of lines already written (a streamed listing); widened here where
    these rows need more, and kept up to date. `header`: write the header line.
    """
    labels = labels or {}
    texts = {c: cells(df[c]) for c in columns}
    # captured text can only be in text columns; the last one is cut before it is escaped
    shown = {c: _escaped(texts[c]) if is_text(df[c]) else texts[c] for c in columns[:-1]}
    heads = {c: labels.get(c, c) for c in columns}
    needed = {c: max(len(heads[c]), int(shown[c].str.len().max()) if len(df) else 0) for c in columns[:-1]}
    if widths is None:
        widths = needed
    else:
        widths.update({c: max(widths.get(c, 0), n) for c, n in needed.items()})
    right = {c for c in columns if _right_aligned(df[c])}

    def pad(s: pd.Series, c: str) -> pd.Series:
        return s.str.rjust(widths[c]) if c in right else s.str.ljust(widths[c])

    if header:
        titles = "  ".join([heads[c].rjust(widths[c]) if c in right else heads[c].ljust(widths[c])
                            for c in columns[:-1]] + [heads[columns[-1]]])
        yield titles.rstrip() + "\n"
    last = columns[-1]
    prefix = sum(widths.values()) + 2 * (len(columns) - 1)
    for start in range(0, len(df), CHUNK):
        part = slice(start, start + CHUNK)
        line = None
        for c in columns[:-1]:
            cell = pad(shown[c].iloc[part], c)
            line = cell if line is None else line + "  " + cell
        tail = texts[last].iloc[part]
        if max_width is not None:
            room = max(8, max_width - prefix)
            tail = tail.where(tail.str.len() <= room, tail.str.slice(0, room - 1) + "…")
        tail = _escaped(tail)
        line = tail if line is None else line + "  " + tail
        values = line.str.rstrip().tolist()
        if blocks is not None:
            extra = blocks.iloc[part].tolist()
            values = [v if not b else v + "\n" + _indent(_escape_block(b)) for v, b in zip(values, extra)]
        yield "\n".join(values) + "\n"


def _escape_block(text: str) -> str:
    return "\n".join(line.translate(CONTROL_ESCAPES) for line in text.split("\n"))


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in text.split("\n"))


def write(df: pd.DataFrame, columns: Sequence[str], fmt: str, out: IO[str], *, first: bool = True,
          last: bool = True) -> None:
    """`df[columns]` to `out` as json (one array), jsonl, csv or tsv (text: see text_lines).

    A streamed listing writes its rows a part at a time: `first` (the header, JSON's "[") and
    `last` (JSON's "]") say which part this is (ChunkedWriter writes JSON parts itself: those
    after rows start with a comma)."""
    table = df[list(columns)]
    if fmt in ("json", "jsonl"):
        _write_json(table, out, lines=fmt == "jsonl", opening=first, closing=last)
    elif fmt == "csv":
        for i, part in enumerate(chunks(table, CHUNK)):
            part = neutralise_formulas(plain_table(part))
            part = part.apply(lambda s: _escaped(s.astype("string")) if is_text(s) else s)
            out.write(part.to_csv(index=False, header=first and i == 0, lineterminator="\r\n"))
        if first and not len(table):
            out.write(",".join(columns) + "\r\n")
    elif fmt == "tsv":
        if first:
            out.write("\t".join(columns) + "\n")
        for i in range(0, len(table), CHUNK):
            part = neutralise_formulas(table.iloc[i:i + CHUNK].apply(cell_text))
            line = None
            for c in columns:
                cell = _escaped(part[c].astype("string"))
                line = cell if line is None else line + "\t" + cell
            if line is not None and len(line):
                out.write("\n".join(line.tolist()) + "\n")
    else:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")


def _write_json(table: pd.DataFrame, out: IO[str], lines: bool, *, opening: bool = True,
                after_rows: bool = False, closing: bool = True) -> None:
    """JSON lines, or a JSON array written whole or a part at a time: `opening` writes its "[",
    `closing` its "]", `after_rows` says rows were written before (this part's start with a comma)."""
    if not lines and opening:
        out.write("[")
    first = not after_rows
    for i in range(0, len(table), CHUNK):
        plain = plain_table(table.iloc[i:i + CHUNK])
        body = plain.to_json(orient="records", force_ascii=False, lines=lines, double_precision=9)
        if lines:
            out.write(json_safe(body.rstrip("\n")) + "\n")
            continue
        body = body[1:-1]
        if body:
            out.write(("" if first else ",\n") + json_safe(body))
            first = False
    if not lines and closing:
        out.write("]\n")


class ChunkedWriter:
    """A listing written a part at a time as the capture is read (analyzer.streaming): one header,
    text columns that keep their widths (widened when a later part needs more), one JSON array."""

    def __init__(self, fmt: str, columns: Sequence[str], labels: dict[str, str], out: IO[str], *,
                 max_width: int | None = None, transform: Callable[[str], str] = str) -> None:
        self.fmt, self.columns, self.labels, self.out = fmt, list(columns), labels, out
        self.max_width = max_width
        self.transform = transform      # text lines on their way out (symbols the encoding lacks)
        self.widths: dict[str, int] = {}
        self.started = False            # something (the header, "[") is written
        self.rows_written = 0

    def write(self, df: pd.DataFrame, blocks: pd.Series | None = None) -> None:
        """Rows out (nothing, not even the header, for none: close() writes it if no row came)."""
        if not len(df):
            return
        self._write(df, blocks)

    def _write(self, df: pd.DataFrame, blocks: pd.Series | None = None) -> None:
        if self.fmt == "text":
            for chunk in text_lines(df, self.columns, self.labels, max_width=self.max_width, blocks=blocks,
                                    widths=self.widths, header=not self.started):
                self.out.write(self.transform(chunk))
        elif self.fmt == "json":
            _write_json(df[self.columns], self.out, lines=False, opening=not self.started,
                        after_rows=self.rows_written > 0, closing=False)
        else:
            write(df, self.columns, self.fmt, self.out, first=not self.started, last=False)
        self.started = True
        self.rows_written += len(df)
        self.out.flush()

    def close(self) -> None:
        if not self.started:
            self._write(pd.DataFrame({c: pd.Series(dtype="string") for c in self.columns}))
        if self.fmt == "json":
            self.out.write("]\n")
        self.out.flush()


__all__ = ["FORMATS", "ChunkedWriter", "cell_text", "text_lines", "write"]
