"""The command line's listings as tables: frames, messages, connections, problems and one connection's
transcript (`follow`).

Each listing is a `View`: a DataFrame holding the table's own columns plus the ones the listing
adds (time in seconds since the capture start, direction, flags, info…), the columns shown by
default with their header labels, and aliases, so that `-Y` and `-e` name the same columns the
listing shows. Text cells here are raw (captured text unescaped); analyzer.render escapes them.
Everything is vectorised pandas over whole columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer import filters, timefmt
from analyzer.payloads import render as render_payload
from analyzer.protocol import close_code_name

ARROWS = {"client": "client→server", "server": "server→client"}


@dataclass
class View:
    """One listing: its rows (every column a filter or -e may name) and how it is shown."""

    rows: pd.DataFrame
    columns: list[str]                                   # shown by default, in order
    labels: dict[str, str] = field(default_factory=dict)  # column → header label
    aliases: dict[str, str] = field(default_factory=dict)  # other name → column
    ts: str = "ts"                                       # the time of a row

    def column(self, name: str) -> str:
        """The column `name` (or its alias) refers to; KeyError listing the columns if none."""
        real = name if name in self.rows.columns else self.aliases.get(name)
        if real is None:
            raise KeyError(f"unknown column {name!r}; columns: "
                           + ", ".join([*map(str, self.rows.columns), *self.aliases]))
        return real

    def filter(self, expr: str | None) -> View:
        """This view with only the rows `expr` selects (analyzer.filters)."""
        if not expr:
            return self
        rows = filters.apply(self.rows, expr, aliases=self.aliases)
        return View(rows, self.columns, self.labels, self.aliases, self.ts)

    def keep(self, selected: np.ndarray) -> View:
        return View(self.rows[selected], self.columns, self.labels, self.aliases, self.ts)


# --- selection: --conn, --host, --since, --until ---------------------------------------------

class SelectionError(ValueError):
    """A --conn/--host/--since/--until value that selects nothing that exists (one line)."""


def known_conn_ids(a: Any) -> set[int]:
    ids = set(a.connections["conn_id"].astype("int64").tolist())
    ids.update(a.problems["conn_id"].dropna().astype("int64").tolist())
    return ids


def check_conns(a: Any, conns: Iterable[int]) -> None:
    """SelectionError naming the unknown connection ids and the ones there are."""
    known = known_conn_ids(a)
    missing = sorted(set(conns) - known)
    if missing:
        have = _ranges(sorted(known)) if known else "none"
        raise SelectionError(f"no connection {', '.join(map(str, missing))} in the capture "
                             f"(connections: {have}; see `ws-analyzer connections`)")


def conns_of_hosts(a: Any, hosts: Sequence[str]) -> set[int]:
    """Connections whose client or server address is one of `hosts`, or whose Host header names one
    (with or without its port; case-insensitive)."""
    c = a.connections
    wanted = [h.strip().lower() for h in hosts]
    host_header = c["host"].astype("string").str.lower()
    bare = host_header.str.replace(r":\d+$", "", regex=True).str.strip("[]")
    hit = (c["client"].astype("string").str.lower().isin(wanted)
           | c["server"].astype("string").str.lower().isin(wanted)
           | host_header.isin(wanted) | bare.isin(wanted)
           | (c["sni"].astype("string").str.lower().isin(wanted) if "sni" in c.columns else False)
           ).fillna(False)
    return set(c.loc[hit.to_numpy(dtype=bool), "conn_id"].astype("int64").tolist())


def parse_when(text: str, origin: pd.Timestamp | None) -> pd.Timestamp:
    """--since/--until: seconds since the capture start, or a date and time (UTC unless it says)."""
    try:
        secs = float(text)
    except ValueError:
        secs = None
    if secs is not None:
        if origin is None:
            raise SelectionError("no capture start to count seconds from; give a date and time")
        return origin + pd.Timedelta(seconds=secs)
    try:
        ts: pd.Timestamp | None = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = None
    if ts is None or pd.isna(ts):         # pd.Timestamp("nat") is NaT
        raise SelectionError(f"not a time: {text!r} (seconds since the capture start, or e.g. "
                             "'2026-11-26 13:39:56')")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass
class Selection:
    """The shortcuts, resolved: connection ids (None: all) and a time window."""

    conns: set[int] | None = None
    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None

    def apply(self, view: View, end: str | None = None) -> View:
        """Rows of the selected connections within the window (`end`: a row spans ts..end)."""
        rows = view.rows
        keep = np.ones(len(rows), dtype=bool)
        if self.conns is not None:
            keep &= rows["conn_id"].isin(list(self.conns)).fillna(False).to_numpy(dtype=bool)
        start_ts = rows[view.ts]
        end_ts = rows[end] if end else start_ts
        if self.since is not None:
            keep &= (end_ts >= self.since).fillna(False).to_numpy(dtype=bool)
        if self.until is not None:
            keep &= (start_ts <= self.until).fillna(False).to_numpy(dtype=bool)
        return view.keep(keep)


# --- the views -------------------------------------------------------------------------------

def _cut(s: pd.Series, width: int | None) -> pd.Series:
    """The first `width` characters of each cell and "…" where cut (None: as they are)."""
    s = s.astype("string").fillna("")
    if width is None:
        return s
    width = max(0, width)
    short = s.str.slice(0, width)
    return short.where(s.str.len() <= width, short + "…")


def _quoted_preview(preview: pd.Series, kind: pd.Series, size: pd.Series, width: int | None) -> pd.Series:
    """Message previews as listings show them: “text”, hex for binary, “(no preview)” when the
    message has bytes but no preview was kept."""
    short = _cut(preview, width)
    shown = short.where(kind.astype("string") != "text", "“" + short + "”")
    no_preview = (short == "") & (size.fillna(0) > 0)
    return shown.mask(no_preview, "(no preview)")


def _direction(sender: pd.Series) -> pd.Series:
    return sender.astype("object").map(ARROWS).astype("string").fillna("")


def _flags(f: pd.DataFrame) -> pd.Series:
    def bit(s: pd.Series, char: str) -> pd.Series:
        return pd.Series(np.where(s.to_numpy(dtype=bool), char, "-"), index=f.index, dtype="string")

    return bit(f["fin"], "F") + bit(f["rsv1"], "1") + bit(f["rsv2"], "2") + bit(f["rsv3"], "3") \
        + bit(f["masked"], "M")


def _close_text(code: pd.Series, reason: pd.Series) -> pd.Series:
    present = code.dropna().unique()
    names = code.map({c: close_code_name(int(c)) for c in present}).astype("string").fillna("")
    text = (code.astype("string").fillna("no status code") + " " + names).str.strip()
    reason = reason.astype("string").fillna("")
    return text + reason.where(reason == "", " “" + reason + "”")


def frames_view(a: Any, origin: pd.Timestamp | None, preview_width: int | None = None) -> View:
    """Every frame; `info` says what the frame completes or carries (close code, message, rtt)."""
    f = a.frames.reset_index(drop=True)
    m = a.messages[["conn_id", "message_id", "type", "size", "complete", "preview", "last_frame_no"]]
    j = f[["conn_id", "message_id"]].merge(
        m.astype({"message_id": "Int64"}).rename(columns={"complete": "message_complete"}),
        on=["conn_id", "message_id"], how="left")
    rows = f.copy()
    rows["time"] = timefmt.seconds(f["ts"], origin)
    rows["direction"] = _direction(f["sender"])
    rows["flags"] = _flags(f)
    rows["message_type"] = j["type"].to_numpy()
    rows["message_size"] = j["size"].astype("Int64").to_numpy()
    rows["message_complete"] = j["message_complete"].astype("boolean").to_numpy()
    completes = (j["last_frame_no"] == f["frame_no"]).fillna(False).to_numpy(dtype=bool)
    rows["ends_message"] = completes

    info = pd.Series("", index=f.index, dtype="string")
    is_close = (f["opcode"] == 8).to_numpy()
    if is_close.any():
        info = info.mask(is_close, _close_text(f["close_code"], f["close_reason"]))
    if completes.any():
        incomplete = (~j["message_complete"].fillna(True).astype(bool)).to_numpy()
        size = j["size"].astype("Int64").astype("string")
        head = j["type"].astype("string") + " message " + f["message_id"].astype("string") + ", " + size \
            + pd.Series(np.where(incomplete, " B so far, INCOMPLETE", " B"), index=f.index, dtype="string")
        preview = _quoted_preview(j["preview"], j["type"], j["size"], preview_width)
        info = info.mask(completes, head + ": " + preview)
    fragment = f["message_id"].notna().to_numpy() & ~completes
    if fragment.any():
        info = info.mask(fragment, "fragment of message " + f["message_id"].astype("string"))
    has_rtt = f["rtt"].notna().to_numpy()
    if has_rtt.any():
        info = info.mask(has_rtt, "rtt " + (f["rtt"] * 1000).map("{:.3f}".format).astype("string") + " ms")
    cut = ~f["complete"].to_numpy(dtype=bool)
    if cut.any():
        info = info.mask(cut, "CUT by the end of the capture; " + info)
    rows["info"] = info
    columns = ["frame_no", "time", "conn_id", "direction", "opcode_name", "flags", "payload_len", "info"]
    return View(rows, columns if len(a.captures) <= 1 else ["capture", *columns],
                {"frame_no": "frame", "conn_id": "conn", "opcode_name": "opcode", "payload_len": "length"},
                {"frame": "frame_no", "conn": "conn_id", "length": "payload_len"})


def messages_view(a: Any, origin: pd.Timestamp | None, preview_width: int | None = None) -> View:
    """Every data message, listed at the frame that completed it, in capture order."""
    m = a.messages.sort_values(["last_frame_no", "conn_id", "message_id"], kind="stable")
    m = m.reset_index(drop=True)
    rows = m.drop(columns=["payload"])
    rows["time"] = timefmt.seconds(m["ts_end"], origin)
    rows["direction"] = _direction(m["sender"])
    mark = pd.Series(np.where(m["complete"].to_numpy(dtype=bool), "", "INCOMPLETE "), index=m.index,
                     dtype="string")
    rows["info"] = mark + _quoted_preview(m["preview"], m["type"], m["size"], preview_width)
    columns = ["last_frame_no", "time", "conn_id", "message_id", "direction", "type", "frames", "size",
               "info"]
    return View(rows, columns if len(a.captures) <= 1 else ["capture", *columns],
                {"last_frame_no": "frame", "conn_id": "conn", "message_id": "msg"},
                {"frame": "last_frame_no", "conn": "conn_id", "msg": "message_id"}, ts="ts_end")


def _endpoint(addr: pd.Series, port: pd.Series) -> pd.Series:
    addr = addr.astype("string").fillna("?")
    bracketed = addr.where(~addr.str.contains(":", regex=False), "[" + addr + "]")
    return bracketed + ":" + port.astype("string")


def connections_view(a: Any, origin: pd.Timestamp | None) -> View:
    """Every WebSocket connection (and every TLS connection: nothing encrypted is hidden): endpoints,
    draft, handshake status, counts, how it closed, and for TLS its version, suite, SNI and whether it
    was decrypted."""
    c = a.connections.reset_index(drop=True)
    rows = c.copy()
    rows["time"] = timefmt.seconds(c["start"], origin)
    rows["client_endpoint"] = _endpoint(c["client"], c["client_port"])
    rows["server_endpoint"] = _endpoint(c["server"], c["server_port"])
    rows["frames"] = c["frames_client"] + c["frames_server"]
    rows["messages"] = c["messages_client"] + c["messages_server"]
    rows["bytes"] = c["bytes_client"] + c["bytes_server"]
    code = c["close_code"].astype("Int64")
    rows["close"] = _close_text(code, pd.Series(pd.NA, index=c.index, dtype="string")).where(code.notna(), "")
    path = c["path"].astype("string").fillna("")
    parts = [c["host"].astype("string").fillna("") + path]
    for col, fmt in (("h2_stream_id", "HTTP/2 stream {}"), ("subprotocol", "subprotocol {}"),
                     ("compression", "{}"), ("failure_reason", "{}")):
        v = c[col].astype("string")
        parts.append(v.map(fmt.format, na_action="ignore").astype("string").fillna(""))
    parts.append(_tls_text(c))
    info = parts[0]
    for p in parts[1:]:
        info = info + p.where(p == "", "; " + p)
    rows["info"] = info.str.removeprefix("; ")
    columns = ["conn_id", "time", "duration", "client_endpoint", "server_endpoint", "draft", "http_status",
               "messages", "close", "close_status", "info"]
    return View(rows, columns if len(a.captures) <= 1 else ["capture", *columns],
                {"conn_id": "conn", "client_endpoint": "client", "server_endpoint": "server",
                 "http_status": "http", "close_status": "status"},
                {"conn": "conn_id", "status": "close_status", "http": "http_status"}, ts="start")


def _tls_text(c: pd.DataFrame) -> pd.Series:
    """'TLS 1.3 TLS_AES_128_GCM_SHA256 sni example.com alpn http/1.1', and why it was not decrypted
    ("" on plain TCP)."""
    empty = pd.Series("", index=c.index, dtype="string")
    if "transport" not in c.columns:
        return empty
    tls = (c["transport"] == "tls").fillna(False).to_numpy(dtype=bool)
    text = c["tls_version"].astype("string").fillna("TLS (version unknown)")
    for col, fmt in (("tls_cipher", " {}"), ("sni", " sni {}"), ("alpn", " alpn {}")):
        text = text + c[col].astype("string").map(fmt.format, na_action="ignore").astype("string").fillna("")
    why = c["not_decrypted"].astype("string")
    undecrypted = ~c["decrypted"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    text = text.where(~undecrypted, text + "; NOT DECRYPTED: " + why.fillna("unknown reason"))
    return text.where(tls, empty)


def problems_view(a: Any, origin: pd.Timestamp | None) -> View:
    """Every problem row, in capture order."""
    p = a.problems.reset_index(drop=True)
    order = np.lexsort((p["frame_no"].fillna(0).to_numpy(dtype="int64"),))
    p = p.iloc[order].reset_index(drop=True)
    rows = p.copy()
    rows["time"] = timefmt.seconds(p["ts"], origin)
    rows["direction"] = _direction(p["sender"])
    columns = ["frame_no", "time", "conn_id", "direction", "kind", "detail"]
    return View(rows, columns if len(a.captures) <= 1 else ["capture", *columns],
                {"frame_no": "frame", "conn_id": "conn"}, {"frame": "frame_no", "conn": "conn_id"})


def follow_view(a: Any, conn: int, origin: pd.Timestamp | None, payload: str = "text") -> View:
    """One connection as a transcript: its data messages and control frames in capture order, each
    with its payload shown as `payload` (text, json or hex; the preview where none was kept)."""
    m = a.messages[a.messages["conn_id"] == conn]
    f = a.frames[(a.frames["conn_id"] == conn) & (a.frames["opcode"] >= 8)]
    shown = payload_texts(a, m, payload)
    msgs = pd.DataFrame({
        "frame_no": m["last_frame_no"].to_numpy(), "ts": m["ts_end"].to_numpy(),
        "sender": m["sender"].astype("object").to_numpy(), "type": m["type"].astype("object").to_numpy(),
        "message_id": m["message_id"].astype("Int64").to_numpy(), "size": m["size"].to_numpy(),
        "complete": m["complete"].to_numpy(dtype=bool), "payload": shown.to_numpy()})
    ctrl_text = _close_text(f["close_code"], f["close_reason"]).where(f["opcode"] == 8, "")
    ctrl = pd.DataFrame({
        "frame_no": f["frame_no"].to_numpy(), "ts": f["ts"].to_numpy(),
        "sender": f["sender"].astype("object").to_numpy(),
        "type": f["opcode_name"].astype("object").to_numpy(),
        "message_id": pd.array([None] * len(f), dtype="Int64"), "size": f["payload_len"].to_numpy(),
        "complete": f["complete"].to_numpy(dtype=bool), "payload": ctrl_text.astype("string").to_numpy()})
    parts = [p for p in (msgs, ctrl) if len(p)]
    rows = pd.concat(parts, ignore_index=True) if parts else msgs
    rows = rows.sort_values(["frame_no"], kind="stable").reset_index(drop=True)
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
    rows.insert(0, "conn_id", conn)
    rows["time"] = timefmt.seconds(rows["ts"], origin)
    rows["direction"] = _direction(rows["sender"])
    mark = pd.Series(np.where(rows["complete"].to_numpy(dtype=bool), "", "INCOMPLETE "), index=rows.index,
                     dtype="string")
    rows["payload"] = mark + rows["payload"].astype("string").fillna("")
    columns = ["frame_no", "time", "direction", "type", "size", "payload"]
    return View(rows, columns, {"frame_no": "frame"}, {"frame": "frame_no", "conn": "conn_id"})


def payload_texts(a: Any, keys: pd.DataFrame, mode: str) -> pd.Series:
    """Per row of `keys` (conn_id, message_id), that message's payload shown as `mode` (text, json,
    hex); where it was not kept, its preview and "(payload not kept)"; "" for rows without one."""
    m = a.messages[["conn_id", "message_id", "type", "preview", "payload"]].astype({"message_id": "Int64"})
    j = keys[["conn_id", "message_id"]].astype("Int64").merge(m, on=["conn_id", "message_id"], how="left")
    texts = []
    for mid, kind, preview, data in zip(j["message_id"].tolist(), j["type"].tolist(), j["preview"].tolist(),
                                        j["payload"].tolist()):
        if mid is pd.NA or mid is None:
            texts.append("")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            texts.append(render_payload(bytes(data), kind == "binary", mode))
        else:
            texts.append(f"{preview} (payload not kept)" if isinstance(preview, str) and preview
                         else "(payload not kept)")
    return pd.Series(pd.array(texts, dtype="string"), index=keys.index)


def follow_header(a: Any, conn: int) -> str:
    """The transcript's first line: endpoints, draft, request and what was negotiated."""
    c = a.connections[a.connections["conn_id"] == conn]
    if c.empty:
        return f"connection {conn}"
    r = c.iloc[0]
    client = _endpoint(c["client"], c["client_port"]).iloc[0]
    server = _endpoint(c["server"], c["server_port"]).iloc[0]
    bits = [f"connection {conn}: {client} → {server}", str(r["draft"])]
    if pd.notna(r["http_status"]):
        bits.append(f"HTTP {int(r['http_status'])}")
    for col in ("host", "path", "subprotocol", "extensions"):
        if pd.notna(r[col]) and str(r[col]):
            bits.append(f"{col} {r[col]}")
    if pd.notna(r["close_code"]):
        bits.append(f"closed {int(r['close_code'])} {close_code_name(int(r['close_code']))} "
                    f"({r['close_status']})")
    return ", ".join(bits)


def problem_lines_for_frames(a: Any, origin: pd.Timestamp | None) -> View:
    """Problem rows shaped as frames listing rows (opcode "problem", info "kind: detail")."""
    p = problems_view(a, origin).rows
    rows = pd.DataFrame({
        "capture": p["capture"].astype("object"), "conn_id": p["conn_id"], "frame_no": p["frame_no"],
        "ts": p["ts"], "sender": p["sender"], "time": p["time"], "direction": p["direction"],
        "opcode_name": "problem", "flags": "", "payload_len": pd.array([None] * len(p), dtype="Int64"),
        "info": (p["kind"].astype("string") + ": " + p["detail"].astype("string").fillna("")),
        "kind": p["kind"], "detail": p["detail"]})
    return View(rows, [], {}, {"frame": "frame_no", "conn": "conn_id", "length": "payload_len"})


def interleave(frames: View, problems: View) -> pd.DataFrame:
    """Frame rows and problem rows in capture order (a problem after the frames of its record)."""
    both = pd.concat([frames.rows.assign(_problem=0), problems.rows.assign(_problem=1)], ignore_index=True)
    key = both["frame_no"].astype("Float64").fillna(np.inf).to_numpy(dtype="float64")
    order = np.lexsort((both["_problem"].to_numpy(), key))
    return both.iloc[order].drop(columns="_problem").reset_index(drop=True)


def _ranges(ids: list[int]) -> str:
    """1, 2, 3, 5 → "1-3, 5"."""
    out, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


__all__ = [
    "ARROWS",
    "Selection",
    "SelectionError",
    "View",
    "check_conns",
    "connections_view",
    "conns_of_hosts",
    "follow_header",
    "follow_view",
    "frames_view",
    "interleave",
    "messages_view",
    "parse_when",
    "payload_texts",
    "problem_lines_for_frames",
    "problems_view",
]
