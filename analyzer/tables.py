"""The DataFrames: their columns, dtypes and one line of doc each, and the builder that fills them.

Frames and messages, the two tables that grow with the capture, are collected in typed
`array.array` columns (8 bytes a value, no Python object per cell), with the small fields packed
into one flags integer; each DataFrame is made once, when the analysis ends, from zero-copy numpy
views. Connections and problems are rare and collected as row tuples, as are the application
messages and exchanges (analyzer.app: only connections whose protocol is decoded have them).
No pandas work per packet.
The schemas below are the contract of shared/DESIGN.md that tests and notebooks rely on.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

from analyzer.events import Problem
from analyzer.protocol import OPCODE_NAMES, ProblemKind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# numpy, pandas and pyarrow are imported where the DataFrames are made, not at import: a worker
# process collects rows without them and its parent makes the tables (analyzer.api).

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
    ("complete", "bool", "False when the capture ended inside the frame (payload_len as declared)"),
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
    ("first_packet", "int64", "capture record number of the connection's first packet"),
    ("start", "ts", "first packet of the TCP connection"),
    ("end", "ts", "last packet seen of the TCP connection"),
    ("duration", "td", "end - start"),
    ("syn_seen", "bool", "the TCP handshake is in the capture (False: picked up mid-stream)"),
    ("version", "int64", "QWebSocketProtocol::Version: -1 unknown/hixie-75, 0, 4, 5, 6, 7, 8, 13"),
    ("draft", "cat", "hixie-75, hixie-76, hybi-01..03, hybi-04..08, rfc6455, unknown"),
    ("http_status", "Int64", "status of the handshake response; null when none was seen"),
    ("handshake_ok", "boolean", "the RFC 6455 §4.1 verdict: 101 with a valid upgrade, accept key, "
     "subprotocol and extensions; null when no handshake was seen (ports=)"),
    ("accept_valid", "boolean", "Sec-WebSocket-Accept (or hixie-76 answer) is right; null: nothing to check"),
    ("failure_reason", "string", "why the handshake failed"),
    ("host", "string", "Host header"),
    ("path", "string", "request target, credential query parameters and userinfo redacted"),
    ("origin", "string", "Origin (or Sec-WebSocket-Origin) header"),
    ("user_agent", "string", "User-Agent header"),
    ("server_software", "string", "Server header of the response"),
    ("subprotocols_offered", "string", "Sec-WebSocket-Protocol of the request (tokens redacted)"),
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
     "how the connection ended; null when no WebSocket was seen (websocket False)"),
    ("tcp_end", "cat:fin,rst,open", "how the TCP connection ended"),
    ("frames_client", "int64", "frames sent by the client"),
    ("frames_server", "int64", "frames sent by the server"),
    ("messages_client", "int64", "data messages sent by the client"),
    ("messages_server", "int64", "data messages sent by the server"),
    ("bytes_client", "int64", "WebSocket bytes the client sent after the handshake (headers + payloads)"),
    ("bytes_server", "int64", "WebSocket bytes the server sent after the handshake (headers + payloads)"),
    ("handshake_rtt", "float64", "seconds from the upgrade request to the response"),
    ("tcp_gaps", "int64", "TCP gaps (bytes lost by the capture) in either direction"),
    ("request_ts", "ts", "time of the upgrade request; null when none was seen"),
    ("transport", "cat:tcp,tls,h2,h2c", "what carries the WebSocket: tcp (HTTP/1.1 upgrade on plain TCP), "
     "tls, h2 (RFC 8441 over TLS), h2c"),
    ("h2_stream_id", "Int64", "the HTTP/2 stream of an RFC 8441 WebSocket; null on HTTP/1.1"),
    ("tcp_id", "int64", "the TCP connection (numbered by first packet as conn_id): the same on every "
     "WebSocket one TCP connection carries"),
    ("websocket", "bool", "a WebSocket upgrade request or frames were seen; False: a TLS connection listed "
     "so that nothing encrypted is hidden (not decrypted, or no WebSocket inside)"),
    ("tls_version", "string", "TLS version negotiated (\"TLS 1.3\"…); null on plain TCP"),
    ("tls_cipher", "string", "TLS cipher suite chosen by the server (IANA name)"),
    ("sni", "string", "server name the TLS client asked for (ClientHello server_name)"),
    ("alpn", "string", "application protocol chosen in the TLS handshake (ALPN), e.g. http/1.1, h2"),
    ("decrypted", "boolean", "TLS application data was decrypted (keys from a key log or the pcapng); "
     "null on plain TCP"),
    ("not_decrypted", "string", "TLS: why it was not decrypted, or why decryption stopped (no key for the "
     "client random, unsupported cipher suite, decryption failed, gap, no handshake seen)"),
    ("app_protocol", "string", "the application protocol decoded in its messages (jsonrpc, mqtt, "
     "stomp…: app_messages); null when no decoder was chosen"),
)

#: Connection columns computed from the ones above when the table is made (connections_derived),
#: never collected: connections fill the CONNECTION_ROW_COLUMNS (ConnectionRow).
CONNECTION_DERIVED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("community_id", "string", "Community ID v1 of the TCP connection (seed 0), as Zeek/Suricata write it"),
    ("subprotocols_offered_list", "object", "subprotocols_offered as a list of strings; null: no header"),
    ("extensions_offered_list", "object",
     "extensions_offered as a list, one string per extension with its parameters; null: no header"),
    ("extensions_list", "object", "extensions as a list, one string per extension; null: no header"),
)
CONNECTION_ROW_COLUMNS = CONNECTION_COLUMNS
CONNECTION_COLUMNS = CONNECTION_ROW_COLUMNS + CONNECTION_DERIVED_COLUMNS

PROBLEM_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file"),
    ("conn_id", "Int64", "connection id; null for capture-level problems"),
    ("frame_no", "Int64", "capture record number where it was seen"),
    ("ts", "ts", "capture time where it was seen"),
    ("sender", "cat:client,server", "which side; null when not side-specific"),
    ("kind", "cat", "stable kebab-case key (analyzer.protocol.ProblemKind)"),
    ("detail", "string", "what was expected and what was found"),
)

APP_MESSAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file"),
    ("conn_id", "int64", "connection id (joins connections and, with message_id, messages)"),
    ("message_id", "int64", "the WebSocket message that carried (or completed) it"),
    ("app_index", "int64", "its place among the application messages of that WebSocket message (0 first)"),
    ("sender", "cat:client,server", "who sent it"),
    ("ts", "ts", "time of the packet that completed the WebSocket message"),
    ("protocol", "cat", "the decoder: jsonrpc, socketio, graphql-ws, mqtt, stomp, jupyter…"),
    ("type", "cat", "the protocol's packet type or command (request, PUBLISH, SEND, EVENT…)"),
    ("channel", "string", "topic, destination, event name, method or operation name"),
    ("correlation_id", "string", "what pairs a request with its response (exchanges)"),
    ("role", "cat:request,response,message", "request and response are paired in exchanges"),
    ("status", "string", "of a response: ok, error or the protocol's code or reason"),
    ("fields", "string", "a few decoded values as a JSON object (text)"),
    ("chosen_by", "cat:subprotocol,content", "how the decoder was chosen: the negotiated subprotocol, "
     "or the content of the connection's first data message"),
    ("confidence", "float64", "the decoder's confidence in that choice (1.0 by subprotocol)"),
)

EXCHANGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("capture", "cat", "capture file"),
    ("conn_id", "int64", "connection id"),
    ("exchange_id", "int64", "1, 2, 3… per connection, in the order of the requests"),
    ("protocol", "cat", "the decoder (app_messages.protocol)"),
    ("method", "string", "the request's channel: method, topic, destination, event, operation"),
    ("correlation_id", "string", "the correlation id the request and its response share"),
    ("request_message_id", "int64", "the WebSocket message of the request (messages.message_id)"),
    ("response_message_id", "Int64", "the WebSocket message of the response; null when unanswered"),
    ("ts_request", "ts", "time of the request"),
    ("ts_response", "ts", "time of the response; null when unanswered"),
    ("latency", "float64", "seconds from the request to its response; NaN when unanswered"),
    ("status", "string", "the response's status (ok, error…); null when unanswered"),
    ("answered", "bool", "a response was seen (False: none before the connection's end)"),
)


@dataclass(slots=True)
class ConnectionRow:
    """One connections row as a stage hands it over: a named field per CONNECTION_ROW_COLUMNS
    column (their docs are there), in that order."""

    capture: str
    conn_id: int
    client: str
    client_port: int
    server: str
    server_port: int
    ip_version: int
    first_packet: int
    start: int
    end: int
    duration: int
    syn_seen: bool
    version: int
    draft: str
    http_status: int | None
    handshake_ok: bool | None
    accept_valid: bool | None
    failure_reason: str | None
    host: str | None
    path: str | None
    origin: str | None
    user_agent: str | None
    server_software: str | None
    subprotocols_offered: str | None
    subprotocol: str | None
    extensions_offered: str | None
    extensions: str | None
    compression: str | None
    cookies_present: bool
    versions_supported: str | None
    close_code_client: int | None
    close_code_server: int | None
    close_reason_client: str | None
    close_reason_server: str | None
    close_initiator: str | None
    close_code: int | None
    close_status: str | None
    tcp_end: str
    frames_client: int
    frames_server: int
    messages_client: int
    messages_server: int
    bytes_client: int
    bytes_server: int
    handshake_rtt: float | None
    tcp_gaps: int
    request_ts: int | None
    transport: str
    h2_stream_id: int | None
    tcp_id: int
    websocket: bool = True
    tls_version: str | None = None
    tls_cipher: str | None = None
    sni: str | None = None
    alpn: str | None = None
    decrypted: bool | None = None
    not_decrypted: str | None = None
    app_protocol: str | None = None


class ProblemRow(NamedTuple):
    """One problems row (PROBLEM_COLUMNS) with named fields; `stands_for` is how many problems it
    stands for (more than one for the row that says how many more were not listed)."""

    capture: str
    conn_id: int | None
    frame_no: int | None
    ts: int | None
    sender: str | None
    kind: str
    detail: str
    stands_for: int = 1


class AppMessageRow(NamedTuple):
    """One app_messages row (APP_MESSAGE_COLUMNS); `fields` is JSON text."""

    capture: str
    conn_id: int
    message_id: int
    app_index: int
    sender: str
    ts: int
    protocol: str
    type: str
    channel: str | None
    correlation_id: str | None
    role: str
    status: str | None
    fields: str
    chosen_by: str
    confidence: float


class ExchangeRow(NamedTuple):
    """One exchanges row (EXCHANGE_COLUMNS); the response fields are None when unanswered."""

    capture: str
    conn_id: int
    exchange_id: int
    protocol: str
    method: str | None
    correlation_id: str
    request_message_id: int
    response_message_id: int | None
    ts_request: int
    ts_response: int | None
    latency: float | None
    status: str | None
    answered: bool


#: null in an int64 column of ConnectionColumns (NaT when read as a time, as pandas reads it)
_NULL_INT = -(2**63)
#: how each connections row column is collected: "q" int64, "n" nullable int64 (_NULL_INT),
#: "b" bool, "B" nullable bool (-1), "d" float64 (NaN for null), "s" objects (strings, None)
_CONNECTION_KINDS = {"int64": "q", "int8": "q", "td": "q", "ts": "n", "Int64": "n", "bool": "b",
                     "boolean": "B", "float64": "d"}
#: (name, kind) of every connections row column, in order
_CONNECTION_FIELDS = tuple((name, _CONNECTION_KINDS.get(dtype, "s"))
                           for name, dtype, _ in CONNECTION_ROW_COLUMNS)
#: distinct strings shared per column: past it, a column whose values rarely repeat (a client
#: address on many short connections) keeps them as they come, without a dict of every one
_MAX_SHARED_STRINGS = 1 << 12


class ConnectionColumns:
    """The connections table while it grows: one column per CONNECTION_ROW_COLUMNS field, numbers
    and booleans in typed arrays (8 bytes or 1 a row, no object per cell), strings in lists where a
    repeated value (a server address, a host, a user agent, a draft) is one object for all its
    rows. Appended a ConnectionRow (any object with those fields) at a time; `row(i)` reads one
    back. What a closed connection leaves behind is its row here, about 0.5 KB."""

    __slots__ = ("_shared", "columns")

    def __init__(self) -> None:
        self.columns: dict[str, Any] = {
            name: [] if kind == "s" else array("q" if kind == "n" else kind.lower())
            for name, kind in _CONNECTION_FIELDS}
        # per string column, its distinct values (None: not shared, they rarely repeat)
        self._shared: dict[str, dict[str, str] | None] = {
            name: {} for name, kind in _CONNECTION_FIELDS if kind == "s"}

    def __len__(self) -> int:
        return len(self.columns["conn_id"])

    def append(self, row: Any) -> None:
        shared = self._shared
        for name, kind in _CONNECTION_FIELDS:
            value = getattr(row, name)
            if kind == "s":
                strings = shared.get(name)
                if strings is not None and type(value) is str:
                    seen = strings.get(value)
                    if seen is not None:
                        value = seen
                    elif len(strings) < _MAX_SHARED_STRINGS:
                        strings[value] = value
                    elif len(strings) * 2 > len(self):      # mostly distinct values: stop sharing
                        shared[name] = None
            elif value is None:
                value = _NULL_INT if kind == "n" else -1 if kind == "B" else float("nan")
            self.columns[name].append(value)

    def row(self, i: int) -> ConnectionRow:
        """Row i as a ConnectionRow (nulls as None)."""
        values = {}
        for name, kind in _CONNECTION_FIELDS:
            value = self.columns[name][i]
            null = ((kind == "n" and value == _NULL_INT) or (kind == "B" and value < 0)
                    or (kind == "d" and value != value))
            if null:
                value = None
            elif kind in ("b", "B"):
                value = bool(value)
            values[name] = value
        return ConnectionRow(**values)

    def __getitem__(self, i: int) -> ConnectionRow:
        return self.row(range(len(self))[i])

    def __iter__(self) -> Iterator[ConnectionRow]:
        return (self.row(i) for i in range(len(self)))

    def take_all(self) -> dict[str, Any]:
        """Every column (typed ones as numpy arrays over the collected memory), let go of here."""
        import numpy as np
        columns, self.columns = self.columns, {}
        self._shared = {}
        return {name: column if not isinstance(column, array)
                else np.frombuffer(column, dtype=column.typecode) if len(column)
                else np.array(column, dtype=column.typecode)
                for name, column in columns.items()}

    @staticmethod
    def concat(parts: list[dict[str, Any]], order: Any) -> dict[str, Any]:
        """Columns of several parts (take_all) stacked and put in `order` (None: as they are),
        one column at a time, each part's piece let go of as it is placed."""
        import numpy as np
        out: dict[str, Any] = {}
        for name, _, _ in CONNECTION_ROW_COLUMNS:
            pieces = [part.pop(name) for part in parts]
            if isinstance(pieces[0], list):
                column: Any = [value for piece in pieces for value in piece]
                if order is not None:
                    column = [column[i] for i in order]
            else:
                column = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                if order is not None:
                    column = column[order]
            del pieces
            out[name] = column
        return out


def _typed_column(values: Any, dtype: str) -> Any:
    """A ConnectionColumns column (a numpy array with the nulls of its kind, or a list) as the
    pandas column of `dtype`, as _column makes it from Python values."""
    import numpy as np
    import pandas as pd
    if isinstance(values, list):
        return _column(values, dtype)
    if dtype == "ts":
        return pd.to_datetime(values, utc=True, unit="ns")
    if dtype == "td":
        return pd.to_timedelta(values, unit="ns")
    if dtype == "Int64":
        return pd.arrays.IntegerArray(values.astype(np.int64), values == _NULL_INT)
    if dtype == "boolean":
        return pd.arrays.BooleanArray(values == 1, values < 0)
    return values.astype(dtype)


def capture_problem_row(capture: str, problem: Problem) -> ProblemRow:
    """A problems row of the capture (records, packets, limits), not of a connection."""
    return ProblemRow(capture, None, problem.record_no, problem.ts_ns, None, str(problem.kind),
                      problem.detail)


# the column contract lives in the schemas: the row types must name exactly their columns
assert tuple(f.name for f in fields(ConnectionRow)) == tuple(c[0] for c in CONNECTION_ROW_COLUMNS)
assert ProblemRow._fields[:-1] == tuple(c[0] for c in PROBLEM_COLUMNS)
assert AppMessageRow._fields == tuple(c[0] for c in APP_MESSAGE_COLUMNS)
assert ExchangeRow._fields == tuple(c[0] for c in EXCHANGE_COLUMNS)


SCHEMAS = {
    "frames": FRAME_COLUMNS,
    "messages": MESSAGE_COLUMNS,
    "connections": CONNECTION_COLUMNS,
    "problems": PROBLEM_COLUMNS,
    "app_messages": APP_MESSAGE_COLUMNS,
    "exchanges": EXCHANGE_COLUMNS,
}


def _column(values: Sequence[Any], dtype: str) -> Any:
    import numpy as np
    import pandas as pd
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
    if dtype == "Int64":
        return pd.array(values, dtype="Int64")
    if dtype == "boolean":
        return pd.array(values, dtype="boolean")
    if dtype == "string":
        return pd.array(values, dtype="string")
    if dtype == "object":
        arr = np.empty(len(values), dtype=object)
        arr[:] = list(values)
        return arr
    return np.asarray(values, dtype=dtype)


def make_frame(schema: tuple[tuple[str, str, str], ...], rows: Sequence[Any]) -> pd.DataFrame:
    """One DataFrame from rows with a named field per column (ConnectionRow, ProblemRow, or any
    object with those attributes; fields beyond the schema are ignored), column by column.

    For CONNECTION_COLUMNS the rows hold the CONNECTION_ROW_COLUMNS and the derived columns are
    computed (connections_derived).
    """
    import pandas as pd
    if schema is CONNECTION_COLUMNS:
        columns = ConnectionColumns()
        for row in rows:
            columns.append(row)
        return connections_frame(columns.take_all())
    data = {name: _column([getattr(row, name) for row in rows], dtype) for name, dtype, _ in schema}
    return pd.DataFrame(data, columns=[c[0] for c in schema])


def connections_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """The connections DataFrame from its collected columns (ConnectionColumns.take_all, in row
    order), converted and let go of one at a time, and the derived columns computed."""
    import pandas as pd
    data = {}
    for name, dtype, _ in CONNECTION_ROW_COLUMNS:
        data[name] = _typed_column(columns.pop(name), dtype)
    df = pd.DataFrame(data, columns=[c[0] for c in CONNECTION_ROW_COLUMNS])
    for name, column in connections_derived(df).items():
        df[name] = column
    return df


def _split_list(text: pd.Series, separator: str) -> pd.Series:
    """A nullable text column split into lists of stripped, non-empty items (null stays null)."""
    import pandas as pd
    present = text.notna()
    out = pd.Series([None] * len(text), index=text.index, dtype=object)
    if present.any():
        parts = text[present].astype(str).str.split(separator, regex=True)
        out[present] = parts.map(lambda items: [i.strip() for i in items if i.strip()])
    return out


#: a comma outside double quotes (an extension parameter's quoted value may hold commas)
_UNQUOTED_COMMA = r',(?=(?:[^"]*"[^"]*")*[^"]*$)'


def connections_derived(df: pd.DataFrame) -> dict[str, Any]:
    """The CONNECTION_DERIVED_COLUMNS of a connections table, column by column (once per
    connection, when the table is made)."""
    import pandas as pd

    from analyzer.community_id import community_ids
    return {
        "community_id": pd.array(community_ids(df["client"], df["client_port"], df["server"],
                                               df["server_port"]), dtype="string"),
        "subprotocols_offered_list": _split_list(df["subprotocols_offered"], ","),
        "extensions_offered_list": _split_list(df["extensions_offered"], _UNQUOTED_COMMA),
        "extensions_list": _split_list(df["extensions"], _UNQUOTED_COMMA),
    }


def empty_tables() -> dict[str, pd.DataFrame]:
    return {name: make_frame(schema, []) for name, schema in SCHEMAS.items()}


# Bits of the packed `flags` value of a frame row.
F_OPCODE = 0x0F
F_FIN = 1 << 4
F_RSV1 = 1 << 5
F_RSV2 = 1 << 6
F_RSV3 = 1 << 7
F_MASKED = 1 << 8
F_COMPRESSED = 1 << 9
F_SERVER = 1 << 10
F_INCOMPLETE = 1 << 11      # the capture ended inside the frame
F_HEADER_SHIFT = 12         # header length (0..18) in the bits above

# Bits of the packed `flags` value of a message row.
M_SERVER = 1
M_BINARY = 2
M_COMPRESSED = 4
M_INCOMPLETE = 8

_NULL = -1                  # null in columns whose values are never negative

#: Rows of one problem kind listed per connection (or per capture for capture-level problems);
#: past it, one summary row says how many more there were and where.
MAX_PROBLEMS_PER_KIND = 1000
#: Problem rows listed per analysis, of one kind and in all (ProblemRows); past them, one summary
#: row per kind says how many more there were. Processes that share a capture share these too.
MAX_ANALYSIS_PROBLEMS_PER_KIND = 10_000
MAX_ANALYSIS_PROBLEMS = 100_000
#: Bytes of message payloads kept by one analysis with payloads=True (KeptPayloads).
MAX_KEPT_PAYLOAD_BYTES = 256 << 20


@dataclass(slots=True)
class _Over:
    """How many problems of one kind went past a cap, and where (records first to last)."""

    count: int
    first: int | None
    last: int | None
    ts: int | None

    def merge(self, count: int, first: int | None, last: int | None, ts: int | None) -> None:
        self.count += count
        if first is not None and (self.first is None or first < self.first):
            self.first = first
        if last is not None and (self.last is None or last > self.last):   # summary rows may come late
            self.last, self.ts = last, ts


class ProblemLimiter:
    """Keeps a flood of identical problems (a million malformed packets) from becoming a million
    rows: the first MAX_PROBLEMS_PER_KIND of each kind are listed, the rest are counted."""

    __slots__ = ("counts", "over")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.over: dict[str, _Over] = {}

    def admit(self, kind: str, record_no: int | None, ts_ns: int | None) -> bool:
        """Whether to list this problem (build its row); if not, it is counted. Cheap past the
        cap (callers such as the packet decoder ask before they build a problem's detail)."""
        over = self.over.get(kind)
        if over is not None:                # the common case in a flood: already over the cap
            over.count += 1
            over.last = record_no
            over.ts = ts_ns
            return False
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        if n <= MAX_PROBLEMS_PER_KIND:
            return True
        self.over[kind] = _Over(1, record_no, record_no, ts_ns)
        return False

    def summary_rows(self, capture: str, conn_id: int | None, where: str) -> list[ProblemRow]:
        """One problems row per kind that went over the limit."""
        return [ProblemRow(capture, conn_id, o.last, o.ts, None, kind,
                           f"{o.count} more {kind} problems {where} not listed (records {o.first} to "
                           f"{o.last}); the first {MAX_PROBLEMS_PER_KIND} are", o.count)
                for kind, o in self.over.items()]


class ConnectionProblems:
    """One connection's problems on their way to the rows. Those of a connection not yet known to
    carry WebSocket wait (at most MAX_PENDING) until it does (`list_from_now`) and are dropped if it
    never does (`drop`); past MAX_PROBLEMS_PER_KIND of one kind they are counted (ProblemLimiter)
    and `finish` writes one row per kind saying how many more there were."""

    __slots__ = ("capture", "conn_id", "limiter", "listed", "pending", "rows")
    MAX_PENDING = 100

    def __init__(self, rows: ProblemRows, capture: str, conn_id: int) -> None:
        self.rows = rows
        self.capture = capture
        self.conn_id = conn_id
        self.limiter = ProblemLimiter()
        self.listed = False
        self.pending: list[tuple[str | None, Problem]] | None = []

    def report(self, sender: str | None, problem: Problem) -> None:
        if not self.listed:
            pending = self.pending
            if pending is not None and len(pending) < self.MAX_PENDING:
                pending.append((sender, problem))
            return
        kind = str(problem.kind)
        if self.limiter.admit(kind, problem.record_no, problem.ts_ns):
            self.rows.append(ProblemRow(self.capture, self.conn_id, problem.record_no, problem.ts_ns, sender,
                                        kind, problem.detail))

    def list_from_now(self) -> None:
        """The connection carries WebSocket: list its problems, those waiting first."""
        if self.listed:
            return
        self.listed = True
        pending, self.pending = self.pending or [], None
        for sender, problem in pending:
            self.report(sender, problem)

    def drop(self) -> None:
        """The connection is not WebSocket: what waits and what comes is not listed."""
        self.pending = None

    def finish(self) -> None:
        if self.listed:
            self.rows.extend(self.limiter.summary_rows(self.capture, self.conn_id, "on this connection"))


class ProblemRows(list[ProblemRow]):
    """The problems rows of one analysis (TableRows.problems), with a cap on the whole analysis on
    top of the per-connection ProblemLimiter: a flood spread over many connections (each under its
    own cap) would otherwise grow without bound. Past MAX_ANALYSIS_PROBLEMS_PER_KIND rows of one
    kind or MAX_ANALYSIS_PROBLEMS in all, rows are counted, not kept; `summary_rows` says how many.
    A summary row of a connection's limiter (it stands for `count` problems) of a kind that has
    reached the cap is added to that kind's count instead. Callers append and extend as on a list."""

    def __init__(self, rows: list[ProblemRow] | None = None, *, share: int = 1) -> None:
        super().__init__(rows or ())
        self.share = share          # processes sharing the capture (each keeps 1/share)
        self.counts: dict[str, int] = {}
        self.over: dict[str, _Over] = {}

    def limit_to_share(self, share: int) -> None:
        self.share = max(1, share)

    def append(self, row: ProblemRow) -> None:
        kind = row.kind
        n = self.counts.get(kind, 0) + 1
        if (n <= MAX_ANALYSIS_PROBLEMS_PER_KIND // self.share and kind not in self.over
                and len(self) < MAX_ANALYSIS_PROBLEMS // self.share):
            self.counts[kind] = n
            super().append(row)
            return
        self._count(kind, row.stands_for, row.frame_no, row.ts)

    def extend(self, rows: Iterable[ProblemRow]) -> None:
        for row in rows:
            self.append(row)

    def _count(self, kind: str, count: int, record_no: int | None, ts_ns: int | None) -> None:
        over = self.over.get(kind)
        if over is None:
            self.over[kind] = _Over(count, record_no, record_no, ts_ns)
        else:
            over.merge(count, record_no, record_no, ts_ns)

    def __reduce__(self) -> tuple[Any, ...]:
        return _problem_rows, (list(self), self.share, self.counts, self.over)


def _problem_rows(rows: list[ProblemRow], share: int, counts: dict[str, int],
                  over: dict[str, _Over]) -> ProblemRows:
    table = ProblemRows(rows, share=share)
    table.counts, table.over = counts, over
    return table


def analysis_cap_rows(capture: str, parts: list[ProblemRows]) -> list[ProblemRow]:
    """One problems row per kind over the analysis cap, counting over all the parts (processes)."""
    over: dict[str, _Over] = {}
    for part in parts:
        for kind, o in part.over.items():
            over.setdefault(kind, _Over(0, o.first, o.last, o.ts)).merge(o.count, o.first, o.last, o.ts)
    return [ProblemRow(capture, None, o.last, o.ts, None, kind,
                       f"{o.count} more {kind} problems in this analysis not listed"
                       + ("" if o.first is None else f" (records {o.first} to {o.last})")
                       + f": at most {MAX_ANALYSIS_PROBLEMS_PER_KIND} of one kind and "
                       f"{MAX_ANALYSIS_PROBLEMS} in all are listed per analysis", o.count)
            for kind, o in over.items()]


class KeptPayloads:
    """The budget of message payloads kept with analyze(payloads=True), shared by every message of
    one analysis (analyzer.messages.MessageAssembler asks it): a capture full of deflate bombs
    would otherwise keep max_message_bytes for each. Past the budget a message's payload is null
    and counted here; analyzer.merge writes one problems row with the counts."""

    __slots__ = ("first_record_no", "first_ts_ns", "kept_bytes", "limit", "refused", "refused_bytes")

    def __init__(self, limit: int = MAX_KEPT_PAYLOAD_BYTES) -> None:
        self.limit = max(0, limit)
        self.kept_bytes = 0
        self.refused = 0                    # payloads not kept
        self.refused_bytes = 0              # and their bytes (each up to max_message_bytes)
        self.first_record_no: int | None = None
        self.first_ts_ns: int | None = None

    def limit_to(self, limit: int) -> KeptPayloads:
        self.limit = max(0, limit)
        return self

    @property
    def room(self) -> int:
        return self.limit - self.kept_bytes

    def admit(self, size: int, record_no: int | None, ts_ns: int | None) -> bool:
        """Keep a payload of `size` bytes? Counted as kept, or as refused."""
        if size <= self.limit - self.kept_bytes:
            self.kept_bytes += size
            return True
        self.refuse(size, record_no, ts_ns)
        return False

    def refuse(self, size: int, record_no: int | None, ts_ns: int | None) -> None:
        if not self.refused:
            self.first_record_no, self.first_ts_ns = record_no, ts_ns
        self.refused += 1
        self.refused_bytes += size

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


def kept_payloads_rows(capture: str, parts: list[KeptPayloads]) -> list[ProblemRow]:
    """The problems row saying how many payloads the budget did not keep (none when all were)."""
    refused = [part for part in parts if part.refused]
    if not refused:
        return []
    first = min(refused, key=lambda part: part.first_record_no or 0)
    count, size = sum(p.refused for p in refused), sum(p.refused_bytes for p in refused)
    limit = sum(p.limit for p in parts)
    kind = str(ProblemKind.KEPT_PAYLOAD_LIMIT)
    return [ProblemRow(capture, None, first.first_record_no, first.first_ts_ns, None, kind,
                       f"{count} message payloads ({size} bytes) not kept: the budget of kept payloads "
                       f"(max_payload_bytes={limit}) was used up; their payload is null (size, preview kept)",
                       count)]


# Frames and messages are collected as int64 rows of these fields (one `extend` per row instead of
# a call per column) and kept as one array per field (_IntRows.compact); analyzer.merge makes the
# DataFrames from those columns (frames_frame, messages_frame).
FRAME_FIELDS = ("conn_id", "frame_no", "ts", "flags", "payload_len", "close_code", "message_id", "rtt_ns")
MESSAGE_FIELDS = ("conn_id", "message_id", "flags", "ts_start", "ts_end", "frames", "wire_bytes", "size",
                   "first_frame_no", "last_frame_no")


def _utc(ns: np.ndarray) -> Any:
    """int64 ns since the epoch as a datetime64[ns, UTC] array over the same memory (pd.to_datetime
    would copy it: 8 bytes a row more at the peak)."""
    import numpy as np
    import pandas as pd
    try:
        return pd.arrays.DatetimeArray._simple_new(  # type: ignore[attr-defined]  # (private, no stub)
            ns.view("M8[ns]"), dtype=pd.DatetimeTZDtype(tz="UTC"))
    except (AttributeError, TypeError):         # a pandas without it: the copy
        return pd.to_datetime(np.asarray(ns), utc=True, unit="ns")


class _Flags:
    """Bits of a packed int64 flags column, each read from the one byte that holds it: a bool
    column costs one byte a row of temporary memory, where `flags & mask` would cost eight."""

    def __init__(self, flags: np.ndarray) -> None:
        import sys
        self.flags = flags
        self.bytes = flags.view("u1").reshape(-1, 8) if sys.byteorder == "little" and len(flags) else None

    def low(self, mask: int, byte: int = 0) -> np.ndarray:
        """(flags >> 8*byte) & mask, mask < 256, as uint8."""
        if self.bytes is None:
            return ((self.flags >> (8 * byte)) & mask).astype("u1")
        return self.bytes[:, byte] & mask

    def bit(self, mask: int) -> np.ndarray:
        byte = (mask.bit_length() - 1) >> 3
        return self.low(mask >> (8 * byte), byte).view(bool) if mask >> (8 * byte) == 1 \
            else self.low(mask >> (8 * byte), byte) != 0

    def above(self, shift: int, dtype: str) -> np.ndarray:
        """flags >> shift (a small value) as `dtype`."""
        if self.bytes is None or shift < 8:
            return (self.flags >> shift).astype(dtype)
        low32 = self.flags.view("u4")[::2]          # bits 0..31 (little-endian)
        return (low32 >> shift).astype(dtype)


def _codes(values: np.ndarray, categories: list[str]) -> Any:
    import numpy as np
    import pandas as pd
    return pd.Categorical.from_codes(values.view(np.int8), categories=pd.Index(categories), validate=False)


def _seconds_in_place(rtt_ns: np.ndarray) -> np.ndarray:
    """int64 ns (-1: null) → float64 seconds (NaN) in the same memory, a block at a time, so that
    the float column costs nothing next to the int one it replaces."""
    import numpy as np
    if not rtt_ns.flags.writeable:
        rtt_ns = rtt_ns.copy()
    out = rtt_ns.view(np.float64)
    step = 1 << 16
    for i in range(0, len(rtt_ns), step):
        block = rtt_ns[i:i + step]
        seconds = block / 1e9
        seconds[block < 0] = np.nan
        out[i:i + step] = seconds
    return out


def _sparse_strings(n: int, by_row: dict[int, str]) -> Any:
    """A pandas string column of n rows, null but for `by_row`, made from its Arrow buffers (no
    object array of n Nones on the way)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    rows = sorted(by_row)
    encoded = [by_row[r].encode("utf-8", "surrogatepass") for r in rows]
    lengths = np.zeros(n + 1, np.int64)
    valid = np.zeros(n, bool)
    if rows:
        lengths[np.array(rows) + 1] = [len(e) for e in encoded]
        valid[rows] = True
    offsets = np.cumsum(lengths, out=lengths)
    buffers = [pa.py_buffer(np.packbits(valid, bitorder="little")), pa.py_buffer(offsets),
               pa.py_buffer(b"".join(encoded))]
    array = pa.Array.from_buffers(pa.large_string(), n, buffers, null_count=n - len(rows))
    return pd.arrays.ArrowStringArray(array)


def frames_frame(cols: dict[str, np.ndarray], close_reason: dict[int, str], capture: str) -> pd.DataFrame:
    """The frames DataFrame from its int64 columns (FRAME_FIELDS, taken out of `cols`) and close
    reasons by row. The int64 columns are used as they are (views stay views, not copies; rtt is
    converted in place) and the flags column is let go of as soon as the small columns are read
    from it, so that the peak is the table and little more."""
    import numpy as np
    import pandas as pd
    n = len(cols["frame_no"])
    flags = _Flags(cols.pop("flags"))
    bit = flags.bit
    opcode = flags.low(F_OPCODE).view(np.int8)
    close_code, message_id = cols.pop("close_code"), cols.pop("message_id")
    data = {
        "capture": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=pd.Index([capture])),
        "conn_id": cols.pop("conn_id"),
        "frame_no": cols.pop("frame_no"),
        "ts": _utc(cols.pop("ts")),
        "sender": _codes(bit(F_SERVER), ["client", "server"]),
        "opcode": opcode,
        "opcode_name": _codes(opcode, list(OPCODE_NAMES)),
        "fin": bit(F_FIN), "rsv1": bit(F_RSV1), "rsv2": bit(F_RSV2), "rsv3": bit(F_RSV3),
        "masked": bit(F_MASKED),
        "payload_len": cols.pop("payload_len"),
        "header_len": flags.above(F_HEADER_SHIFT, "i2"),
        "compressed": bit(F_COMPRESSED),
        "close_code": pd.arrays.IntegerArray(close_code, close_code < 0),
        "close_reason": _sparse_strings(n, close_reason),
        "message_id": pd.arrays.IntegerArray(message_id, message_id < 0),
        "rtt": _seconds_in_place(cols.pop("rtt_ns")),
        "complete": ~bit(F_INCOMPLETE),
    }
    del flags, bit
    # copy=False: the columns are views of the collected rows, not a second copy of them
    return pd.DataFrame(data, columns=[c[0] for c in FRAME_COLUMNS], copy=False)


def messages_frame(cols: dict[str, np.ndarray], previews: Any, payload: dict[int, bytes],
                   capture: str) -> pd.DataFrame:
    """The messages DataFrame from its int64 columns (MESSAGE_FIELDS, taken out of `cols`), the
    previews as a pyarrow large_string array and the kept payloads by row (see frames_frame)."""
    import numpy as np
    import pandas as pd
    n = len(cols["message_id"])
    flags = _Flags(cols.pop("flags"))
    payloads = np.full(n, None, dtype=object)
    for row, kept in payload.items():
        payloads[row] = kept
    data = {
        "capture": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=pd.Index([capture])),
        "conn_id": cols.pop("conn_id"),
        "message_id": cols.pop("message_id"),
        "sender": _codes(flags.bit(M_SERVER), ["client", "server"]),
        "type": _codes(flags.bit(M_BINARY), ["text", "binary"]),
        "ts_start": _utc(cols.pop("ts_start")),
        "ts_end": _utc(cols.pop("ts_end")),
        "frames": cols.pop("frames"),
        "wire_bytes": cols.pop("wire_bytes"),
        "size": cols.pop("size"),
        "compressed": flags.bit(M_COMPRESSED),
        "complete": ~flags.bit(M_INCOMPLETE),
        "preview": pd.arrays.ArrowStringArray(previews),
        "payload": payloads,
        "first_frame_no": cols.pop("first_frame_no"),
        "last_frame_no": cols.pop("last_frame_no"),
    }
    del flags
    return pd.DataFrame(data, columns=[c[0] for c in MESSAGE_COLUMNS], copy=False)


class _IntRows:
    """Rows of int64 fields while a table grows. A row is appended to one row-major array with one
    `extend` call (the hot paths write through the bound `extend` directly); `compact()`, called
    every few thousand records and at the end, moves those rows to the end of one array per field,
    so that the columns can be taken out (and freed) one at a time when the tables are made. The
    column arrays grow by reallocation: large blocks the allocator gives back whole when freed,
    where many small pieces would leave the heap fragmented."""

    __slots__ = ("_columns", "data", "extend")
    FIELDS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.data = array("q")
        self.extend = self.data.extend      # a row as a tuple in FIELDS order
        self._columns: list[Any] = [array("q") for _ in self.FIELDS]

    def __len__(self) -> int:
        return len(self._columns[0]) + len(self.data) // len(self.FIELDS)

    _CHUNK = 1 << 13            # rows moved at a time when many wait (see _compact_large)

    def compact(self) -> None:
        width = len(self.FIELDS)
        data = self.data
        if len(data) > width * self._CHUNK:
            self._compact_large()
        elif len(data) >= width:
            for i, column in enumerate(self._columns):
                column.extend(data[i::width])
            del data[:]                     # the same array (and bound `extend`), emptied

    def _compact_large(self) -> None:
        """Many rows waiting (records of hundreds of tiny frames each: compact() runs every so
        many records, not rows): moved a chunk at a time from the end of `data`, which shrinks
        as the columns grow, so that the rows are never held twice. Each field is gathered in
        reverse order, then turned round in place."""
        width = len(self.FIELDS)
        data = self.data
        backwards = [array("q") for _ in self.FIELDS]
        while data:
            chunk = data[-width * self._CHUNK:]
            del data[-width * self._CHUNK:]         # the same array (and bound `extend`), shorter
            chunk.reverse()                         # rows and fields in reverse order
            for i, column in enumerate(backwards):
                column.extend(chunk[width - 1 - i::width])
            del chunk
        for i, column in enumerate(backwards):
            column.reverse()
            if len(self._columns[i]):
                self._columns[i].extend(column)
            else:
                self._columns[i] = column
            backwards[i] = array("q")

    def column(self, name: str, *, take: bool = False) -> np.ndarray:
        """One field as an int64 array (a view of the collected column); take=True lets go of it
        here, so that it is freed with the caller's last reference."""
        import numpy as np
        self.compact()
        i = self.FIELDS.index(name)
        column = self._columns[i]
        if take:
            self._columns[i] = array("q")
        if len(column) == 0:
            return np.zeros(0, np.int64)
        return np.frombuffer(column, dtype=np.int64)

    def set_columns(self, columns: dict[str, Any]) -> None:
        """Replace the content with whole columns (a worker's result read back)."""
        self._columns = [columns[name] for name in self.FIELDS]
        del self.data[:]

    def __getstate__(self) -> dict[str, Any]:
        self.compact()
        state = {name: getattr(self, name) for name in self._state_names()}
        state["_columns"] = self._columns
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data = array("q")
        self.extend = self.data.extend
        for name, value in state.items():
            setattr(self, name, value)

    def _state_names(self) -> tuple[str, ...]:
        return ()


class FrameColumns(_IntRows):
    """The frames table while it grows: int64 rows (FRAME_FIELDS) and close reasons by row (most
    frames have none)."""

    __slots__ = ("close_reason",)
    FIELDS = FRAME_FIELDS

    def __init__(self) -> None:
        super().__init__()
        self.close_reason: dict[int, str] = {}

    def add(self, conn_id: int, frame_no: int, ts_ns: int, flags: int, payload_len: int,
            close_code: int, message_id: int, rtt_ns: int, close_reason: str | None) -> None:
        """One frame; close_code, message_id and rtt_ns use -1 for null."""
        if close_reason is not None:
            self.close_reason[len(self)] = close_reason
        self.extend((conn_id, frame_no, ts_ns, flags, payload_len, close_code, message_id, rtt_ns))

    def take_rows(self) -> tuple[dict[str, np.ndarray], dict[int, str]]:
        """Every row collected so far, let go of here (the out-of-core export, analyzer.outofcore):
        the int64 columns and the close reasons by row. The containers the writers hold stay the
        same objects, emptied, and rows added next are numbered from 0 again."""
        columns = {name: self.column(name, take=True) for name in self.FIELDS}
        reasons = dict(self.close_reason)
        self.close_reason.clear()
        return columns, reasons

    def take_rows_in_order(self) -> tuple[dict[str, np.ndarray], dict[int, str]]:
        """take_rows, the rows sorted by frame_no (stable) and the close reasons moved with them
        (rows written out a part at a time: analyzer.outofcore, analyzer.streaming)."""
        import numpy as np
        columns, reasons = self.take_rows()
        frame_no = columns["frame_no"]
        if len(frame_no) > 1 and not bool((frame_no[1:] >= frame_no[:-1]).all()):
            order = np.argsort(frame_no, kind="stable")
            columns = {name: column[order] for name, column in columns.items()}
            if reasons:
                where = np.empty(len(order), dtype=np.int64)
                where[order] = np.arange(len(order))
                reasons = {int(where[row]): text for row, text in reasons.items()}
        return columns, reasons

    def _state_names(self) -> tuple[str, ...]:
        return ("close_reason",)


class MessageColumns(_IntRows):
    """The messages table while it grows: int64 rows (MESSAGE_FIELDS), the previews and the kept
    payloads by row."""

    __slots__ = ("payload", "preview_ends", "preview_utf8")
    FIELDS = MESSAGE_FIELDS

    def __init__(self) -> None:
        super().__init__()
        # Previews are kept as one UTF-8 buffer plus end offsets (an Arrow string column's own
        # layout), not as a Python str each: a third of the memory, and no copy at the end.
        self.preview_utf8 = bytearray()
        self.preview_ends = array("q", [0])
        self.payload: dict[int, bytes] = {}         # row → payload, for the messages that keep it

    def add(self, conn_id: int, message_id: int, flags: int, ts_start_ns: int, ts_end_ns: int,
            frames: int, wire_bytes: int, size: int, preview: str, payload: bytes | None,
            first_frame_no: int, last_frame_no: int) -> None:
        if payload is not None:
            self.payload[len(self)] = payload
        self.extend((conn_id, message_id, flags, ts_start_ns, ts_end_ns, frames, wire_bytes, size,
                     first_frame_no, last_frame_no))
        preview_utf8 = self.preview_utf8
        preview_utf8 += preview.encode("utf-8", "surrogatepass")
        self.preview_ends.append(len(preview_utf8))

    def previews(self) -> Any:
        """The previews as a pyarrow large_string array over the collected buffers (no copy)."""
        import pyarrow as pa
        return pa.Array.from_buffers(pa.large_string(), len(self.preview_ends) - 1,
                                     [None, pa.py_buffer(self.preview_ends), pa.py_buffer(self.preview_utf8)])

    def take_rows(self) -> tuple[dict[str, np.ndarray], Any, dict[int, bytes]]:
        """Every row collected so far, let go of here (see FrameColumns.take_rows): the int64
        columns, the previews (a copy: the buffers the writers append to are emptied in place)
        and the kept payloads by row."""
        import pyarrow as pa
        columns = {name: self.column(name, take=True) for name in self.FIELDS}
        previews = pa.Array.from_buffers(pa.large_string(), len(self.preview_ends) - 1,
                                         [None, pa.py_buffer(self.preview_ends.tobytes()),
                                          pa.py_buffer(bytes(self.preview_utf8))])
        del self.preview_utf8[:]
        del self.preview_ends[1:]
        payload = dict(self.payload)
        self.payload.clear()
        return columns, previews, payload

    def _state_names(self) -> tuple[str, ...]:
        return ("payload", "preview_ends", "preview_utf8")


@dataclass
class TableRows:
    """What one capture's analysis collects (the typed sink every stage writes to): frames and
    messages as typed columns (FrameColumns.add, MessageColumns.add, add_whole_message),
    connections and problems as rows with named fields (ConnectionRow, ProblemRow)."""

    capture: str = ""
    frames: FrameColumns = field(default_factory=FrameColumns)
    messages: MessageColumns = field(default_factory=MessageColumns)
    connections: ConnectionColumns = field(default_factory=ConnectionColumns)
    problems: ProblemRows = field(default_factory=ProblemRows)
    kept: KeptPayloads = field(default_factory=KeptPayloads)
    app_messages: list[AppMessageRow] = field(default_factory=list)
    exchanges: list[ExchangeRow] = field(default_factory=list)
    packets: int = 0
    tcp_connections: int = 0
    bytes_read: int = 0

    def compact(self) -> None:
        """Move the newest frame and message rows into their columns (see _IntRows)."""
        self.frames.compact()
        self.messages.compact()

    def whole_message_writer(self) -> WholeMessageWriter:
        """The writer of whole one-frame text and binary messages: their frames row and messages row
        in one call (the sink of the frame decoder's fast path, analyzer.frames, which would
        otherwise build a Frame, a FrameInfo and a Message tuple per frame). The rows are those
        FrameColumns.add and MessageColumns.add write for such a message (no close code or reason,
        no rtt). A closure: what it writes to is in its cells, the fastest a call can reach; one
        for all the connections (it is not pickled with the rows)."""
        writer: WholeMessageWriter | None = self.__dict__.get("_writer")
        if writer is None:
            writer = self.__dict__["_writer"] = self._make_writer()
        return writer

    def done(self) -> None:
        """The capture is read: the writer lets go of the columns it writes to (merge frees each
        part's columns as soon as they are placed, which a writer still holding them would stop)."""
        self.__dict__.pop("_writer", None)
        self.compact()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_writer", None)
        return state

    def _make_writer(self) -> WholeMessageWriter:
        frame_row = self.frames.extend
        message_row = self.messages.extend
        previews = self.messages.preview_utf8
        preview_ends = self.messages.preview_ends
        append_end = preview_ends.append
        payloads = self.messages.payload

        def write(conn_id: int, record_no: int, ts_ns: int, frame_flags: int, payload_len: int,
                  message_id: int, message_flags: int, size: int, preview: str,
                  payload: bytes | None) -> None:
            """frame_flags / message_flags: the packed flags of both rows (F_* with the header
            length shifted in, M_*); payload: the message's bytes when kept, else None."""
            frame_row((conn_id, record_no, ts_ns, frame_flags, payload_len, _NULL, message_id, _NULL))
            if payload is not None:
                payloads[len(preview_ends) - 1] = payload      # by row, as MessageColumns.add
            message_row((conn_id, message_id, message_flags, ts_ns, ts_ns, 1, payload_len, size, record_no,
                         record_no))
            nonlocal previews
            previews += preview.encode("utf-8", "surrogatepass")
            append_end(len(previews))

        return write


#: writes a whole one-frame message's two rows (TableRows.whole_message_writer)
WholeMessageWriter = Callable[[int, int, int, int, int, int, int, int, str, "bytes | None"], None]
