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
               cells: Callable[[pd.Series], pd.Series] = cell_text) -> Iterator[str]:
    """The rows as aligned text lines, header first, in chunks (each chunk ends with a newline).

    Numbers are right-aligned, text left-aligned, the last column is not padded. `max_width` (a
    terminal's width) cuts the last column so that lines fit, before escaping (so no escape is cut).
    `blocks` holds, per row, text printed under its line, indented (payloads), or "".
    """
    labels = labels or {}
    texts = {c: cells(df[c]) for c in columns}
    # captured text can only be in text columns; the last one is cut before it is escaped
    shown = {c: _escaped(texts[c]) if is_text(df[c]) else texts[c] for c in columns[:-1]}
    heads = {c: labels.get(c, c) for c in columns}
    widths = {c: max(len(heads[c]), int(shown[c].str.len().max()) if len(df) else 0)
              for c in columns[:-1]}
    right = {c for c in columns if _right_aligned(df[c])}

    def pad(s: pd.Series, c: str) -> pd.Series:
        return s.str.rjust(widths[c]) if c in right else s.str.ljust(widths[c])

    header = "  ".join([heads[c].rjust(widths[c]) if c in right else heads[c].ljust(widths[c])
                        for c in columns[:-1]] + [heads[columns[-1]]])
    yield header.rstrip() + "\n"
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


def write(df: pd.DataFrame, columns: Sequence[str], fmt: str, out: IO[str]) -> None:
    """`df[columns]` to `out` as json (one array), jsonl, csv or tsv (text: see text_lines)."""
    table = df[list(columns)]
    if fmt in ("json", "jsonl"):
        _write_json(table, out, lines=fmt == "jsonl")
    elif fmt == "csv":
        for i, part in enumerate(chunks(table, CHUNK)):
            part = neutralise_formulas(plain_table(part))
            part = part.apply(lambda s: _escaped(s.astype("string")) if is_text(s) else s)
            out.write(part.to_csv(index=False, header=i == 0, lineterminator="\r\n"))
    elif fmt == "tsv":
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


def _write_json(table: pd.DataFrame, out: IO[str], lines: bool) -> None:
    if not lines:
        out.write("[")
    first = True
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
    if not lines:
        out.write("]\n")


__all__ = ["FORMATS", "cell_text", "text_lines", "write"]
