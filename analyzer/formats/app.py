"""The application messages of each WebSocket message as JSON objects, for the EVE and HAR writers.

One object per app_messages row, in app_index order: {"protocol", "type", "channel",
"correlation_id", "role", "status"} with null fields left out (as EVE does), and, for a response
that exchanges paired with its request, "latency_ms": the exchange's latency in milliseconds
(3 decimals: the microseconds of the capture's timestamps).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: the app_messages columns each object carries, in this order
APP_FIELDS = ("protocol", "type", "channel", "correlation_id", "role", "status")


def json_strings(values: pd.Series) -> pd.Series:
    """Each non-null value as a JSON string literal (with the quotes); null stays null."""
    out = pd.Series(pd.NA, index=values.index, dtype="object")
    present = values.notna()
    if present.any():
        out[present] = values[present].astype(str).map(lambda v: json.dumps(v, ensure_ascii=False))
    return out


def optional(prefix: str, values: pd.Series, suffix: str = "") -> pd.Series:
    """prefix + value + suffix where the value is present, "" where it is null (whatever the
    column's dtype, also when no row has a value)."""
    out = pd.Series("", index=values.index, dtype="object")
    present = values.notna().to_numpy()
    if present.any():
        out[present] = prefix + values[present].astype(str) + suffix
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
    body = pd.Series("", index=am.index, dtype="object")
    for name in APP_FIELDS:
        body = body + optional(f',"{name}":', json_strings(am[name].astype("object")))
    exchanges = getattr(a, "exchanges", None)
    if exchanges is not None and not exchanges.empty:
        body = body + optional(',"latency_ms":', _latency_ms(am, exchanges))
    objects = "{" + body.str[1:] + "}"
    key = [am["conn_id"].to_numpy(), am["message_id"].to_numpy()]
    joined = objects.groupby(key, sort=False).agg(",".join)
    return "[" + joined + "]"


__all__ = ["APP_FIELDS", "app_json", "json_strings", "optional"]
