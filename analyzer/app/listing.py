"""The command line's listings of what the applications said: one line per application message
(`app_view`) and one per request/response exchange (`exchanges_view`), as analyzer.listings.View
objects like the other listings (their rows hold the table's columns plus the ones shown: time,
direction, frame, info), so that -Y filters and -e fields name what is shown."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer import timefmt
from analyzer.listings import ARROWS, View

__all__ = ["app_view", "exchanges_view"]

#: characters of the decoded fields shown in an app line's info
FIELDS_WIDTH = 120


def _frame_of(a: Any, conn_id: pd.Series, message_id: pd.Series) -> pd.Series:
    """The record number of the frame that completed each (conn_id, message_id) WebSocket message
    (Int64; null for a null id or a message not in the messages table)."""
    m = a.messages[["conn_id", "message_id", "last_frame_no"]].astype({"message_id": "Int64"})
    keys = pd.DataFrame({"conn_id": conn_id.to_numpy(), "message_id": message_id.astype("Int64").to_numpy()})
    joined = keys.merge(m, on=["conn_id", "message_id"], how="left")
    return pd.Series(joined["last_frame_no"].astype("Int64").array, index=conn_id.index)


def _text(s: pd.Series) -> pd.Series:
    return s.astype("string").fillna("")


def _joined(*parts: pd.Series) -> pd.Series:
    """Non-empty parts joined with "; "."""
    out = parts[0]
    for p in parts[1:]:
        out = out + p.where((p == "") | (out == ""), "; " + p)
    return out


def app_view(a: Any, origin: pd.Timestamp | None) -> View:
    """Every application message, in capture order (by the frame that completed its WebSocket
    message): protocol, type, channel, correlation id, role, status and the decoded fields."""
    m = a.app_messages.reset_index(drop=True)
    rows = m.copy()
    rows["frame_no"] = _frame_of(a, m["conn_id"], m["message_id"])
    order = np.lexsort((m["app_index"].to_numpy(), m["message_id"].to_numpy(), m["conn_id"].to_numpy(),
                        rows["frame_no"].fillna(0).to_numpy(dtype="int64")))
    rows = rows.iloc[order].reset_index(drop=True)
    rows["time"] = timefmt.seconds(rows["ts"], origin)
    rows["direction"] = rows["sender"].astype("object").map(ARROWS).astype("string").fillna("")
    fields = _text(rows["fields"])
    fields = fields.where(fields != "{}", "")
    short = fields.str.slice(0, FIELDS_WIDTH)
    fields = short.where(fields.str.len() <= FIELDS_WIDTH, short + "…")
    correlation = _text(rows["correlation_id"])
    role = _text(rows["role"])
    paired = (role != "message") & (correlation != "")
    rows["info"] = _joined(_text(rows["channel"]),
                           (role + " " + correlation).where(paired, ""),
                           _text(rows["status"]), fields)
    columns = ["frame_no", "time", "conn_id", "message_id", "direction", "protocol", "type", "info"]
    return View(rows, columns if len(a.captures) <= 1 else ["capture", *columns],
                {"frame_no": "frame", "conn_id": "conn", "message_id": "msg"},
                {"frame": "frame_no", "conn": "conn_id", "msg": "message_id", "corr": "correlation_id"})


def exchanges_view(a: Any, origin: pd.Timestamp | None) -> View:
    """Every exchange, in the order of the requests: method, latency (ms) and status; an
    unanswered request says so."""
    e = a.exchanges.reset_index(drop=True)
    rows = e.copy()
    rows["frame_no"] = _frame_of(a, e["conn_id"], e["request_message_id"])
    rows["response_frame_no"] = _frame_of(a, e["conn_id"], e["response_message_id"])
    order = np.lexsort((e["exchange_id"].to_numpy(), e["conn_id"].to_numpy(),
                        rows["frame_no"].fillna(0).to_numpy(dtype="int64")))
    rows = rows.iloc[order].reset_index(drop=True)
    rows["time"] = timefmt.seconds(rows["ts_request"], origin)
    rows["latency_ms"] = rows["latency"] * 1000.0
    answered = rows["answered"].to_numpy(dtype=bool)
    latency = rows["latency_ms"].map("{:.3f} ms".format).astype("string")
    status = _text(rows["status"])
    rows["info"] = pd.Series(np.where(answered, _joined(status, latency).to_numpy(dtype=object),
                                      "UNANSWERED"), index=rows.index, dtype="string")
    columns = ["frame_no", "time", "conn_id", "exchange_id", "protocol", "method", "correlation_id",
               "response_frame_no", "info"]
    return View(rows, columns if len(a.captures) <= 1 else ["capture", *columns],
                {"frame_no": "frame", "conn_id": "conn", "exchange_id": "exchange",
                 "correlation_id": "correlation", "response_frame_no": "response frame"},
                {"frame": "frame_no", "conn": "conn_id", "exchange": "exchange_id", "corr": "correlation_id"},
                ts="ts_request")
