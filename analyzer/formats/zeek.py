"""Zeek's websocket.log, from the connections table: TSV (Zeek's ASCII writer) or JSON lines.

Fields and meaning follow Zeek's `base/protocols/websocket/main.zeek` (`WebSocket::Info`):

    ts                 time            when the handshake completed (Zeek logs at
                                       websocket_established: the 101 response)
    uid                string          connection id, "C" + 17 base62 characters; made up here
                                       from capture, conn_id and first packet (stable; it does not
                                       match a uid Zeek would draw at random)
    id.orig_h/_p       addr/port       client address and port
    id.resp_h/_p       addr/port       server address and port
    host               string          Host header
    uri                string          request target (credentials redacted, as in our tables)
    user_agent         string          User-Agent header
    subprotocol        string          Sec-WebSocket-Protocol of the response
    client_protocols   vector[string]  Sec-WebSocket-Protocol of the request, split at commas
    server_extensions  vector[string]  Sec-WebSocket-Extensions of the response, one per extension
    client_extensions  vector[string]  Sec-WebSocket-Extensions of the request, one per extension

Like Zeek, only established WebSocket connections (101 with a valid upgrade) are logged. TSV
escaping is Zeek's: a backslash is written `\\\\`; tabs, the set separator inside a vector item,
control, C1 and bidi characters `\\xHH` (their UTF-8 bytes); a value that reads as the unset ("-")
or empty ("(empty)") marker has its first character escaped. The JSON variant is Zeek's
`LogAscii::use_json=T`: one object a line, ts as epoch seconds, unset fields left out.

Beside it, when the analysis paired requests with responses (the exchanges table), a second log
`websocket_app.log` (path `websocket_app`, ours: Zeek has no such log), one line per exchange in
request order, in the same TSV or JSON form:

    ts                 time            the request's time
    uid                string          the connection's uid, as on its websocket.log line
    id.orig_h/_p       addr/port       client address and port
    id.resp_h/_p       addr/port       server address and port
    protocol           string          the decoder (jsonrpc, mqtt, stomp, socketio…)
    method             string          method, topic, destination, event or operation
    correlation_id     string          what paired the request with its response
    status             string          the response's status (ok, error…); unset when unanswered
    latency            interval        seconds from the request to its response; unset when
                                       unanswered
    answered           bool            a response was seen (T/F)

Like Zeek, which creates a log on its first line, no websocket_app.log is written without exchanges.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzer.formats.ids import connection_digests
from analyzer.stats import json_safe

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: (Zeek field, Zeek type), in the order of WebSocket::Info
FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"), ("uid", "string"),
    ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"), ("id.resp_p", "port"),
    ("host", "string"), ("uri", "string"), ("user_agent", "string"), ("subprotocol", "string"),
    ("client_protocols", "vector[string]"), ("server_extensions", "vector[string]"),
    ("client_extensions", "vector[string]"),
)

#: (Zeek field, Zeek type) of websocket_app.log
APP_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"), ("uid", "string"),
    ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"), ("id.resp_p", "port"),
    ("protocol", "string"), ("method", "string"), ("correlation_id", "string"), ("status", "string"),
    ("latency", "interval"), ("answered", "bool"),
)
APP_PATH = "websocket_app"

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY = "(empty)"
UNSET = "-"

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Zeek escapes non-printable bytes; we keep printable UTF-8 and escape controls, DEL, C1, bidi
_UNSAFE = "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069\\u2028\\u2029"
_ESCAPE = re.compile(f"[{_UNSAFE}]")
_ESCAPE_IN_SET = re.compile(f"[{_UNSAFE},]")


def _uid(digest: bytes) -> str:
    n = int.from_bytes(digest[:12], "big")
    chars = []
    for _ in range(17):
        n, r = divmod(n, 62)
        chars.append(_BASE62[r])
    return "C" + "".join(chars)


def zeek_records(a: Analysis) -> pd.DataFrame:
    """The websocket.log rows as a DataFrame with Zeek's column names (ts a UTC datetime, the
    vectors lists or None), one per established connection, in ts order as Zeek writes them."""
    c = a.connections
    c = c[c["handshake_ok"].fillna(False).astype(bool)]
    uids = [_uid(d) for d in connection_digests(c)]
    ts = c["request_ts"] + pd.to_timedelta(c["handshake_rtt"], unit="s")
    return pd.DataFrame({
        "ts": ts.fillna(c["start"]),
        "uid": pd.array(uids, dtype="string"),
        "id.orig_h": c["client"], "id.orig_p": c["client_port"],
        "id.resp_h": c["server"], "id.resp_p": c["server_port"],
        "host": c["host"], "uri": c["path"], "user_agent": c["user_agent"],
        "subprotocol": c["subprotocol"],
        "client_protocols": c["subprotocols_offered_list"],
        "server_extensions": c["extensions_list"],
        "client_extensions": c["extensions_offered_list"],
    }).sort_values("ts", kind="stable").reset_index(drop=True)


def _exchanges(a: Analysis) -> pd.DataFrame | None:
    ex = getattr(a, "exchanges", None)
    return None if ex is None or ex.empty else ex


def has_app_log(a: Analysis) -> bool:
    """Whether the analysis has lines for websocket_app.log (it paired some exchanges)."""
    return _exchanges(a) is not None


def app_log_path(path: str) -> str:
    """websocket_app.log's path beside the websocket.log at `path` ("_app" before the extension)."""
    stem, ext = os.path.splitext(path)
    return f"{stem}_app{ext}"


def app_records(a: Analysis) -> pd.DataFrame:
    """The websocket_app.log rows (APP_FIELDS) as a DataFrame, one per exchange, in request order;
    uid and addresses from the exchange's connection, as on its websocket.log line."""
    ex = _exchanges(a)
    if ex is None:
        return pd.DataFrame({name: [] for name, _ in APP_FIELDS})
    c = a.connections
    c = c[c["conn_id"].isin(ex["conn_id"])]
    conn = pd.DataFrame({
        "uid": pd.array([_uid(d) for d in connection_digests(c)], dtype="string"),
        "id.orig_h": c["client"].to_numpy(), "id.orig_p": c["client_port"].to_numpy(),
        "id.resp_h": c["server"].to_numpy(), "id.resp_p": c["server_port"].to_numpy(),
    }, index=c["conn_id"].to_numpy())
    conn = conn[~conn.index.duplicated()].reindex(ex["conn_id"].to_numpy())
    rows = pd.DataFrame({"ts": ex["ts_request"].to_numpy()}, index=conn.index)
    rows = pd.concat([rows, conn], axis=1)
    for name in ("protocol", "method", "correlation_id", "status"):
        rows[name] = ex[name].astype("object").to_numpy()
    rows["latency"] = ex["latency"].astype("float64").to_numpy()
    rows["answered"] = ex["answered"].astype(bool).to_numpy()
    return rows.sort_values("ts", kind="stable").reset_index(drop=True)


def _hex_escape(m: re.Match[str]) -> str:
    return "".join(f"\\x{b:02x}" for b in m.group().encode("utf-8", "surrogatepass"))


def _tsv_string(value: str, in_set: bool = False) -> str:
    text = value.replace("\\", "\\\\")
    text = (_ESCAPE_IN_SET if in_set else _ESCAPE).sub(_hex_escape, text)
    if text in (UNSET, EMPTY):
        text = f"\\x{ord(text[0]):02x}{text[1:]}"
    return text


def _tsv_cell(value: Any, ztype: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return UNSET
    if ztype == "time":
        return f"{value.value / 1e9:.6f}"
    if ztype == "port":
        return str(int(value))
    if ztype == "interval":
        return f"{float(value):.6f}"
    if ztype == "bool":
        return "T" if value else "F"
    if ztype.startswith("vector"):
        if not value:
            return EMPTY
        return SET_SEPARATOR.join(_tsv_string(str(v), in_set=True) for v in value)
    text = str(value)
    return EMPTY if text == "" else _tsv_string(text)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d-%H-%M-%S")


def _write_tsv_log(rows: pd.DataFrame, fields: tuple[tuple[str, str], ...], path: str, fh: IO[str],
                   now: datetime | None) -> int:
    when = now or datetime.now(timezone.utc)
    fh.write("#separator \\x09\n")
    for key, value in (("set_separator", SET_SEPARATOR), ("empty_field", EMPTY),
                       ("unset_field", UNSET), ("path", path), ("open", _stamp(when))):
        fh.write(f"#{key}{SEPARATOR}{value}\n")
    fh.write("#fields" + SEPARATOR + SEPARATOR.join(name for name, _ in fields) + "\n")
    fh.write("#types" + SEPARATOR + SEPARATOR.join(ztype for _, ztype in fields) + "\n")
    columns = [rows[name].tolist() for name, _ in fields]
    for values in zip(*columns):
        fh.write(SEPARATOR.join(_tsv_cell(v, ztype) for v, (_, ztype) in zip(values, fields)) + "\n")
    fh.write(f"#close{SEPARATOR}{_stamp(now or datetime.now(timezone.utc))}\n")
    return len(rows)


def write_tsv(a: Analysis, fh: IO[str], now: datetime | None = None) -> int:
    """websocket.log in Zeek's TSV form to `fh`; returns the number of rows.

    `now` is the #open/#close time (Zeek writes the wall-clock time; default: now, UTC).
    """
    return _write_tsv_log(zeek_records(a), FIELDS, "websocket", fh, now)


def write_app_tsv(a: Analysis, fh: IO[str], now: datetime | None = None) -> int:
    """websocket_app.log in Zeek's TSV form to `fh` (header only without exchanges); returns the
    number of rows. `now` as for write_tsv."""
    return _write_tsv_log(app_records(a), APP_FIELDS, APP_PATH, fh, now)


def _json_value(value: Any, ztype: str) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if ztype == "time":
        return round(value.value / 1e9, 6)
    if ztype == "interval":
        return round(float(value), 6)
    if ztype == "bool":
        return bool(value)
    if ztype == "port":
        return int(value)
    if ztype.startswith("vector"):
        return [str(v) for v in value]
    return str(value)


def _write_json_log(rows: pd.DataFrame, fields: tuple[tuple[str, str], ...], fh: IO[str]) -> int:
    columns = [rows[name].tolist() for name, _ in fields]
    for values in zip(*columns):
        record = {}
        for value, (name, ztype) in zip(values, fields):
            converted = _json_value(value, ztype)
            if converted is not None:
                record[name] = converted
        fh.write(json_safe(json.dumps(record, ensure_ascii=False, separators=(",", ":"))) + "\n")
    return len(rows)


def write_json(a: Analysis, fh: IO[str]) -> int:
    """websocket.log as Zeek's JSON lines to `fh`; returns the number of rows."""
    return _write_json_log(zeek_records(a), FIELDS, fh)


def write_app_json(a: Analysis, fh: IO[str]) -> int:
    """websocket_app.log as Zeek's JSON lines to `fh`; returns the number of rows."""
    return _write_json_log(app_records(a), APP_FIELDS, fh)


__all__ = ["APP_FIELDS", "FIELDS", "app_log_path", "app_records", "has_app_log", "write_app_json",
           "write_app_tsv", "write_json", "write_tsv", "zeek_records"]
