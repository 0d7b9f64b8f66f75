"""The application messages of each WebSocket message as JSON objects, for the EVE and HAR writers.

One object per app_messages row, in app_index order: {"protocol", "type", "channel",
"correlation_id", "role", "status"} with null fields left out (as EVE does), and, for a response
that exchanges paired with its request, "latency_ms": the exchange's latency in milliseconds
(3 decimals: the microseconds of the capture's timestamps).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: the app_messages columns each object carries, in this order
APP_FIELDS = ("protocol", "type", "channel", "correlation_id", "role", "status")


def json_strings(values: pd.Series) -> pd.Series:
    """Each non-null value as a JSON string literal (with the quotes); null stays null. Each
    distinct value is encoded once (categories, repeated channels and ids)."""
    out = pd.Series(pd.NA, index=values.index, dtype="object")
    present = values.notna().to_numpy()
    if present.any():
        codes, uniques = pd.factorize(values[present].astype(str))
        encoded = np.array([json.dumps(v, ensure_ascii=False) for v in uniques], dtype=object)
        out[present] = encoded[codes]
    return out


def optional(prefix: str, values: pd.Series, suffix: str = "") -> pd.Series:
    """prefix + value + suffix where the value is present, "" where it is null (whatever the
    column's dtype, also when no row has a value)."""
    out = pd.Series("", index=values.index, dtype="object")
    present = values.notna().to_numpy()
    if present.any():
        out[present] = prefix + values[present].astype(str) + suffix
    return out


def _members(prefix: str, values: pd.Series) -> np.ndarray:
    """prefix + value where the (already JSON) value is present, "" where it is null."""
    out = np.full(len(values), "", dtype=object)
    present = values.notna().to_numpy()
    if present.any():
        out[present] = prefix + values.to_numpy(dtype=object)[present]
    return out


def _latency_ms(am: pd.DataFrame, exchanges: pd.DataFrame) -> pd.Series:
    """Per app_messages row: its exchange's latency in ms where it is an answered response."""
    out = pd.Series(float("nan"), index=am.index)
    answered = exchanges[exchanges["answered"].astype(bool) & exchanges["correlation_id"].notna()]
    responses = am[(am["role"].astype("object") == "response") & am["correlation_id"].notna()]
    if answered.empty or responses.empty:
        return out
    keys = ["conn_id", "message_id", "correlation_id"]
    right = pd.DataFrame({"conn_id": answered["conn_id"].astype("int64"),
                          "message_id": answered["response_message_id"].astype("int64"),
                          "correlation_id": answered["correlation_id"].astype("object"),
                          "latency": answered["latency"].astype("float64")})
    right = right.drop_duplicates(keys)
    left = pd.DataFrame({"conn_id": responses["conn_id"].astype("int64"),
                         "message_id": responses["message_id"].astype("int64"),
                         "correlation_id": responses["correlation_id"].astype("object")})
    found = left.merge(right, on=keys, how="left")["latency"].to_numpy()
    out[responses.index] = (found * 1000).round(3)
    return out


def app_json(a: Analysis) -> pd.Series | None:
    """A JSON array (text) of the application messages of each WebSocket message that carried
    any, indexed by (conn_id, message_id); None when the analysis has none."""
    am = getattr(a, "app_messages", None)
    if am is None or am.empty:
        return None
    am = am.sort_values(["conn_id", "message_id", "app_index"], kind="stable").reset_index(drop=True)
    # object arrays: numpy's elementwise str + is cheaper than pandas' string columns here
    body = np.full(len(am), "", dtype=object)
    for name in APP_FIELDS:
        body = body + _members(f',"{name}":', json_strings(am[name].astype("object")))
    exchanges = getattr(a, "exchanges", None)
    if exchanges is not None and not exchanges.empty:
        latency = _latency_ms(am, exchanges)
        body = body + _members(',"latency_ms":', latency.astype(str).where(latency.notna()))
    objects = np.array(["{" + b[1:] + "}" for b in body], dtype=object)
    conn = am["conn_id"].to_numpy()
    message = am["message_id"].to_numpy()
    # one JSON array per message: am is sorted by (conn_id, message_id), so a message's objects
    # are one run of rows; most messages carry one (no join)
    starts = np.flatnonzero(np.r_[True, (conn[1:] != conn[:-1]) | (message[1:] != message[:-1])])
    ends = np.r_[starts[1:], len(am)]
    single = ends - starts == 1
    arrays = np.empty(len(starts), dtype=object)
    arrays[single] = objects[starts[single]]
    arrays[~single] = [",".join(objects[lo:hi]) for lo, hi in zip(starts[~single], ends[~single])]
    index = pd.MultiIndex.from_arrays([conn[starts], message[starts]])
    return "[" + pd.Series(arrays, index=index, dtype=object) + "]"

__all__ = ["APP_FIELDS", "app_json", "json_strings", "optional"]
