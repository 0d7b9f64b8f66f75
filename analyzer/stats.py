"""Aggregates over the four DataFrames: the headline `Summary` and the tidy close-code, version and
timeline tables.

Everything here is vectorised pandas over whole columns and works on an empty Analysis (counts are
0, percentiles None). Nothing is computed per packet or per row in Python.
"""

from __future__ import annotations

import html
import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzer.protocol import CLOSE_CODE_CLASSES, close_code_class, close_code_name

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: timeline() fills empty buckets with zeros only up to this many buckets (beyond: sparse rows).
TIMELINE_MAX_FILLED_BUCKETS = 1_000_000

CLOSE_SENDERS = ("client", "server", "none")

#: C0 and C1 control characters, DEL: shown as \xNN so captured text cannot drive a terminal; the
# Unicode bidi controls as \uNNNN so captured text cannot reorder what is shown around it.
# U+2028/2029 too: str.splitlines() and some viewers break lines there.
_BIDI = (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
CONTROL_ESCAPES.update({c: f"\\u{c:04x}" for c in _BIDI})
# What JSON leaves raw (json.dumps escapes only C0, quotes and backslashes): DEL, C1 and the bidi
# controls, written as \uNNNN escapes so the JSON stays the same data but is safe on a terminal.
_JSON_UNSAFE = re.compile("[\x7f-\x9f" + "".join(chr(c) for c in _BIDI) + "]")

#: Message rates are only stated over at least this many seconds (shorter spans give absurd rates).
MIN_RATE_SPAN_S = 1.0


def printable(text: object) -> str:
    """`text` with control characters escaped (\\xNN): safe to print on a terminal."""
    return str(text).translate(CONTROL_ESCAPES)


def json_safe(text: str) -> str:
    """JSON text with DEL, C1 and bidi control characters written as \\uNNNN escapes (same data)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# --- helpers ------------------------------------------------------------------------------------

def _counts(series: pd.Series, *, all_categories: bool = False) -> dict[str, int]:
    """Value counts as a plain {str: int} dict, most frequent first (categories in order if asked)."""
    if all_categories and isinstance(series.dtype, pd.CategoricalDtype):
        vc = series.value_counts(sort=False)
        return {str(k): int(v) for k, v in vc.items()}
    vc = series.dropna().value_counts()
    return {str(k): int(v) for k, v in vc.items() if v}


def _percentiles(values: pd.Series, scale: float = 1.0) -> dict[str, float | int | None]:
    """n, p50, p90, p99 and max of the non-null values (times `scale`); None when there are none."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64") * scale
    if v.size == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": int(v.size), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(v.max())}


percentiles = _percentiles  # public name, for analyzer.app.stats


def _int_sum(series: pd.Series) -> int:
    return int(series.sum()) if len(series) else 0


def _iso(ts: Any) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


# --- tidy tables --------------------------------------------------------------------------------

def close_codes(a: Analysis) -> pd.DataFrame:
    """Close codes, one row per (code, sender): columns code, name, class, sender, count.

    Two sources, told apart by `sender`:
      * "client"/"server": every close frame in `a.frames` by its sender. A close frame with an
        empty payload (and a hixie closing frame) counts as 1005 "No status received", what
        the application at the other end sees.
      * "none": connections that ended with no close frame at all (close_status "abnormal"), with
        their `connections.close_code` (1006 "Abnormal closure"). Connections still open at the
        end of the capture and failed handshakes are not counted.
    """
    f = a.frames
    closes = f.loc[f["opcode"] == 8, ["close_code", "sender"]]
    frame_part = pd.DataFrame({
        "code": closes["close_code"].fillna(1005).astype("int64").to_numpy(),
        "sender": closes["sender"].astype("object").to_numpy(),
    })
    c = websocket_rows(a.connections)
    abnormal = c.loc[(c["close_status"] == "abnormal") & c["close_code"].notna(), "close_code"]
    conn_part = pd.DataFrame({"code": abnormal.astype("int64").to_numpy(), "sender": "none"})
    both = pd.concat([frame_part, conn_part], ignore_index=True)
    both["sender"] = pd.Categorical(both["sender"], categories=CLOSE_SENDERS)
    out = both.groupby(["code", "sender"], observed=True).size().rename("count").reset_index()
    codes = out["code"].astype("int64")
    uniq = codes.unique()
    names = {int(k): close_code_name(int(k)) for k in uniq}
    classes = {int(k): close_code_class(int(k)) for k in uniq}
    result = pd.DataFrame({
        "code": codes,
        "name": codes.map(names).astype("string"),
        "class": pd.Categorical(codes.map(classes), categories=CLOSE_CODE_CLASSES),
        "sender": pd.Categorical(out["sender"].astype("object"), categories=CLOSE_SENDERS),
        "count": out["count"].astype("int64"),
    })
    return result.sort_values(["code", "sender"], kind="stable").reset_index(drop=True)


def websocket_rows(c: pd.DataFrame) -> pd.DataFrame:
    """The connections rows that are WebSocket (the table also lists every TLS connection, so that
    nothing encrypted is hidden, WebSocket inside or not)."""
    if "websocket" not in c.columns or bool(c["websocket"].all()):
        return c
    return c.loc[c["websocket"].to_numpy(dtype=bool)]


def tls_counts(c: pd.DataFrame) -> dict[str, Any]:
    """TLS connections: how many, decrypted, not decrypted and why (reason → count, most first)."""
    if "transport" not in c.columns:
        return {"tls": 0, "decrypted": 0, "not_decrypted": 0, "why_not": {}, "versions": {}}
    tls = c.loc[(c["transport"] == "tls").to_numpy(dtype=bool)]
    decrypted = tls["decrypted"].eq(True).fillna(False).to_numpy(dtype=bool)
    why = tls.loc[~decrypted, "not_decrypted"].astype("object").fillna("unknown reason")
    counts = why.value_counts()
    return {"tls": len(tls), "decrypted": int(decrypted.sum()), "not_decrypted": int((~decrypted).sum()),
            "why_not": {str(k): int(v) for k, v in zip(counts.index.tolist(), counts.tolist())},
            "versions": _counts(tls["tls_version"])}


def versions(a: Analysis) -> pd.DataFrame:
    """WebSocket connections by protocol version and draft: version, draft, connections, failed.

    `failed` counts connections whose handshake failed (handshake_ok False).
    """
    c = a.connections
    df = pd.DataFrame({
        "version": c["version"].astype("int64"),
        "draft": c["draft"].astype("object").fillna("unknown"),
        "failed": c["handshake_ok"].eq(False).fillna(False).astype("int64"),
    })
    out = df.groupby(["version", "draft"]).agg(connections=("failed", "size"), failed=("failed", "sum"))
    out = out.reset_index()
    return pd.DataFrame({
        "version": out["version"].astype("int64"),
        "draft": out["draft"].astype("object").astype("string"),
        "connections": out["connections"].astype("int64"),
        "failed": out["failed"].astype("int64"),
    })


def timeline(a: Analysis, freq: str = "1s") -> pd.DataFrame:
    """Traffic per time bucket and sender: columns ts, sender, frames, messages, bytes.

    `ts` is the bucket start (frames by their `ts`, messages by `ts_end`, the time they completed);
    `bytes` are WebSocket bytes on the wire (frame headers + payloads). Buckets with no traffic
    between the first and the last are present with zeros, unless there would be more than
    TIMELINE_MAX_FILLED_BUCKETS of them (then only buckets with traffic are listed).

    Raises:
        ValueError: `freq` is not a fixed pandas frequency ("100ms", "1s", "5min"…).
    """
    f, m = a.frames, a.messages
    senders = pd.CategoricalDtype(["client", "server"])
    fr = pd.DataFrame({
        "ts": f["ts"].dt.floor(freq),
        "sender": f["sender"].astype(senders),
        "frames": np.ones(len(f), dtype="int64"),
        "bytes": (f["payload_len"] + f["header_len"].astype("int64")).astype("int64"),
    }).groupby(["ts", "sender"], observed=True).sum()
    ms = pd.DataFrame({
        "ts": m["ts_end"].dt.floor(freq),
        "sender": m["sender"].astype(senders),
        "messages": np.ones(len(m), dtype="int64"),
    }).groupby(["ts", "sender"], observed=True).sum()
    out = fr.join(ms, how="outer").fillna(0)
    if len(out):
        stamps = out.index.get_level_values("ts")
        grid = pd.date_range(stamps.min(), stamps.max(), freq=freq)
        if len(grid) * 2 <= TIMELINE_MAX_FILLED_BUCKETS:
            sides = pd.CategoricalIndex(["client", "server"], dtype=senders)
            full = pd.MultiIndex.from_product([grid, sides], names=["ts", "sender"])
            out = out.reindex(full, fill_value=0)
    out = out.reset_index()
    ts = out["ts"] if len(out) else pd.Series([], dtype="datetime64[ns, UTC]")
    return pd.DataFrame({
        "ts": ts.astype("datetime64[ns, UTC]"),
        "sender": out["sender"].astype(senders) if len(out) else pd.Categorical([], dtype=senders),
        "frames": out["frames"].astype("int64") if len(out) else np.zeros(0, "int64"),
        "messages": out["messages"].astype("int64") if len(out) else np.zeros(0, "int64"),
        "bytes": out["bytes"].astype("int64") if len(out) else np.zeros(0, "int64"),
    })


# --- the summary --------------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _fmt_counts(d: dict[str, int], empty: str = "none", quote: bool = False) -> str:
    """'a 3, b 1'; with quote (for captured strings that may hold spaces and digits): '“a b” ×3'."""
    items = [f"“{printable(k)}” ×{v:,}" if quote else f"{printable(k)} {v:,}" for k, v in d.items()]
    return ", ".join(items) if items else empty


def _fmt_pct(p: dict[str, Any], unit: str, digits: int = 1) -> str:
    if not p["n"]:
        return "no data"
    def f(x: float) -> str:
        return f"{x:,.{digits}f}"
    return (f"p50 {f(p['p50'])} {unit}, p90 {f(p['p90'])} {unit}, p99 {f(p['p99'])} {unit}, "
            f"max {f(p['max'])} {unit} (n={p['n']:,})")


class Summary:
    """Headline statistics of an Analysis: str() for text, to_dict() for JSON, HTML in Jupyter.

    The numbers are in `data` (the same dict `to_dict()` returns); see `summary()` for the keys.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (plain ints, floats, strings, None, lists and dicts)."""
        plain: dict[str, Any] = json.loads(json.dumps(self.data))
        return plain

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) pairs: the lines of the text form, also used by the HTML forms."""
        d = self.data
        caps = ", ".join(printable(c["name"]) for c in d["captures"]) or "none"
        rows = [
            ("Captures", f"{caps} ({_plural(d['packets'], 'packet')}, "
                         f"{_plural(d['tcp_connections'], 'TCP connection')}, "
                         f"{_fmt_bytes(d['capture_bytes'])})"),
        ]
        if d["start"] is not None:
            rows.append(("Time", f"{d['start']} to {d['end']} ({d['duration_s']:,.3f} s)"))
        failed = d["failed_handshakes"]
        rows += [
            ("WebSocket connections", f"{d['websocket_connections']:,} "
                                      f"({_fmt_counts(d['connections_by_draft'])}); "
                                      f"{failed:,} failed handshake{'s' if failed != 1 else ''}"
                                      + _by_transport(d.get("connections_by_transport") or {})),
        ]
        tls = d.get("tls") or {}
        if tls.get("tls"):
            why = "; ".join(f"{n:,} {reason}" for reason, n in tls["why_not"].items())
            rows.append(("TLS connections", f"{tls['tls']:,} ({_fmt_counts(tls['versions'])}); "
                                            f"{tls['decrypted']:,} decrypted"
                                            + (f", {tls['not_decrypted']:,} not: {why} — decrypt "
                                               "with --keylog FILE" if tls["not_decrypted"] else "")))
        rows += [
            ("Frames", f"{d['frames']:,} — {_fmt_counts(d['frames_by_opcode'])} — by "
                       f"{_fmt_counts(d['frames_by_sender'])}"),
            ("Messages", f"{d['messages']:,} — {_fmt_counts(d['messages_by_type'])} — by "
                         f"{_fmt_counts(d['messages_by_sender'])}"),
            ("Bytes on the wire", f"{_fmt_bytes(d['bytes_on_wire'])} (client "
                                  f"{_fmt_bytes(d['bytes_on_wire_by_sender']['client'])}, server "
                                  f"{_fmt_bytes(d['bytes_on_wire_by_sender']['server'])}), "
                                  "frame headers included"),
            ("Message bytes", f"{_fmt_bytes(d['message_bytes_wire'])} on the wire, "
                              f"{_fmt_bytes(d['message_bytes'])} after decompression"),
        ]
        if d["compression_ratio"] is not None:
            rows.append(("Compression", f"{d['compressed_messages']:,} compressed messages, ratio "
                                        f"{d['compression_ratio']:.2f} (decompressed / wire)"))
        codes = ", ".join(f"{c['code']} {c['name']} ({c['class']}) ×{c['count']:,}" for c in d["close_codes"])
        rows += [
            ("Close status", _fmt_counts(d["close_status"])),
            ("Closed first by", _fmt_counts(d["close_initiator"])),
            ("Close codes", codes or "none"),
            ("Subprotocols", _fmt_counts(d["subprotocols"], quote=True)),
            ("Extensions", _fmt_counts(d["extensions"], quote=True)),
            ("Problems", f"{d['problems']:,}"
             + (f" — {_fmt_counts(d['problems_by_kind'])}" if d["problems"] else "")),
            ("Message size", _fmt_pct(d["message_size"], "B", 0)),
            ("Ping RTT", _fmt_pct(d["ping_rtt_ms"], "ms", 3)),
            ("Handshake RTT", _fmt_pct(d["handshake_rtt_ms"], "ms", 3)),
            ("Message rate", f"n/a (messages span under {MIN_RATE_SPAN_S:g} s)"
             if d["messages_per_second"] is None and d["messages"]
             else "-" if d["messages_per_second"] is None
             else f"{d['messages_per_second']:,.2f} messages/s"),
        ]
        if d.get("app_messages"):
            rows += _app_rows(d)
        return rows

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def __repr__(self) -> str:
        d = self.data
        return (f"<Summary: {d['websocket_connections']} WebSocket connections, {d['frames']} frames, "
                f"{d['messages']} messages, {d['problems']} problems>")

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left;vertical-align:top'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in self.rows())
        return f"<table class='ws-summary'>{body}</table>"


def _app_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The application-protocol lines of the summary (only shown when there are app messages)."""
    n = d["exchanges"]
    rows = [("Application protocols", f"{d['app_messages']:,} application messages — "
                                      f"{_fmt_counts(d['app_messages_by_protocol'])}")]
    if n:
        rows += [("Exchanges", f"{n:,} requests: {d['exchanges_answered']:,} answered, "
                               f"{d['exchanges_unanswered']:,} unanswered, "
                               f"{d['exchanges_errors']:,} answered with an error"),
                 ("Exchange latency", _fmt_pct(d["exchange_latency_ms"], "ms", 3))]
    return rows


def _by_transport(counts: dict[str, int]) -> str:
    """'; over tcp 2, h2 3' when anything but plain TCP carried WebSockets, else ''."""
    shown = {k: v for k, v in counts.items() if v}
    if not shown or set(shown) == {"tcp"}:
        return ""
    return "; over " + _fmt_counts(shown)


def summary(a: Analysis) -> Summary:
    """Headline statistics of `a`.

    Keys of `Summary.data`: captures, packets, tcp_connections, capture_bytes, start, end,
    duration_s, websocket_connections, connections_by_draft, connections_by_transport (tcp, tls, h2,
    h2c), failed_handshakes, frames, tls (TLS
    connections: tls, decrypted, not_decrypted, why_not: reason → count, versions),
    frames_by_opcode, frames_by_sender, messages, messages_by_type, messages_by_sender,
    bytes_on_wire (WebSocket bytes after the handshake, headers included), bytes_on_wire_by_sender,
    message_bytes_wire, message_bytes (after decompression), compressed_messages,
    compression_ratio (decompressed / wire over compressed messages; None without any),
    close_codes (what applications saw: connections.close_code), close_status, close_initiator,
    subprotocols, extensions, compression, problems, problems_by_kind, message_size (bytes),
    ping_rtt_ms, handshake_rtt_ms (n/p50/p90/p99/max), messages_per_second (messages over the
    time from the first message's start to the last one's end; None when that span is under
    MIN_RATE_SPAN_S, where a rate would be an artefact of two timestamps); and for the
    application protocols (analyzer.app.stats.summary_data): app_messages, app_messages_by_protocol,
    exchanges, exchanges_answered, exchanges_unanswered, exchanges_errors, exchange_latency_ms.
    """
    from analyzer.app.stats import summary_data

    c, f, m, p = websocket_rows(a.connections), a.frames, a.messages, a.problems
    caps = [{"name": str(ci.name), "path": str(ci.path), "packets": int(ci.packets),
             "tcp_connections": int(ci.tcp_connections), "bytes": int(ci.bytes)} for ci in a.captures]
    starts = [s for s in (c["start"].min(), f["ts"].min(), m["ts_start"].min()) if not pd.isna(s)]
    ends = [e for e in (c["end"].max(), f["ts"].max(), m["ts_end"].max()) if not pd.isna(e)]
    start = min(starts) if starts else None
    end = max(ends) if ends else None

    code_counts = c["close_code"].dropna().astype("int64").value_counts().sort_index()
    close_list = [{"code": int(k), "name": close_code_name(int(k)), "class": close_code_class(int(k)),
                   "count": int(v)} for k, v in zip(code_counts.index.tolist(), code_counts.tolist())]
    initiator = {"client": 0, "server": 0, "none": 0}
    initiator.update(_counts(c["close_initiator"], all_categories=True))
    initiator["none"] = int(c["close_initiator"].isna().sum())

    comp = m.loc[m["compressed"], ["wire_bytes", "size"]]  # two columns, not a copy of the table
    comp_wire = _int_sum(comp["wire_bytes"])
    ratio = _int_sum(comp["size"]) / comp_wire if comp_wire else None

    if len(m):
        span = (m["ts_end"].max() - m["ts_start"].min()).total_seconds()
        rate = len(m) / span if span >= MIN_RATE_SPAN_S else None
    else:
        rate = None

    data: dict[str, Any] = {
        "captures": caps,
        "packets": sum(ci["packets"] for ci in caps),
        "tcp_connections": sum(ci["tcp_connections"] for ci in caps),
        "capture_bytes": sum(ci["bytes"] for ci in caps),
        "start": _iso(start),
        "end": _iso(end),
        "duration_s": (end - start).total_seconds() if start is not None and end is not None else None,
        "websocket_connections": len(c),
        "connections_by_draft": _counts(c["draft"]),
        "connections_by_transport": _counts(c["transport"]) if "transport" in c.columns else {},
        "failed_handshakes": int(c["handshake_ok"].eq(False).fillna(False).sum()),
        "frames": len(f),
        "frames_by_opcode": _counts(f["opcode_name"]),
        "frames_by_sender": _counts(f["sender"], all_categories=True),
        "messages": len(m),
        "messages_by_type": _counts(m["type"], all_categories=True),
        "messages_by_sender": _counts(m["sender"], all_categories=True),
        "bytes_on_wire": _int_sum(c["bytes_client"]) + _int_sum(c["bytes_server"]),
        "bytes_on_wire_by_sender": {"client": _int_sum(c["bytes_client"]),
                                    "server": _int_sum(c["bytes_server"])},
        "message_bytes_wire": _int_sum(m["wire_bytes"]),
        "message_bytes": _int_sum(m["size"]),
        "compressed_messages": len(comp),
        "compression_ratio": ratio,
        "close_codes": close_list,
        "close_status": _counts(c["close_status"], all_categories=True),
        "close_initiator": initiator,
        "subprotocols": _counts(c["subprotocol"]),
        "extensions": _counts(c["extensions"]),
        "compression": _counts(c["compression"]),
        "problems": len(p),
        "problems_by_kind": _counts(p["kind"]),
        "message_size": _percentiles(m["size"]),
        "ping_rtt_ms": _percentiles(f["rtt"], 1000.0),
        "handshake_rtt_ms": _percentiles(c["handshake_rtt"], 1000.0),
        "messages_per_second": rate,
        "tls": tls_counts(a.connections),
        **summary_data(a),
    }
    return Summary(data)


__all__ = ["CLOSE_SENDERS", "MIN_RATE_SPAN_S", "Summary", "close_codes", "json_safe", "percentiles",
           "printable", "summary", "timeline", "tls_counts", "versions", "websocket_rows"]
