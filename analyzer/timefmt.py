"""Time columns of the listings, shown as tshark's `-t` shows them, and the capture start they count from.

Modes (tshark's letters): `r` seconds since the capture's first packet (the default; the first
packet of the capture, not of the first WebSocket frame, and not restarted by filtering), `a`
and `u` absolute UTC date and time, `l` local date and time with its UTC offset, `d` seconds since
the previous line shown, `e` seconds since the epoch. tshark's `ad`, `ud` and `dd` are accepted as
`a`, `u` and `d`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

MODES = ("r", "a", "u", "l", "d", "e")
ALIASES = {"ad": "a", "ud": "u", "dd": "d", "ld": "l"}
NUMERIC_MODES = ("r", "d", "e")    # shown as seconds (numbers in JSON)


def mode(text: str) -> str:
    """A -t argument as one of MODES; ValueError for anything else."""
    m = ALIASES.get(text, text)
    if m not in MODES:
        raise ValueError(f"unknown time format {text!r}; choose from r, a, u, l, d, e (as tshark -t)")
    return m


def first_record_ts(path: str | os.PathLike[str]) -> pd.Timestamp | None:
    """The time of the capture's first packet record, read again from a regular file; None if that
    cannot be done (a pipe read once already, a file without a readable record)."""
    from analyzer.capture import CaptureError, CaptureReader

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with CaptureReader(path) as reader:
            for record in reader:
                return pd.Timestamp(record.ts_ns, unit="ns", tz="UTC")
    except (OSError, CaptureError, ValueError):
        return None
    return None


def capture_start(paths: Iterable[str | os.PathLike[str]], *tables_ts: pd.Series) -> pd.Timestamp | None:
    """The first packet of the earliest capture: what relative times count from.

    Read from the files; where one cannot be read again, the earliest time in `tables_ts`
    (connection starts, frames, problems) stands in.
    """
    starts = [first_record_ts(p) for p in paths]
    known = [s for s in starts if s is not None]
    if starts and len(known) == len(starts):
        return min(known)
    for ts in tables_ts:
        if len(ts) and ts.notna().any():
            known.append(ts.min())
    return min(known) if known else None


def seconds(ts: pd.Series, origin: pd.Timestamp | None) -> pd.Series:
    """Seconds from `origin` as floats (NaN where ts is null)."""
    if origin is None or ts.empty:
        return pd.Series(np.zeros(len(ts)), index=ts.index, dtype="float64").where(ts.notna())
    return (ts - origin).dt.total_seconds()


def show(ts: pd.Series, how: str, origin: pd.Timestamp | None) -> pd.Series:
    """`ts` (datetime64 UTC) as the listing shows it: text for a, u, l; seconds (float) otherwise."""
    if how == "r":
        return seconds(ts, origin)
    if how in ("e", "d"):
        valid = ts.notna().to_numpy()
        ns = ts[valid].astype("int64").to_numpy()
        values = np.full(len(ts), np.nan)
        values[valid] = ns / 1e9 if how == "e" else np.diff(ns, prepend=ns[:1]) / 1e9
        return pd.Series(values, index=ts.index)
    if how == "l":
        text: pd.Series = ts.dt.tz_convert(_local_zone()).dt.strftime("%Y-%m-%d %H:%M:%S.%f%z")
    else:
        text = ts.dt.strftime("%Y-%m-%d %H:%M:%S.%fZ")
    return text.astype("string")


def _local_zone() -> Any:
    import datetime

    return datetime.datetime.now().astimezone().tzinfo


__all__ = ["MODES", "NUMERIC_MODES", "capture_start", "first_record_ts", "mode", "seconds", "show"]
