"""One TCP connection: what runs on its two byte streams, the transforms stacked on them, and the
WebSocket conversations they carry (sans-IO).

The pipeline feeds a Connection the reassembler's events for one TCP connection. The connection
passes each direction's bytes through its stack of stream transforms (empty today; TLS records →
plaintext and HTTP/2 frames → streams stack here) and then to whatever reads them in its state:
the HTTP/1.1 upgrade handshake parser (analyzer.handshake) while it is DETECTING, the WebSocket
conversation (analyzer.websocket) once there is one. It writes the connections row when the
reassembler releases the flow.

The states and what moves between them (h11's style: the table `_TRANSITIONS` is the whole
machine; `_to` is the only place a state changes):

  DETECTING  the bytes go to the handshake parser. HandshakeDone with an upgrade → WEBSOCKET, the
             bytes after the handshake fed to the conversation first, whatever the RFC 6455 §4.1
             verdict (a wrong accept key still has its frames decoded; its close_status is
             "handshake-failed"); a handshake that did not upgrade stays DETECTING (keep-alive:
             another request may follow); NotWebSocket → IGNORED.
             On a `ports=` port (decode as WebSocket), bytes that begin with an HTTP request or
             status line (either direction, whichever comes first) are HTTP: only the handshake
             parser sees them. Bytes that are not HTTP → WEBSOCKET without a handshake, roles
             from the port and the masking; bytes that looked like HTTP only at first sight are
             replayed as frames when the parser finds they are not.
  WEBSOCKET  the bytes go to the conversation. On a `ports=` connection that began as frames, the
             direction that had not spoken yet is looked at first: an HTTP request or status line
             there means the capture began inside an HTTP body → IGNORED (the frames already listed
             stay, with a problem).
  IGNORED    not WebSocket: nothing more of the connection is looked at.
  GIVEN_UP   an exception of ours inside a stage (a bug, never bad input): one `internal-error`
             problem row, nothing more of the connection is looked at, its row is still written.

The connections row is written only for a connection that carried an upgrade request or frames.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from analyzer.bugs import STRICT_ENV, describe, raise_bugs
from analyzer.events import (
    CLIENT,
    SENDER_NAMES,
    SERVER,
    H2cUpgrade,
    Handshake,
    HandshakeDone,
    HandshakeEvent,
    NotWebSocket,
    Problem,
    StreamOpened,
)
from analyzer.h2 import H2Out, H2Session, looks_like_h2
from analyzer.h2_streams import H2Stream, H2Streams
from analyzer.handshake import HandshakeParser
from analyzer.protocol import ProblemKind
from analyzer.tables import ConnectionProblems, ConnectionRow, ProblemRow, TableRows
from analyzer.tls import KeyLog, PlainGap, ResumptionCache, TlsSession, looks_like_tls
from analyzer.websocket import Budgets, Options, WebSocket

__all__ = ["STRICT_ENV", "Connection", "State", "StreamTransform", "TlsKeys"]

# ports= mode: bytes that may begin an HTTP message (a method token and a space, "HTTP/", or too
# few bytes to tell) go to the handshake parser; a complete request or status line makes the
# connection HTTP for good (RFC 9112 §3, §4: the grammar the handshake parser reads).
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_HTTP_HEAD = re.compile(rb"[\r\n]*(?:HTTP/|[A-Za-z][" + _TCHAR + rb"]{0,23}(?: |\Z))")
_HTTP_START_LINE = re.compile(rb"[\r\n]*(?:[A-Za-z][" + _TCHAR + rb"]{0,23} +[^ \t\r\n]+ +HTTP/\d\.\d"
                              rb"|HTTP/\d\.\d +\d{3}(?:[ \t][^\r\n]*)?)[ \t]*\r?\n")
_REPLAY_LIMIT = 64 * 1024
_TLS_RECORD_TYPES = frozenset(range(20, 25))   # change_cipher_spec … heartbeat (RFC 8446 §5.1)
_MAX_START_LINE = 8192          # as handshake.MAX_LINE


class State(Enum):
    DETECTING = "detecting"
    WEBSOCKET = "websocket"
    HTTP2 = "http2"
    IGNORED = "ignored"
    GIVEN_UP = "given-up"


class Event(Enum):
    REQUEST_ANSWERED = "request-answered"       # a handshake that did not upgrade
    UPGRADED = "upgraded"
    FRAMES_WITHOUT_HANDSHAKE = "frames-without-handshake"
    NOT_WEBSOCKET = "not-websocket"
    HTTP_AFTER_FRAMES = "http-after-frames"
    H2_PREFACE = "h2-preface"
    INTERNAL_ERROR = "internal-error"


_TRANSITIONS: dict[State, dict[Event, State]] = {
    State.DETECTING: {
        Event.REQUEST_ANSWERED: State.DETECTING,
        Event.UPGRADED: State.WEBSOCKET,
        Event.FRAMES_WITHOUT_HANDSHAKE: State.WEBSOCKET,
        Event.NOT_WEBSOCKET: State.IGNORED,
        Event.H2_PREFACE: State.HTTP2,
        Event.INTERNAL_ERROR: State.GIVEN_UP,
    },
    State.HTTP2: {Event.INTERNAL_ERROR: State.GIVEN_UP},
    State.WEBSOCKET: {
        Event.HTTP_AFTER_FRAMES: State.IGNORED,
        Event.INTERNAL_ERROR: State.GIVEN_UP,
    },
    State.IGNORED: {Event.INTERNAL_ERROR: State.GIVEN_UP},
    State.GIVEN_UP: {Event.INTERNAL_ERROR: State.GIVEN_UP},
}

_DETECTING, _WEBSOCKET, _HTTP2 = State.DETECTING, State.WEBSOCKET, State.HTTP2   # (hot path)
_READING = frozenset((_DETECTING, _WEBSOCKET, _HTTP2))   # the states in which bytes are read
#: an HTTP/2 SETTINGS frame header on stream 0 (or as much of one as came): a server's first bytes
#: may come before the client's preface (prior knowledge, or TLS 1.3 with ALPN h2), held until the
#: client's first bytes tell
_H2_SETTINGS = re.compile(rb"\A\x00(?:[\x00-\xff](?:[\x00-\xff](?:\x04(?:[\x00\x01]"
                          rb"(?:\x00(?:\x00(?:\x00(?:\x00|\Z)|\Z)|\Z)|\Z)|\Z)|\Z)|\Z)|\Z)", re.S)
_H2_HOLD_LIMIT = 64 * 1024


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug of ours (an internal-error row)."""


Chunk = tuple[int, bytes, int, int]             # direction, bytes, record_no, ts_ns
#: what a transform yields: bytes out (a Chunk), bytes lost out (PlainGap: a gap in what it read
#: that it could not bridge), or a problem of one direction (direction, Problem)
TransformOut = Chunk | PlainGap | tuple[int, Problem]


class StreamTransform(Protocol):
    """A transform on a connection's two byte streams (TLS records → plaintext, HTTP/2 frames →
    one stream's bytes): bytes of one direction in, the bytes it yields out, each with the record
    number and time of the packet that completed them."""

    def feed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> list[TransformOut]:
        ...

    def gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> list[TransformOut]:
        ...

    def finish(self, record_no: int, ts_ns: int) -> list[TransformOut]:
        ...


class TlsKeys:
    """What decrypts TLS in one analysis: the key log (files, $SSLKEYLOGFILE, the capture's own
    pcapng secrets) and the TLS 1.2 sessions seen, which later connections may resume."""

    __slots__ = ("keylog", "resumption")

    def __init__(self, keylog: KeyLog | None = None) -> None:
        self.keylog = keylog if keylog is not None else KeyLog()
        self.resumption = ResumptionCache()


def _counter(start: int) -> Callable[[], int]:
    """Ids after `start` (a Connection made without the pipeline's id source, in tests)."""
    ids = iter(range((start + 1) << 20, (start + 2) << 20))
    return lambda: next(ids)


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


class Connection:
    """Fed one TCP connection's stream events by the pipeline; writes rows into `rows`."""

    __slots__ = (
        "__weakref__",
        "_feed",
        "_held",
        "budgets",
        "capture",
        "client_dir",
        "conn_id",
        "forced",
        "h2",
        "h2_held",
        "h2_sniff",
        "h2_streams",
        "handshake",
        "http_seen",
        "last_ts",
        "new_id",
        "opened",
        "options",
        "parser",
        "problems",
        "replay",
        "replay_bytes",
        "replay_dirs",
        "request_seen",
        "rows",
        "state",
        "tcp_end",
        "tcp_gaps",
        "tls",
        "tls_head",
        "tls_head_dir",
        "tls_keys",
        "transforms",
        "websocket",
    )

    def __init__(self, opened: StreamOpened, rows: TableRows, options: Options, capture: str,
                 conn_id: int, budgets: Budgets | None = None, tls_keys: TlsKeys | None = None,
                 new_id: Callable[[], int] | None = None) -> None:
        self.opened = opened
        self.rows = rows
        self.options = options
        self.budgets = budgets if budgets is not None else Budgets()
        self.capture = capture
        self.conn_id = conn_id
        self.state = State.DETECTING
        self.transforms: list[StreamTransform] = []
        self.parser: HandshakeParser | None = None   # made on the first byte (SYN floods cost less)
        self.handshake: Handshake | None = None
        self.websocket: WebSocket | None = None
        self.request_seen = False
        self.client_dir = CLIENT            # which stream direction is the WebSocket client
        self.forced = bool(options.ports) and (opened.server_port in options.ports
                                               or opened.client_port in options.ports)
        self.replay: list[tuple[int, bytes, int, int]] = []
        self.replay_dirs = 0                # bit per direction with bytes in the replay
        self.replay_bytes = 0
        self.http_seen = False              # ports= mode: an HTTP start line began a direction
        self._feed: Callable[[int, bytes, int, int], None] | None = None    # (_set_feed)
        self._held: dict[int, bytearray] | None = None  # ports=: first bytes of the directions sniffed
        self.problems = ConnectionProblems(rows.problems, capture, conn_id)
        self.tcp_end = "open"
        self.tcp_gaps = 0
        self.last_ts = opened.ts_ns
        self.tls_keys = tls_keys
        self.tls: TlsSession | None = None      # the TLS transform, when the bytes are TLS records
        self.tls_head: bytes | None = b""       # the first bytes, until they tell TLS or not (then None)
        self.tls_head_dir = 0                   # … and the direction they came from
        self.new_id = new_id                    # more conn_ids (the WebSockets of an HTTP/2 connection)
        self.h2: H2Session | None = None        # the HTTP/2 stage, when the bytes are HTTP/2
        self.h2_streams: H2Streams | None = None
        self.h2_sniff = True                    # the first bytes may still be an HTTP/2 preface
        self.h2_held: list[Chunk] = []          # first bytes held until they tell HTTP/2 or not

    # --- events from the pipeline (each is the boundary where a bug of ours is caught) ---------

    def on_data(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        feed = self._feed
        if feed is not None:            # the common case: frames straight to the conversation
            self.last_ts = ts_ns
            try:
                feed(direction, data, record_no, ts_ns)
            except Exception as exc:
                self._internal_error(exc, record_no, ts_ns)
            return
        state = self.state
        if state not in _READING:
            return
        self.last_ts = ts_ns
        try:
            if self.transforms:
                self._deliver(0, self.transforms[0].feed(direction, data, record_no, ts_ns))
            elif self.tls_head is not None and state is _DETECTING:
                self._detect_tls(direction, data, record_no, ts_ns)
            else:
                self._bytes(direction, data, record_no, ts_ns)
        except Exception as exc:
            self._internal_error(exc, record_no, ts_ns)
        self._set_feed()

    def _set_feed(self) -> None:
        """on_data's short way when the bytes go nowhere else (WEBSOCKET, no direction held): the
        conversation's feed, or with TLS below it the transform's plaintext straight to that feed;
        else None."""
        ws = self.websocket
        if ws is None or self.state is not _WEBSOCKET or self._held:
            self._feed = None
        elif not self.transforms:
            self._feed = ws.feed
        elif len(self.transforms) == 1:
            self._feed = self._through_one_transform(self.transforms[0].feed, ws.feed)
        else:
            self._feed = None

    def _through_one_transform(self, transform: Callable[[int, bytes, int, int], list[TransformOut]],
                               feed: Callable[[int, bytes, int, int], None]
                               ) -> Callable[[int, bytes, int, int], None]:
        """The transform's plaintext chunks straight to the conversation; anything else it yields
        (a gap, a problem) the long way, after which the short way is set again."""
        def through(direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
            out = transform(direction, data, record_no, ts_ns)
            for i, item in enumerate(out):
                if len(item) == 4 and type(item) is tuple:
                    feed(*item)
                else:
                    self._deliver(0, out[i:])
                    self._set_feed()
                    return
        return through

    def on_gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> None:
        self.tcp_gaps += 1
        self.last_ts = ts_ns
        try:
            if self.transforms:
                if self.state in _READING:
                    self._deliver(0, self.transforms[0].gap(direction, size, record_no, ts_ns))
            else:
                self._release_tls_head(record_no, ts_ns)  # (TLS is recognised by the first bytes only)
                self._gap(direction, size, record_no, ts_ns)
        except Exception as exc:
            self._internal_error(exc, record_no, ts_ns)

    def _gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> None:
        """Bytes lost in one direction (after the transforms; size -1: how many is not known)."""
        if self.state is _WEBSOCKET and self.websocket is not None:
            self.websocket.gap(direction, size, record_no, ts_ns)
        elif self.state is _HTTP2:
            self._h2_events(self.h2.gap(direction, record_no, ts_ns))  # type: ignore[union-attr]
        elif self.state is _DETECTING:
            self.h2_sniff = False
            self._release_h2_held()
            self._handshake_events(self._parser().gap(direction))

    def on_end(self, direction: int, rst: bool, record_no: int, ts_ns: int) -> None:
        self.last_ts = ts_ns
        if rst:
            self.tcp_end = "rst"
        elif self.tcp_end != "rst":
            self.tcp_end = "fin"

    def on_problem(self, direction: int | None, problem: Problem) -> None:
        if self.state is not State.GIVEN_UP:
            self.problems.report(None if direction is None else self._sender(direction), problem)

    @property
    def is_websocket(self) -> bool:
        return self.request_seen or self.websocket is not None

    @property
    def listed(self) -> bool:
        """Written to the connections table: WebSocket (HTTP/2 ones included), or TLS (nothing
        encrypted is hidden)."""
        return (self.request_seen or self.websocket is not None or self.tls is not None
                or (self.h2_streams is not None and self.h2_streams.any))

    def close(self, reason: str, record_no: int, ts_ns: int) -> None:
        """The flow is released: flush the stages, write the connections row."""
        # the reassembler's reason for the release settles how TCP ended when no FIN/RST was seen
        # ("end-of-capture" and "idle" leave it open)
        if reason == "reset":
            self.tcp_end = "rst"
        elif reason == "closed" and self.tcp_end == "open":
            self.tcp_end = "fin"
        try:
            if self.transforms and self.state in _READING:
                self._deliver(0, self.transforms[0].finish(record_no, ts_ns))
            if self.state is _DETECTING:
                self._release_tls_head(record_no, ts_ns)      # too few bytes to tell
            if self.state is _DETECTING and self.h2_sniff:
                self.h2_sniff = False
                self._release_h2_held()
            if self.state is _HTTP2:
                self._h2_events(self.h2.finish(record_no, ts_ns))  # type: ignore[union-attr]
                self.h2_streams.finish(record_no, ts_ns, self.tcp_end)  # type: ignore[union-attr]
            if self.state is _DETECTING and self.parser is not None:
                self._handshake_events(self.parser.finish())
            if self.state is _WEBSOCKET and self.websocket is not None:
                for direction in sorted(self._held or ()):
                    self._release_held(direction, record_no, ts_ns)
                self.websocket.finish(record_no, ts_ns)
        except Exception as exc:
            self._internal_error(exc, record_no, ts_ns)
        if not self.listed:
            return
        try:
            if self.state is State.GIVEN_UP:
                self._app_abandoned()
            self.problems.list_from_now()
            if self.websocket is not None:
                self.websocket.check_close_echoed(self.tcp_end, record_no, ts_ns)
            self.problems.finish()
            if self.h2_streams is not None and self.h2_streams.any:
                # H2Streams.finish wrote the streams' rows; those of a connection given up are written here
                for stream in self.h2_streams.streams.values():
                    self._stream_row(stream)
            else:
                self.rows.connections.append(self._row(self.handshake, self.websocket, self.conn_id,
                                                       "tcp" if self.tls is None else "tls", None,
                                                       self.tcp_end))
        except Exception as exc:
            self._internal_error(exc, record_no, ts_ns)

    def _app_abandoned(self) -> None:
        """A connection given up (a bug of ours): the requests its application decoding saw are
        written unanswered all the same (the decoders are not asked for more)."""
        conversations = [self.websocket] if self.websocket is not None else []
        if self.h2_streams is not None:
            conversations += [stream.websocket for stream in self.h2_streams.streams.values()]
        for ws in conversations:
            if ws.app is not None:
                ws.app.abandon()

    # --- state ---------------------------------------------------------------------------------

    def _to(self, event: Event) -> None:
        new = _TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition(f"{event.value} in state {self.state.value}")
        self.state = new
        self._set_feed()

    def _internal_error(self, exc: Exception, record_no: int | None, ts_ns: int | None) -> None:
        """A bug of ours: one internal-error row (never a bad-input kind), the connection given up."""
        if raise_bugs():
            raise exc
        self.state = State.GIVEN_UP
        self._feed = None
        self.parser = None
        listed = self.listed
        o = self.opened
        where = "" if listed else (f" (TCP {_address(o.client)}:{o.client_port} → "
                                   f"{_address(o.server)}:{o.server_port}, not yet known to be WebSocket)")
        detail = (f"{describe(exc)}{where}; this connection is not analysed further (a bug of ws-analyzer: "
                  "please report it)")
        self.rows.problems.append(ProblemRow(self.capture, self.conn_id if listed else None,
                                             record_no or None, ts_ns, None, str(ProblemKind.INTERNAL_ERROR),
                                             detail))

    # --- bytes ---------------------------------------------------------------------------------

    def _deliver(self, level: int, out: list[TransformOut]) -> None:
        """What transform `level` yielded, to the transform above it or, past the last one, to
        what reads the bytes in this state; problems to the connection's problems."""
        above = self.transforms[level + 1] if level + 1 < len(self.transforms) else None
        for item in out:
            if type(item) is PlainGap:
                if above is not None:
                    self._deliver(level + 1, above.gap(item.direction, -1, item.record_no, item.ts_ns))
                else:
                    self._gap(item.direction, -1, item.record_no, item.ts_ns)
            elif len(item) == 2:
                direction, problem = item
                self.problems.report(self._sender(direction), problem)
            elif above is not None:
                self._deliver(level + 1, above.feed(*item))
            else:
                self._bytes(*item)
            if self.state not in _READING:
                return

    # --- TLS ---------------------------------------------------------------------------------------

    def _release_tls_head(self, record_no: int, ts_ns: int) -> None:
        """TLS detection ends without TLS: the first bytes held go on, as the side that sent them."""
        head, self.tls_head = self.tls_head, None
        if head:
            self._bytes(self.tls_head_dir, head, record_no, ts_ns)

    def _detect_tls(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        """The connection's first bytes: TLS records (a ClientHello, or any record of a capture
        that began after the handshake) stack the TLS transform before anything reads them as
        HTTP or as WebSocket frames, on a ports= port too; anything else is read as it comes."""
        if self.tls_head and direction != self.tls_head_dir:
            # the other side spoke before the first one's bytes could tell: not a TLS start
            self._release_tls_head(record_no, ts_ns)
            if self.state is _DETECTING:
                self._bytes(direction, data, record_no, ts_ns)
            return
        head = self.tls_head + data if self.tls_head else data
        if not head:
            return
        if len(head) < (6 if head[0] == 0x16 else 3) and head[0] in _TLS_RECORD_TYPES:
            self.tls_head, self.tls_head_dir = head, direction   # too few bytes to tell (1-byte segments)
            return
        self.tls_head = None
        if not looks_like_tls(head):
            self._bytes(direction, head, record_no, ts_ns)
            return
        hello = head[0] == 0x16 and len(head) > 5 and head[5] == 0x01
        if hello:
            self.client_dir = direction
        keys = self.tls_keys if self.tls_keys is not None else TlsKeys()
        self.tls = TlsSession(keys.keylog, self.client_dir, keys.resumption)
        self.transforms.append(self.tls)
        self.problems.list_from_now()
        self._set_feed()
        self._deliver(0, self.tls.feed(direction, head, record_no, ts_ns))

    def _bytes(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        """Bytes of one direction (after the transforms) to what reads them in this state."""
        if self.state is _WEBSOCKET:
            if self._held and direction in self._held:
                self._sniff(direction, data, record_no, ts_ns)
            else:
                self.websocket.feed(direction, data, record_no, ts_ns)  # type: ignore[union-attr]
        elif self.state is _HTTP2:
            self._h2_events(self.h2.feed(direction, data, record_no, ts_ns))  # type: ignore[union-attr]
        elif self.state is _DETECTING:
            if self.h2_sniff and self._h2_sniffed(direction, data, record_no, ts_ns):
                return
            if self.forced and not self.request_seen and not self.http_seen and self._forced_bytes(
                    direction, data, record_no, ts_ns):
                return
            self._handshake_events(self._parser().feed(direction, data, record_no, ts_ns))

    def _parser(self) -> HandshakeParser:
        if self.parser is None:
            self.parser = HandshakeParser(budget=self.budgets.handshake)
        return self.parser

    def _sender(self, direction: int) -> str:
        return SENDER_NAMES[0 if direction == self.client_dir else 1]

    # --- the HTTP/1.1 upgrade ----------------------------------------------------------------------

    def _handshake_events(self, events: list[HandshakeEvent]) -> None:
        for ev in events:
            if isinstance(ev, HandshakeDone):
                self.request_seen = True
                self.handshake = ev.handshake
                self.client_dir = ev.client_direction
                self.problems.list_from_now()
                if not ev.handshake.upgraded:
                    self._to(Event.REQUEST_ANSWERED)
                    continue
                # frames follow a 101 with its upgrade headers even when the RFC 6455 §4.1
                # verdict (ok) is a failure: they are decoded and listed all the same
                self._start_websocket(Event.UPGRADED, ev.handshake)
                for direction in (self.client_dir, 1 - self.client_dir):
                    trailing = ev.trailing[direction]
                    if trailing:
                        rec, ts = self._trailing_origin(ev.handshake, direction)
                        self.websocket.feed(direction, trailing, rec, ts)  # type: ignore[union-attr]
                return
            if isinstance(ev, H2cUpgrade):
                self._start_h2(ev.client_direction, b"", ev.record_no, ev.ts_ns, upgraded=ev)
                return
            if isinstance(ev, NotWebSocket):
                if (self.forced and not self.request_seen and not self.http_seen
                        and not self._replay_is_http()):
                    self._replay_as_frames()
                else:
                    self._to(Event.NOT_WEBSOCKET)
                    self.parser = None
                    self.problems.drop()
                return
            if isinstance(ev, Problem):
                self.problems.report(None, ev)

    def _trailing_origin(self, hs: Handshake, direction: int) -> tuple[int, int]:
        if direction == self.client_dir:
            return hs.request_record_no or 0, hs.request_ts_ns or self.last_ts
        return hs.response_record_no or 0, hs.response_ts_ns or self.last_ts

    def _start_websocket(self, event: Event, handshake: Handshake | None) -> None:
        self._to(event)
        self.parser = None
        self.replay = []
        self.websocket = WebSocket(self.rows, self.problems, self.options, self.budgets, self.conn_id,
                                   self.client_dir, handshake)
        self.problems.list_from_now()

    # --- HTTP/2 (RFC 8441) ---------------------------------------------------------------------------

    def _h2_sniffed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> bool:
        """The first bytes of the connection (after TLS): True when they were taken by the HTTP/2
        detection: the client's preface starts the HTTP/2 stage; a server's SETTINGS frame that came
        first is held until the other side's first bytes tell; anything else ends the detection and
        the held bytes are read as they would have been."""
        held = b"".join(d for dr, d, _r, _t in self.h2_held if dr == direction)
        head = held + data if held else data
        if not head:
            return True                         # (an empty TLS record's plaintext)
        verdict = looks_like_h2(head)
        if verdict is None:                     # a proper prefix of the preface: wait
            self.h2_held = [c for c in self.h2_held if c[0] != direction]
            self.h2_held.append((direction, head, record_no, ts_ns))
            return True
        if verdict:
            self._start_h2(direction, head, record_no, ts_ns)
            return True
        others = [c for c in self.h2_held if c[0] != direction]
        other_head = b"".join(c[1] for c in others)
        if ((not others or looks_like_h2(other_head) is None)   # the other side: nothing, or a preface begun
                and _H2_SETTINGS.match(head) and len(head) <= _H2_HOLD_LIMIT):
            self.h2_held = [*others, (direction, head, record_no, ts_ns)]
            return True
        self.h2_sniff = False
        self.h2_held = [c for c in self.h2_held if c[0] != direction]
        self._release_h2_held()
        if self.state is _DETECTING:
            self._bytes(direction, head, record_no, ts_ns)
        return True

    def _release_h2_held(self) -> None:
        held, self.h2_held = self.h2_held, []
        for d, chunk, rec, ts in held:
            if self.state is not _DETECTING and self.state is not _WEBSOCKET:
                return
            self._bytes(d, chunk, rec, ts)

    def _start_h2(self, client_dir: int, preface: bytes, record_no: int, ts_ns: int,
                  upgraded: H2cUpgrade | None = None) -> None:
        """HTTP/2 from here: after the client's preface (prior knowledge, ALPN h2), or after a 101
        to `Upgrade: h2c` (`upgraded`: the bytes after it, the server's first; stream 1 is the
        upgraded request, answered in HTTP/2)."""
        self.client_dir = client_dir
        self.h2_sniff = False
        self._to(Event.H2_PREFACE)
        self.parser = None
        self.h2 = H2Session(client_dir)
        new_id = self.new_id if self.new_id is not None else _counter(self.conn_id)
        self.h2_streams = H2Streams(self.rows, self.problems, self.options, self.budgets, self.capture,
                                    self.conn_id, client_dir, new_id)
        self.h2_streams.write_row = self._stream_row
        if upgraded is not None:
            for d in (1 - client_dir, client_dir):
                if upgraded.trailing[d]:
                    self._h2_events(self.h2.feed(d, upgraded.trailing[d], record_no, ts_ns))
            return
        held, self.h2_held = self.h2_held, []
        for d, chunk, rec, ts in held:              # the server's first frames, which came first
            if d != client_dir:
                self._h2_events(self.h2.feed(d, chunk, rec, ts))
        self._h2_events(self.h2.feed(client_dir, preface, record_no, ts_ns))

    def _stream_row(self, stream: H2Stream) -> None:
        self.rows.connections.append(self._row(stream.handshake, stream.websocket, stream.conn_id,
                                               "h2" if self.tls is not None else "h2c", stream.stream_id,
                                               stream.end))

    def _h2_events(self, events: list[H2Out]) -> None:
        if events:
            self.h2_streams.handle(events, self._sender)  # type: ignore[union-attr]
            if self.h2_streams.any:  # type: ignore[union-attr]
                self.problems.list_from_now()

    # --- ports= mode: WebSocket frames without a handshake --------------------------------------------

    def _forced_bytes(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> bool:
        """Before any handshake: True when `data` was taken as frames. The first bytes decide: not
        HTTP → frames; a request or status line → HTTP for good, through the handshake parser only
        (a plain exchange is ignored, never replayed as frames); else the bytes are kept to be
        replayed as frames if the parser finds they are not HTTP."""
        if not self.replay and not _HTTP_HEAD.match(data):
            self._frames_without_handshake(direction, data)
            self.websocket.feed(direction, data, record_no, ts_ns)  # type: ignore[union-attr]
            return True
        bit = 1 << direction
        if not self.replay_dirs & bit and _HTTP_START_LINE.match(data):
            self.http_seen = True
            self.replay = []
            return False
        self.replay_dirs |= bit
        if self.replay_bytes < _REPLAY_LIMIT:
            self.replay.append((direction, data, record_no, ts_ns))
            self.replay_bytes += len(data)
        return False

    def _frames_without_handshake(self, direction: int, data: bytes) -> None:
        """The server is the side on the given port; when both or neither are, the side whose
        first frame is masked is the client. The other direction's first bytes are held until
        they show whether they begin an HTTP message (_sniff)."""
        opened = self.opened
        ports = self.options.ports
        if opened.server_port in ports and opened.client_port not in ports:
            self.client_dir = CLIENT
        elif opened.client_port in ports and opened.server_port not in ports:
            self.client_dir = SERVER
        else:
            masked = len(data) >= 2 and bool(data[1] & 0x80)
            self.client_dir = direction if masked else 1 - direction
        self._start_websocket(Event.FRAMES_WITHOUT_HANDSHAKE, None)
        other = 1 - direction
        if not self.replay_dirs & (1 << other):
            self._held = {other: bytearray()}
        self._set_feed()

    def _sniff(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        """The first bytes of the direction that had not spoken when frames began: held until a
        line end, bytes no start line begins with, or _MAX_START_LINE of them; then frames, or an
        HTTP start line (the capture began inside an HTTP body: the connection is HTTP)."""
        assert self._held is not None
        held = self._held[direction]
        held += data
        http = _HTTP_START_LINE.match(held) is not None
        if not http and b"\n" not in data and len(held) < _MAX_START_LINE and _HTTP_HEAD.match(held):
            return                                  # could still be a start line: wait for more
        del self._held[direction]
        self._set_feed()
        if http:
            self._http_after_frames(direction, bytes(held), record_no, ts_ns)
        else:
            self.websocket.feed(direction, bytes(held), record_no, ts_ns)  # type: ignore[union-attr]

    def _release_held(self, direction: int, record_no: int, ts_ns: int) -> None:
        """The stream ended while first bytes were held: they were no start line, so they are frames."""
        assert self._held is not None
        held = self._held.pop(direction)
        self._set_feed()
        if held:
            self.websocket.feed(direction, bytes(held), record_no, ts_ns)  # type: ignore[union-attr]

    def _http_after_frames(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        self.http_seen = True
        self._to(Event.HTTP_AFTER_FRAMES)
        line = data.split(b"\n", 1)[0][:80].decode("latin-1").strip()
        what = "a status line" if line.startswith("HTTP/") else "a request line"
        self.problems.report(self._sender(direction), Problem(
            ProblemKind.HTTP_ON_DECODE_AS_PORT,
            f"expected=WebSocket frames on a ports= port, found={what} ({line.split(' ', 1)[0]}…) "
            "as this side's first bytes: the connection is HTTP, not decoded further", record_no, ts_ns))

    def _replay_is_http(self) -> bool:
        """Does a direction's replayed bytes begin with an HTTP request or status line (one whose
        first packet was too short to tell)?"""
        for direction in (0, 1):
            head = b"".join(data for d, data, _r, _t in self.replay if d == direction)
            if _HTTP_START_LINE.match(head):
                return True
        return False

    def _replay_as_frames(self) -> None:
        replay = self.replay
        if not replay:
            self._to(Event.NOT_WEBSOCKET)
            return
        self._frames_without_handshake(replay[0][0], replay[0][1])
        for direction, data, record_no, ts_ns in replay:
            self.websocket.feed(direction, data, record_no, ts_ns)  # type: ignore[union-attr]

    # --- the connections row -------------------------------------------------------------------------

    def _row(self, hs: Handshake | None, ws: WebSocket | None, conn_id: int, transport: str,
             h2_stream_id: int | None, tcp_end: str) -> ConnectionRow:
        """The connections row of the connection's WebSocket (or of one of its HTTP/2 streams)."""
        o = self.opened
        swap = self.client_dir == SERVER
        client, client_port = (o.server, o.server_port) if swap else (o.client, o.client_port)
        server, server_port = (o.client, o.client_port) if swap else (o.server, o.server_port)
        cside = ws.client_side() if ws is not None else None
        sside = ws.server_side() if ws is not None else None
        tls = self.tls.info if self.tls is not None else None
        # handshake_ok False ⇔ "handshake-failed" (the summary counts failed handshakes by either);
        # its close_code stays null: no WebSocket connection was established for the application
        status: str | None
        websocket = self.is_websocket or h2_stream_id is not None
        if not websocket:                   # a TLS connection listed for itself
            status, code = None, None
        elif hs is not None and not hs.ok:
            status, code = "handshake-failed", None
        elif ws is not None:
            status, code = ws.close_status(tcp_end)
        elif tcp_end == "open":
            status, code = "open-at-end", None
        else:
            status, code = "abnormal", 1006
        cframes, cmessages = cside.sent() if cside is not None else (0, 0)
        sframes, smessages = sside.sent() if sside is not None else (0, 0)
        client_closed = cside is not None and cside.sent_close
        server_closed = sside is not None and sside.sent_close
        rtt = None
        if hs is not None and hs.request_ts_ns is not None and hs.response_ts_ns is not None:
            rtt = (hs.response_ts_ns - hs.request_ts_ns) / 1e9
        return ConnectionRow(
            capture=self.capture, conn_id=conn_id,
            client=_address(client), client_port=client_port,
            server=_address(server), server_port=server_port,
            ip_version=o.ip_version, first_packet=o.record_no, start=o.ts_ns, end=self.last_ts,
            duration=self.last_ts - o.ts_ns, syn_seen=o.syn_seen,
            version=hs.version if hs is not None else -1, draft=hs.draft if hs is not None else "unknown",
            http_status=hs.http_status if hs else None, handshake_ok=hs.ok if hs else None,
            accept_valid=hs.accept_valid if hs else None, failure_reason=hs.failure_reason if hs else None,
            host=hs.host if hs else None, path=hs.path if hs else None, origin=hs.origin if hs else None,
            user_agent=hs.user_agent if hs else None, server_software=hs.server if hs else None,
            subprotocols_offered=(", ".join(hs.subprotocols_offered)
                                  if hs and hs.subprotocols_offered else None),
            subprotocol=hs.subprotocol if hs else None,
            extensions_offered=hs.extensions_offered if hs else None,
            extensions=hs.extensions if hs else None,
            compression=hs.deflate.extension if hs and hs.deflate else None,
            cookies_present=bool(hs.cookies_present) if hs else False,
            versions_supported=(", ".join(map(str, hs.versions_supported))
                                if hs and hs.versions_supported else None),
            close_code_client=cside.close_code if cside is not None and client_closed else None,
            close_code_server=sside.close_code if sside is not None and server_closed else None,
            close_reason_client=cside.close_reason if cside is not None and client_closed else None,
            close_reason_server=sside.close_reason if sside is not None and server_closed else None,
            close_initiator=ws.first_close[0] if ws is not None and ws.first_close else None,
            close_code=code, close_status=status, tcp_end=self.tcp_end,
            frames_client=cframes, frames_server=sframes,
            messages_client=cmessages, messages_server=smessages,
            bytes_client=cside.bytes if cside is not None else 0,
            bytes_server=sside.bytes if sside is not None else 0,
            handshake_rtt=rtt, tcp_gaps=self.tcp_gaps,
            request_ts=hs.request_ts_ns if hs else None,
            transport=transport, h2_stream_id=h2_stream_id, tcp_id=self.conn_id,
            websocket=websocket,
            tls_version=tls.version if tls is not None else None,
            tls_cipher=tls.cipher if tls is not None else None,
            sni=tls.sni if tls is not None else None,
            alpn=tls.alpn if tls is not None else None,
            decrypted=tls.decrypted if tls is not None else None,
            not_decrypted=tls.not_decrypted if tls is not None else None,
            app_protocol=ws.app_protocol if ws is not None else None,
        )
