"""The four DataFrames: their columns, dtypes and one line of doc each, and the builder that fills them.

Rows are appended as plain tuples while the capture streams (no pandas work per packet); each
DataFrame is made once, column by column, when the analysis ends. The schemas below are the
contract of shared/DESIGN.md that tests and notebooks rely on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.protocol import OPCODE_NAMES

# (column, dtype, doc). dtypes: "ts" datetime64[ns, UTC] from int ns; "td" timedelta64[ns] from
# int ns; "cat:a,b" a categorical with those categories; "cat" a categorical of what appears;
# "Int64"/"boolean"/"string" pandas nullable types; numpy names otherwise; "object" kept as is.
FRAME_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file the frame came from"),
    ("conn_id", "int64", "connection id (unique within the analysis)"),
    ("frame_no", "int64", "capture record number of the packet that completed the frame (1-based)"),
    ("ts", "ts", "capture time of that packet"),
    ("sender", "cat:client,server", "who sent the frame"),
    ("opcode", "int8", "RFC 6455 opcode (hybi-04..06 and hixie frames mapped to today's numbers)"),
    ("opcode_name", "cat:" + ",".join(OPCODE_NAMES),
     "continuation, text, binary, close, ping, pong, reserved-N"),
    ("fin", "bool", "FIN bit"),
    ("rsv1", "bool", "RSV1 bit (permessage-deflate: first frame of a compressed message)"),
    ("rsv2", "bool", "RSV2 bit"),
    ("rsv3", "bool", "RSV3 bit"),
    ("masked", "bool", "MASK bit"),
    ("payload_len", "int64", "payload length on the wire (after compression, before unmasking)"),
    ("header_len", "int16", "frame header length in bytes (0 for hixie frames' delimiters)"),
    ("compressed", "bool", "the frame belongs to a compressed message (or is a compressed deflate-frame)"),
    ("close_code", "Int64", "status code of a close frame; null when its payload is empty or not a close"),
    ("close_reason", "string", "reason text of a close frame"),
    ("message_id", "Int64", "the data message this frame belongs to; null for control frames"),
    ("rtt", "float64", "for a pong answering an earlier ping with the same payload: seconds since the ping"),
)

MESSAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file"),
    ("conn_id", "int64", "connection id"),
    ("message_id", "int64", "message id, unique within the connection (both senders share the count)"),
    ("sender", "cat:client,server", "who sent the message"),
    ("type", "cat:text,binary", "text or binary"),
    ("ts_start", "ts", "time of the packet that completed the first frame"),
    ("ts_end", "ts", "time of the packet that completed the last frame"),
    ("frames", "int64", "number of frames"),
    ("wire_bytes", "int64", "sum of the frames' payload lengths on the wire"),
    ("size", "int64", "message size after decompression"),
    ("compressed", "bool", "sent compressed (permessage-deflate or deflate-frame)"),
    ("complete", "bool", "False when the capture ended or a TCP gap cut the message"),
    ("preview", "string", "first characters (text) or hex bytes (binary)"),
    ("payload", "object", "the whole message as bytes, when analyze(payloads=True)"),
    ("first_frame_no", "int64", "record number of the first frame"),
    ("last_frame_no", "int64", "record number of the last frame"),
)

CONNECTION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file"),
    ("conn_id", "int64", "connection id"),
    ("client", "string", "client IP address"),
    ("client_port", "int64", "client TCP port"),
    ("server", "string", "server IP address"),
    ("server_port", "int64", "server TCP port"),
    ("ip_version", "int8", "4 or 6"),
    ("start", "ts", "first packet of the TCP connection"),
    ("end", "ts", "last packet seen of the TCP connection"),
    ("duration", "td", "end - start"),
    ("syn_seen", "bool", "the TCP handshake is in the capture (False: picked up mid-stream)"),
    ("version", "int64", "QWebSocketProtocol::Version: -1 unknown/hixie-75, 0, 4, 5, 6, 7, 8, 13"),
    ("draft", "cat", "hixie-75, hixie-76, hybi-01..03, hybi-04..08, rfc6455, unknown"),
    ("http_status", "Int64", "status of the handshake response; null when none was seen"),
    ("handshake_ok", "boolean", "101 with a valid upgrade; null when no handshake was seen (ports=)"),
    ("accept_valid", "boolean", "Sec-WebSocket-Accept (or hixie-76 answer) is right; null: nothing to check"),
    ("failure_reason", "string", "why the handshake failed"),
    ("host", "string", "Host header"),
    ("path", "string", "request target"),
    ("origin", "string", "Origin (or Sec-WebSocket-Origin) header"),
    ("user_agent", "string", "User-Agent header"),
    ("server_software", "string", "Server header of the response"),
    ("subprotocols_offered", "string", "Sec-WebSocket-Protocol of the request"),
    ("subprotocol", "string", "subprotocol the server chose"),
    ("extensions_offered", "string", "Sec-WebSocket-Extensions of the request"),
    ("extensions", "string", "Sec-WebSocket-Extensions the server accepted"),
    ("compression", "string", "permessage-deflate, deflate-frame… or null"),
    ("cookies_present", "bool", "the handshake carried Cookie/Set-Cookie/Authorization (values never kept)"),
    ("versions_supported", "string", "versions a 400/426 answer offered"),
    ("close_code_client", "Int64", "code in the client's close frame (1005 if empty); null: none sent"),
    ("close_code_server", "Int64", "code in the server's close frame (1005 if empty); null: none sent"),
    ("close_reason_client", "string", "reason in the client's close frame"),
    ("close_reason_server", "string", "reason in the server's close frame"),
    ("close_initiator", "cat:client,server", "who sent the first close frame"),
    ("close_code", "Int64", "what the application saw: first close frame's code, 1005 empty, 1006 none"),
    ("close_status", "cat:clean,half-closed,abnormal,open-at-end,handshake-failed",
     "how the connection ended"),
    ("tcp_end", "cat:fin,rst,open", "how the TCP connection ended"),
    ("frames_client", "int64", "frames sent by the client"),
    ("frames_server", "int64", "frames sent by the server"),
    ("messages_client", "int64", "data messages sent by the client"),
    ("messages_server", "int64", "data messages sent by the server"),
    ("bytes_client", "int64", "WebSocket bytes the client sent after the handshake (headers + payloads)"),
    ("bytes_server", "int64", "WebSocket bytes the server sent after the handshake (headers + payloads)"),
    ("handshake_rtt", "float64", "seconds from the upgrade request to the response"),
    ("tcp_gaps", "int64", "TCP gaps (bytes lost by the capture) in either direction"),
)

PROBLEM_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file"),
    ("conn_id", "Int64", "connection id; null for capture-level problems"),
    ("frame_no", "Int64", "capture record number where it was seen"),
    ("ts", "ts", "capture time where it was seen"),
    ("sender", "cat:client,server", "which side; null when not side-specific"),
    ("kind", "cat", "stable kebab-case key (analyzer.protocol.ProblemKind)"),
    ("detail", "string", "what was expected and what was found"),
)

SCHEMAS = {
    "frames": FRAME_COLUMNS,
    "messages": MESSAGE_COLUMNS,
    "connections": CONNECTION_COLUMNS,
    "problems": PROBLEM_COLUMNS,
}


def _column(values: Sequence[object], dtype: str) -> pd.Series | pd.Index | np.ndarray:
    if dtype == "ts":
        arr = np.array([-(2**63) if v is None else v for v in values], dtype="int64")
        return pd.to_datetime(arr, utc=True, unit="ns").where(arr != -(2**63))  # NaT for None
    if dtype == "td":
        arr = np.array([-(2**63) if v is None else v for v in values], dtype="int64")
        return pd.to_timedelta(arr, unit="ns").where(arr != -(2**63))
    if dtype.startswith("cat:"):
        return pd.Categorical(values, categories=dtype[4:].split(","))
    if dtype == "cat":
        return pd.Categorical(values)
    if dtype in ("Int64", "boolean", "string"):
        return pd.array(values, dtype=dtype)
    if dtype == "object":
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        return arr
    return np.asarray(values, dtype=dtype)


def make_frame(schema: tuple[tuple[str, str, str], ...], rows: list[tuple]) -> pd.DataFrame:
    """One DataFrame from row tuples in schema order, converted column by column."""
    names = [c[0] for c in schema]
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    data = {name: _column(col, dtype) for (name, dtype, _), col in zip(schema, columns)}
    return pd.DataFrame(data, columns=names)


def empty_tables() -> dict[str, pd.DataFrame]:
    return {name: make_frame(schema, []) for name, schema in SCHEMAS.items()}


@dataclass
class TableRows:
    """Row tuples collected while a capture streams, in the column order of the schemas above."""

    frames: list[tuple] = field(default_factory=list)
    messages: list[tuple] = field(default_factory=list)
    connections: list[tuple] = field(default_factory=list)
    problems: list[tuple] = field(default_factory=list)
    packets: int = 0
    tcp_connections: int = 0
    bytes_read: int = 0

    def to_frames(self) -> dict[str, pd.DataFrame]:
        tables = {name: make_frame(schema, getattr(self, name)) for name, schema in SCHEMAS.items()}
        sort_keys = {"frames": ["frame_no"], "messages": ["conn_id", "message_id"],
                     "connections": ["conn_id"], "problems": ["frame_no"]}
        for name, keys in sort_keys.items():
            df = tables[name]
            if len(df) and df["capture"].nunique() > 1:
                keys = ["capture", *keys]
            if len(df):
                tables[name] = df.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
        return tables
