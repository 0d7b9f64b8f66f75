"""Writing the four DataFrames to CSV, Parquet or JSON, safely.

CSV is opened by spreadsheets, so a text cell that starts like a formula (=, +, -, @, tab, CR) gets
a leading apostrophe, the usual neutralisation (OWASP "CSV injection"); numeric columns are left
as numbers. In CSV and JSON, bytes payloads become hex and durations become seconds (float).
Parquet keeps the native types. File names are fixed (connections.csv…), never captured values.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pandas as pd

from analyzer.tables import SCHEMAS

if TYPE_CHECKING:
    from analyzer.api import Analysis

FORMATS = ("csv", "parquet", "json")
TABLES = tuple(SCHEMAS)  # frames, messages, connections, problems

_FORMULA_START = r"^[=+\-@\t\r]"


def _is_text(s: pd.Series) -> bool:
    return (pd.api.types.is_string_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype)
            or s.dtype == object)


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Text-format friendly copy: bytes → hex, timedelta → seconds."""
    out = df.copy()
    for name in out.columns:
        s = out[name]
        if pd.api.types.is_timedelta64_dtype(s.dtype):
            out[name] = s.dt.total_seconds()
        elif s.dtype == object:
            out[name] = s.map(lambda v: bytes(v).hex() if isinstance(v, (bytes, bytearray, memoryview))
                              else v)
    return out


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy in which every text cell starting with =, +, -, @, tab or CR is prefixed with `'`.

    Numeric, boolean and datetime columns are untouched (a negative number stays a number).
    """
    out = df.copy()
    for name in out.columns:
        s = out[name]
        if not _is_text(s):
            continue
        text = s.astype("string")
        risky = text.str.contains(_FORMULA_START, regex=True, na=False)
        if risky.any():
            out[name] = text.mask(risky, "'" + text)
    return out


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], fmt: str) -> str:
    """Write one DataFrame as `fmt` to `path` (CSV neutralised, see the module doc); returns the path."""
    path = os.fspath(path)
    if fmt == "csv":
        neutralise_formulas(_plain(df)).to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt == "json":
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(_to_json(df))
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return path


def _to_json(df: pd.DataFrame) -> str:
    return _plain(df).to_json(orient="records", date_format="iso", date_unit="ns", force_ascii=False)


def export(a: Analysis, directory_or_file: str | os.PathLike[str], fmt: str = "csv") -> list[str]:
    """Write the four tables (connections, frames, messages, problems).

    Args:
        a: the analysis.
        directory_or_file: a directory (created if missing) that receives connections.<fmt>,
            frames.<fmt>, messages.<fmt> and problems.<fmt>; for fmt="json" a path ending in
            ".json" instead gets one object {"connections": [...], "frames": [...], ...}.
        fmt: "csv", "parquet" or "json".

    Returns:
        The paths written.

    Raises:
        ValueError: an unknown format.
        OSError: the directory or a file cannot be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    target = os.fspath(directory_or_file)
    tables = {"connections": a.connections, "frames": a.frames, "messages": a.messages,
              "problems": a.problems}
    if fmt == "json" and target.lower().endswith(".json") and not os.path.isdir(target):
        parent = os.path.dirname(target)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write("{")
            for i, (name, df) in enumerate(tables.items()):
                fh.write(f'{"," if i else ""}"{name}":{_to_json(df)}')
            fh.write("}")
        return [target]
    os.makedirs(target, exist_ok=True)
    ext = {"csv": "csv", "parquet": "parquet", "json": "json"}[fmt]
    return [write_table(df, os.path.join(target, f"{name}.{ext}"), fmt) for name, df in tables.items()]


__all__ = ["FORMATS", "export", "neutralise_formulas", "write_table"]
