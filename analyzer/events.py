"""The immutable values passed between pipeline stages.

Per-packet and per-frame values (PacketRecord, Segment, StreamData, Frame, FrameInfo, Message) are
NamedTuples: they are made on the hot path, and a tuple is the cheapest immutable record Python
has (about 2.5x faster to build than a frozen slotted dataclass, measured). Everything rarer is a
frozen, slotted dataclass. Times are integer nanoseconds since the Unix epoch (UTC) until tables.py turns
them into datetime64[ns, UTC]. `record_no` is the 1-based capture record number, as Wireshark
numbers frames.

Directions: 0 is the client side (the TCP initiator, or the side that sent the HTTP request),
1 is the server side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Union

from analyzer.protocol import ProblemKind

CLIENT = 0
SERVER = 1
SENDER_NAMES = ("client", "server")


# --- capture.py -----------------------------------------------------------------------------

class PacketRecord(NamedTuple):
    """One record of a capture file, whole (never cut at 65,535 bytes)."""

    record_no: int
    ts_ns: int
    linktype: int
    caplen: int
    wirelen: int
    data: bytes


# --- packets.py -----------------------------------------------------------------------------

class Segment(NamedTuple):
    """One TCP segment. Addresses are raw bytes (4 or 16) so no string is built per packet."""

    record_no: int
    ts_ns: int
    ip_version: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int          # TCP flags byte (FIN=0x01, SYN=0x02, RST=0x04, PSH=0x08, ACK=0x10)
    payload: bytes
    truncated: bool     # payload cut short by the snap length (payload holds what was captured)


# --- everywhere -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Problem:
    """A protocol violation or capture defect. Stages leave conn_id/sender to the caller."""

    kind: ProblemKind
    detail: str
    record_no: int | None = None
    ts_ns: int | None = None


# --- streams.py -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StreamOpened:
    """A new TCP connection (or one picked up mid-stream when syn_seen is False)."""

    conn_id: int
    record_no: int
    ts_ns: int
    ip_version: int
    client: bytes
    client_port: int
    server: bytes
    server_port: int
    syn_seen: bool


class StreamData(NamedTuple):
    """In-order, deduplicated bytes of one direction; record_no is the packet that supplied them."""

    conn_id: int
    direction: int
    data: bytes
    record_no: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class StreamGap:
    """`size` bytes of one direction are missing (lost segment); the data after them follows."""

    conn_id: int
    direction: int
    size: int
    record_no: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """One direction ended: FIN (after all its data was delivered) or RST."""

    conn_id: int
    direction: int
    rst: bool
    record_no: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The flow is released: both sides done, idle too long, or the capture ended."""

    conn_id: int
    reason: str         # "closed" | "reset" | "idle" | "end-of-capture"
    record_no: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class StreamProblem:
    conn_id: int
    direction: int | None
    problem: Problem


StreamEvent = Union[StreamOpened, StreamData, StreamGap, StreamEnd, StreamClosed, StreamProblem]


# --- handshake.py ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeflateParams:
    """Negotiated permessage-deflate (RFC 7692) or legacy deflate-frame parameters."""

    extension: str                       # "permessage-deflate" | "x-webkit-deflate-frame" | "deflate-frame"
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the opening handshake said and how it ended (request and response taken together)."""

    version: int                         # -1, 0, 4, 5, 6, 7, 8, 13 or an unknown number as sent
    draft: str                           # "hixie-75", "hixie-76", "hybi-00".."hybi-17"-family names
    ok: bool                             # RFC 6455 §4.1 verdict: a client would not fail it
    http_status: int | None              # None: no response seen
    accept_valid: bool | None            # None: nothing to check (no response, hixie-75)
    host: str | None = None
    path: str | None = None              # request target, credentials redacted (handshake.redact_target)
    origin: str | None = None
    user_agent: str | None = None
    server: str | None = None
    subprotocols_offered: tuple[str, ...] = ()   # bearer tokens in them redacted (redact_subprotocols)
    subprotocol: str | None = None
    extensions_offered: str | None = None
    extensions: str | None = None        # the accepted Sec-WebSocket-Extensions value
    deflate: DeflateParams | None = None
    cookies_present: bool = False
    versions_supported: tuple[int, ...] = ()   # a 400/426 answer's Sec-WebSocket-Version list
    failure_reason: str | None = None
    key: str | None = None               # Sec-WebSocket-Key (public; hybi-04 masks with it)
    server_nonce: str | None = None      # hybi-04's Sec-WebSocket-Nonce of the response
    request_record_no: int | None = None
    request_ts_ns: int | None = None
    response_record_no: int | None = None
    response_ts_ns: int | None = None
    # The server answered 101 with Upgrade: websocket and Connection: Upgrade (hixie-75/76: the
    # 101 with its upgrade headers): WebSocket frames follow, whatever the verdict in `ok`.
    upgraded: bool = False


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """The handshake finished (well or not). `trailing` holds, per direction, the bytes that
    followed it in the same stream data: the first WebSocket frames when handshake.upgraded."""

    handshake: Handshake
    client_direction: int                # which stream direction sent the request (0 or 1)
    trailing: tuple[bytes, bytes] = (b"", b"")


@dataclass(frozen=True, slots=True)
class NotWebSocket:
    """The stream is not (or no longer) a WebSocket upgrade candidate: stop feeding it."""

    reason: str


@dataclass(frozen=True, slots=True)
class H2cUpgrade:
    """A 101 switched the connection to HTTP/2 in clear (RFC 7540 §3.2, `Upgrade: h2c`): what
    follows is HTTP/2, where WebSockets may open as streams (RFC 8441). `trailing` holds, per
    direction, the bytes after the request and after the 101 (the client's preface, the server's
    SETTINGS)."""

    client_direction: int
    trailing: tuple[bytes, bytes] = (b"", b"")
    record_no: int = 0
    ts_ns: int = 0


HandshakeEvent = Union[HandshakeDone, H2cUpgrade, NotWebSocket, Problem]


# --- frames.py / frames_hixie.py ------------------------------------------------------------

class Frame(NamedTuple):
    """One WebSocket frame. `opcode` uses RFC 6455 numbers whatever the draft; `payload` is the
    unmasked payload, or None when the frame was larger than the buffering limit and only counted."""

    record_no: int
    ts_ns: int
    opcode: int
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    masked: bool
    payload_len: int
    payload: bytes | None
    header_len: int = 0
    raw_opcode: int | None = None        # the opcode as on the wire when a draft table mapped it


FrameEvent = Union[Frame, Problem]


# --- messages.py ----------------------------------------------------------------------------

class Message(NamedTuple):
    """One reassembled data message of one sender."""

    message_id: int
    type: str                            # "text" | "binary"
    ts_start_ns: int
    ts_end_ns: int
    frames: int
    wire_bytes: int
    size: int                            # after decompression
    compressed: bool
    preview: str                         # first characters (text) or hex bytes (binary)
    payload: bytes | None = None         # kept only when asked
    complete: bool = True                # False: the capture ended (or a gap hit) mid-message
    first_record_no: int = 0
    last_record_no: int = 0


class FrameInfo(NamedTuple):
    """What the message layer learned about one frame."""

    message_id: int | None
    compressed: bool
    close_code: int | None = None
    close_reason: str | None = None


MessageEvent = Union[Message, Problem]

