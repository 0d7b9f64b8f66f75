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
"""

from __future__ import annotations

import json
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
    if ztype.startswith("vector"):
        if not value:
            return EMPTY
        return SET_SEPARATOR.join(_tsv_string(str(v), in_set=True) for v in value)
    text = str(value)
    return EMPTY if text == "" else _tsv_string(text)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d-%H-%M-%S")


def write_tsv(a: Analysis, fh: IO[str], now: datetime | None = None) -> int:
    """websocket.log in Zeek's TSV form to `fh`; returns the number of rows.

    `now` is the #open/#close time (Zeek writes the wall-clock time; default: now, UTC).
    """
    when = now or datetime.now(timezone.utc)
    rows = zeek_records(a)
    fh.write("#separator \\x09\n")
    for key, value in (("set_separator", SET_SEPARATOR), ("empty_field", EMPTY),
                       ("unset_field", UNSET), ("path", "websocket"), ("open", _stamp(when))):
        fh.write(f"#{key}{SEPARATOR}{value}\n")
    fh.write("#fields" + SEPARATOR + SEPARATOR.join(name for name, _ in FIELDS) + "\n")
    fh.write("#types" + SEPARATOR + SEPARATOR.join(ztype for _, ztype in FIELDS) + "\n")
    columns = [rows[name].tolist() for name, _ in FIELDS]
    for values in zip(*columns):
        fh.write(SEPARATOR.join(_tsv_cell(v, ztype) for v, (_, ztype) in zip(values, FIELDS)) + "\n")
    fh.write(f"#close{SEPARATOR}{_stamp(now or datetime.now(timezone.utc))}\n")
    return len(rows)


def _json_value(value: Any, ztype: str) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if ztype == "time":
        return round(value.value / 1e9, 6)
    if ztype == "port":
        return int(value)
    if ztype.startswith("vector"):
        return [str(v) for v in value]
    return str(value)


def write_json(a: Analysis, fh: IO[str]) -> int:
    """websocket.log as Zeek's JSON lines to `fh`; returns the number of rows."""
    rows = zeek_records(a)
    columns = [rows[name].tolist() for name, _ in FIELDS]
    for values in zip(*columns):
        record = {}
        for value, (name, ztype) in zip(values, FIELDS):
            converted = _json_value(value, ztype)
            if converted is not None:
                record[name] = converted
        fh.write(json_safe(json.dumps(record, ensure_ascii=False, separators=(",", ":"))) + "\n")
    return len(rows)


__all__ = ["FIELDS", "write_json", "write_tsv", "zeek_records"]
