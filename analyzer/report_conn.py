"""The report's page per connection (conn/<id>.html): its handshake fields as the tables keep them
(already redacted there), a timeline table, its messages as a transcript and its problems linked
to their frames.

The tables are split by connection once (groupby indices), not filtered per page; a page holds
at most MAX_TRANSCRIPT messages and MAX_PROBLEMS problems (all are in the CSV files).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzer import stats, timefmt
from analyzer.report_tables import Links, display_table

if TYPE_CHECKING:
    from analyzer.api import Analysis

#: messages shown in a connection's transcript, problems in its problem table
MAX_TRANSCRIPT = 1000
MAX_PROBLEMS = 500
#: application exchanges (request → response) shown on a connection's page
MAX_EXCHANGES = 1000

# (label, column) of the handshake, as kept in the connections table
REQUEST_FIELDS = [("Host", "host"), ("Path", "path"), ("Origin", "origin"), ("User-Agent", "user_agent"),
                  ("Subprotocols offered", "subprotocols_offered"),
                  ("Extensions offered", "extensions_offered"),
                  ("Versions supported", "versions_supported"), ("Cookies present", "cookies_present"),
                  ("Draft", "draft"), ("Version", "version"), ("Transport", "transport"),
                  ("HTTP/2 stream", "h2_stream_id"), ("TLS version", "tls_version"),
                  ("TLS cipher", "tls_cipher"), ("SNI", "sni"), ("ALPN", "alpn"), ("Decrypted", "decrypted"),
                  ("Not decrypted", "not_decrypted")]
RESPONSE_FIELDS = [("HTTP status", "http_status"), ("Server", "server_software"),
                   ("Subprotocol", "subprotocol"), ("Extensions", "extensions"),
                   ("Compression", "compression"),
                   ("Accept key valid", "accept_valid"), ("Handshake ok", "handshake_ok"),
                   ("Failure reason", "failure_reason"), ("Handshake RTT", "handshake_rtt")]
CLOSE_FIELDS = [("Close status", "close_status"), ("Closed first by", "close_initiator"),
                ("Close code (application saw)", "close_code"), ("Client close code", "close_code_client"),
                ("Client close reason", "close_reason_client"), ("Server close code", "close_code_server"),
                ("Server close reason", "close_reason_server"), ("TCP end", "tcp_end"),
                ("TCP gaps", "tcp_gaps")]

_TRANSCRIPT = ["time", "direction", "type", "size", "wire_bytes", "frames", "compressed", "complete",
               "preview"]
_PROBLEMS = ["frame_no", "time", "sender", "kind", "detail"]
_EXCHANGES = ["exchange_id", "time", "protocol", "method", "correlation_id", "latency_ms", "status",
              "answered", "request_message_id", "response_message_id"]
_DIRECTION = {"client": "client → server", "server": "server → client"}


def _text(v: Any) -> str:
    """One value as the tables show it (see report_tables.cell_strings), without a pandas call."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, pd.Timedelta):
        return f"{v.total_seconds():.6f} s"
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}"
    return stats.printable(v)


def _fields(row: pd.Series, fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, display text) of one connection's row for the columns present."""
    return [(label, _text(row[col]) or "—") for label, col in fields if col in row.index]


def _timeline(conn: pd.DataFrame, closes: pd.DataFrame, msgs: pd.DataFrame,
              origin: pd.Timestamp | None) -> pd.DataFrame:
    """The connection's moments in time order: TCP start, request, response, first and last
    message, close frames, end."""
    r = conn.iloc[0]
    events: list[tuple[str, Any]] = [("first packet of the TCP connection", r.get("start"))]
    if "request_ts" in conn.columns and not pd.isna(r["request_ts"]):
        events.append(("handshake request", r["request_ts"]))
        if not pd.isna(r.get("handshake_rtt")):
            events.append((f"handshake response (HTTP {stats.printable(r.get('http_status'))})",
                           r["request_ts"] + pd.to_timedelta(float(r["handshake_rtt"]), unit="s")))
    if len(msgs):
        events.append((f"first message ({_DIRECTION.get(str(msgs['sender'].iloc[0]), '')})",
                       msgs["ts_start"].min()))
        events.append((f"last message ({len(msgs):,} in all)", msgs["ts_end"].max()))
    for ts, sender, code in zip(closes["ts"], closes["sender"].astype("object"), closes["close_code"]):
        code_text = "" if pd.isna(code) else f", code {int(code)}"
        events.append((f"close frame from the {sender}{code_text}", ts))
    events.append(("last packet", r.get("end")))
    df = pd.DataFrame({"event": [e for e, _ in events],
                       "at": pd.to_datetime(pd.Series([t for _, t in events], dtype="object"), utc=True)})
    df = df[df["at"].notna()].sort_values("at", kind="stable")
    df.insert(0, "time", timefmt.seconds(df["at"], origin).round(6))
    return df.reset_index(drop=True)


def _transcript(msgs: pd.DataFrame, origin: pd.Timestamp | None) -> pd.DataFrame:
    return pd.DataFrame({
        "time": timefmt.seconds(msgs["ts_start"], origin).round(6),
        "direction": msgs["sender"].astype("object").map(_DIRECTION),
        **{c: msgs[c] for c in _TRANSCRIPT[2:] if c in msgs.columns},
    })


def pages(a: Analysis, conn_ids: list[int], origin: pd.Timestamp | None,
          links: Links) -> Iterator[tuple[int, dict[str, Any]]]:
    """(conn id, template context) for each of `conn_ids`, in that order."""
    c, f, m, p = a.connections, a.frames, a.messages, a.problems
    conn_rows = c.groupby("conn_id", sort=False).indices
    msg_rows = m.groupby("conn_id", sort=False).indices
    prob_rows = p.groupby("conn_id", sort=False).indices
    close_frames = f.loc[f["opcode"] == 8, ["conn_id", "ts", "sender", "close_code"]]
    close_rows = close_frames.groupby("conn_id", sort=False).indices
    ex = _exchanges(a)
    ex_rows = ex.groupby("conn_id", sort=False).indices
    none = np.zeros(0, dtype="int64")
    for cid in conn_ids:
        conn = c.iloc[conn_rows[cid][:1]]
        msgs = m.iloc[msg_rows.get(cid, none)]
        probs = p.iloc[prob_rows.get(cid, none)]
        closes = close_frames.iloc[close_rows.get(cid, none)]
        row = conn.iloc[0]
        probs = probs.assign(time=timefmt.seconds(probs["ts"], origin).round(6))
        yield cid, {
            "conn_id": cid,
            "endpoints": stats.printable(f"{row['client']}:{row['client_port']} → "
                                         f"{row['server']}:{row['server_port']}"),
            "request": _fields(row, REQUEST_FIELDS),
            "response": _fields(row, RESPONSE_FIELDS),
            "close": _fields(row, CLOSE_FIELDS),
            "timeline": display_table(_timeline(conn, closes, msgs, origin), None, 10_000, None,
                                      name="timeline", links=links),
            "transcript": display_table(_transcript(msgs, origin), _TRANSCRIPT, MAX_TRANSCRIPT,
                                        "../tables/messages.csv", name="transcript", links=links),
            "problems": display_table(probs, _PROBLEMS, MAX_PROBLEMS, "../tables/problems.csv",
                                      name="problems", links=links),
            "exchanges": display_table(_exchange_view(ex.iloc[ex_rows.get(cid, none)], origin), _EXCHANGES,
                                       MAX_EXCHANGES, "../tables/exchanges.csv", name="exchanges",
                                       links=links),
        }


def _exchanges(a: Analysis) -> pd.DataFrame:
    """The exchanges with their methods named (analyzer.app.stats.exchanges); none without app data."""
    if a.exchanges.empty:
        return a.exchanges
    from analyzer.app import stats as app_stats
    return app_stats.exchanges(a)


def _exchange_view(ex: pd.DataFrame, origin: pd.Timestamp | None) -> pd.DataFrame:
    """A connection's exchanges as its page shows them: time since the capture start, latency in ms."""
    return ex.assign(time=timefmt.seconds(ex["ts_request"], origin).round(6),
                     latency_ms=ex["latency"].astype("float64") * 1000.0)


__all__ = ["MAX_EXCHANGES", "MAX_PROBLEMS", "MAX_TRANSCRIPT", "pages"]
