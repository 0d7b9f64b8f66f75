"""One TCP connection's WebSocket life: handshake, then frames and messages per side, then close.

Rules of the state machine (one place, h11-style):
  Rule 1: a connection starts in HANDSHAKE (or, when its port is in `ports=` and its first bytes are
          not HTTP, in FRAMES with roles taken from the port and the masking). On a `ports=` port,
          bytes that begin with an HTTP request or status line (either direction, whichever comes
          first) are HTTP: only the handshake parser sees them, never the frame decoders; and when
          frames began on one side and the other side's first bytes are such a line, FRAMES →
          IGNORED (HTTP_ON_DECODE_AS_PORT; the frames already listed stay).
  Rule 2: HandshakeDone(upgraded) → FRAMES, with the bytes that followed the handshake fed first,
          whatever the verdict (`ok`: a wrong accept key still has its frames decoded, and its
          close_status is "handshake-failed" as for every handshake that is not ok); a handshake
          that did not upgrade stays in HANDSHAKE (keep-alive: another request may follow);
          NotWebSocket → IGNORED, and nothing more of the connection is looked at (on a `ports=`
          port whose bytes looked like HTTP only at first sight: replayed as frames instead).
  Rule 3: in FRAMES each side has its own frame decoder and message assembler; the close handshake
          (who closed first, codes, echo) and ping/pong pairing are tracked here across both sides.
  Rule 4: the connections row is written when the reassembler releases the flow, and only for a
          connection that carried an upgrade request or frames.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import weakref
from dataclasses import dataclass, field

from analyzer.events import (
    CLIENT,
    SERVER,
    Frame,
    Handshake,
    HandshakeDone,
    Message,
    NotWebSocket,
    Problem,
    StreamOpened,
)
from analyzer.fastlane import FastLane
from analyzer.frames import CutFrame, FrameDecoder, PayloadBudget
from analyzer.frames_hixie import HixieFrameDecoder
from analyzer.frames_hybi04 import PrefixMaskedFrameDecoder, connection_masking_key_04
from analyzer.handshake import HandshakeParser
from analyzer.messages import MessageAssembler
from analyzer.protocol import ProblemKind, is_hixie, uses_hybi04_opcodes
from analyzer.tables import (
    F_COMPRESSED,
    F_FIN,
    F_HEADER_SHIFT,
    F_INCOMPLETE,
    F_MASKED,
    F_RSV1,
    F_RSV2,
    F_RSV3,
    F_SERVER,
    M_BINARY,
    M_COMPRESSED,
    M_INCOMPLETE,
    M_SERVER,
    MAX_KEPT_PAYLOAD_BYTES,
    KeptPayloads,
    ProblemLimiter,
    TableRows,
)

# _frame_events packs a Frame's booleans into the row flags by shifting them into these bits:
assert tuple(1 << i for i in range(4, 10)) == (F_FIN, F_RSV1, F_RSV2, F_RSV3, F_MASKED, F_COMPRESSED)

HANDSHAKE, FRAMES, IGNORED = "handshake", "frames", "ignored"
SENDERS = ("client", "server")
# ports= mode (Rule 1): bytes that may begin an HTTP message (a method token and a space, "HTTP/",
# or too few bytes to tell) go to the handshake parser; a complete request or status line makes
# the connection HTTP for good (RFC 9112 §3, §4: the grammar the handshake parser reads).
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_HTTP_HEAD = re.compile(rb"[\r\n]*(?:HTTP/|[A-Za-z][" + _TCHAR + rb"]{0,23}(?: |\Z))")
_HTTP_START_LINE = re.compile(rb"[\r\n]*(?:[A-Za-z][" + _TCHAR + rb"]{0,23} +[^ \t\r\n]+ +HTTP/\d\.\d"
                              rb"|HTTP/\d\.\d +\d{3}(?:[ \t][^\r\n]*)?)[ \t]*\r?\n")
_REPLAY_LIMIT = 64 * 1024
_MAX_START_LINE = 8192          # as handshake.MAX_LINE
PAYLOAD_BUDGET = 64 << 20       # partial frame payloads held by all decoders of an analysis
HANDSHAKE_BUDGET = 64 << 20     # bytes held by all handshake parsers of an analysis
_MAX_PENDING_PINGS = 64
#: Whole one-frame messages go through analyzer.fastlane (False: every frame takes the general
#: path; the tests compare the two).
FAST_LANE = True


@dataclass
class Budgets:
    """Memory shared by all connections of one analysis (divided when processes share a capture,
    so that the total stays the same)."""

    payload: PayloadBudget = field(default_factory=lambda: PayloadBudget(PAYLOAD_BUDGET))
    handshake: PayloadBudget = field(default_factory=lambda: PayloadBudget(HANDSHAKE_BUDGET))
    parts: int = 1

    @classmethod
    def split(cls, parts: int) -> Budgets:
        return cls(PayloadBudget(PAYLOAD_BUDGET // parts), PayloadBudget(HANDSHAKE_BUDGET // parts), parts)

    def of_rows(self, rows: TableRows, options: Options) -> KeptPayloads:
        """This process's share of the caps kept with the rows (the problem rows listed, the bytes
        of kept payloads: options.max_payload_bytes); returns the kept-payload budget."""
        rows.problems.limit_to_share(self.parts)
        return rows.kept.limit_to(options.max_payload_bytes // self.parts)


@dataclass(frozen=True)
class Options:
    """Analysis options shared by every connection (see analyzer.analyze)."""

    ports: frozenset[int] = frozenset()
    max_message_bytes: int = 16 << 20
    payloads: bool | float = False
    preview_len: int = 64
    validate_utf8: bool = True
    max_payload_bytes: int = MAX_KEPT_PAYLOAD_BYTES


def _address(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


class Side:
    """Decoders and counters of one sender (client or server)."""

    __slots__ = ("assembler", "bytes", "close_code", "close_reason", "decoder", "frame_flags", "frames",
                 "lane", "message_flags", "messages", "pings", "sender", "sent_close")

    def __init__(self, decoder: FrameDecoder | HixieFrameDecoder | PrefixMaskedFrameDecoder,
                 assembler: MessageAssembler, sender: str) -> None:
        self.decoder = decoder
        self.assembler = assembler
        self.sender = sender
        self.frame_flags = F_SERVER if sender == "server" else 0      # row flags of this sender
        self.message_flags = M_SERVER if sender == "server" else 0
        self.frames = 0
        self.messages = 0
        self.bytes = 0
        self.sent_close = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.pings: dict[bytes, int] = {}
        self.lane: FastLane | _FirstBytes | None = None

    def sent(self) -> tuple[int, int]:
        """(frames, messages) this sender sent, the fast lane's one-frame messages included."""
        taken = self.lane.taken if self.lane is not None else 0
        return self.frames + taken, self.messages + taken


class Session:
    """Fed a connection's stream events by the pipeline; writes rows into `rows`."""

    def __init__(self, opened: StreamOpened, rows: TableRows, options: Options, capture: str,
                 conn_id: int, budgets: Budgets | None = None) -> None:
        self.opened = opened
        self.rows = rows
        self.options = options
        self.budgets = budgets if budgets is not None else Budgets()
        self.capture = capture
        self.conn_id = conn_id
        self.state = HANDSHAKE
        self.parser: HandshakeParser | None = None   # made on the first byte (SYN floods cost less)
        self.handshake: Handshake | None = None
        self.request_seen = False
        self.client_dir = CLIENT            # which stream direction is the WebSocket client
        self.sides: list[Side] | None = None  # indexed by stream direction
        self.forced = bool(options.ports) and (opened.server_port in options.ports
                                               or opened.client_port in options.ports)
        self.replay: list[tuple[int, bytes, int, int]] = []
        self.replay_dirs = 0                # bit per direction with bytes in the replay
        self.http_seen = False              # ports= mode: an HTTP start line began a direction
        self.pending_problems: list[tuple[str | None, Problem]] = []  # until we know it is WebSocket
        self.limiter = ProblemLimiter()
        self.replay_bytes = 0
        self.first_close: tuple[str, int | None] | None = None
        self.tcp_end = "open"
        self.tcp_gaps = 0
        self.last_ts = opened.ts_ns
        self.next_message_id = itertools.count(1).__next__

    # --- events from the pipeline --------------------------------------------------------------

    def on_data(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        self.last_ts = ts_ns
        state = self.state
        if state is FRAMES:
            side = self.sides[direction]  # type: ignore[index]
            lane = side.lane
            if lane is not None:
                # whole one-frame messages straight to the rows; the rest to the general path
                taken = lane.take(data, record_no, ts_ns)
                if taken:
                    side.bytes += taken
                    if lane.problems:
                        self._lane_problems(side, lane)
                    if taken == len(data):
                        return
                    data = data[taken:]
            self._frames(direction, data, record_no, ts_ns)
        elif state is HANDSHAKE:
            if self.forced and not self.request_seen and not self.http_seen and self._forced_bytes(
                    direction, data, record_no, ts_ns):
                return
            parser = self.parser
            if parser is None:
                parser = self.parser = HandshakeParser(budget=self.budgets.handshake)
            self._handshake_events(parser.feed(direction, data, record_no, ts_ns))

    def on_gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> None:
        self.tcp_gaps += 1
        self.last_ts = ts_ns
        if self.state is FRAMES and self.sides is not None:
            side = self.sides[direction]
            self._frame_events(direction, side, side.decoder.gap(size, record_no, ts_ns))
            for mev in side.assembler.gap(record_no, ts_ns):
                self._message_event(side, mev)
        elif self.state is HANDSHAKE:
            if self.parser is None:
                self.parser = HandshakeParser(budget=self.budgets.handshake)
            self._handshake_events(self.parser.gap(direction))

    def on_end(self, direction: int, rst: bool, record_no: int, ts_ns: int) -> None:
        self.last_ts = ts_ns
        if rst:
            self.tcp_end = "rst"
        elif self.tcp_end != "rst":
            self.tcp_end = "fin"

    def on_problem(self, direction: int | None, problem: Problem) -> None:
        sender = None if direction is None else self._sender(direction)
        self._problem(sender, problem)

    @property
    def is_websocket(self) -> bool:
        return self.request_seen or self.sides is not None     # (sides: FRAMES was entered)

    def close(self, reason: str, record_no: int, ts_ns: int) -> None:
        """The flow is released: flush decoders, write the connections row."""
        # the reassembler's reason for the release settles how TCP ended when no FIN/RST was seen
        # ("end-of-capture" and "idle" leave it open)
        if reason == "reset":
            self.tcp_end = "rst"
        elif reason == "closed" and self.tcp_end == "open":
            self.tcp_end = "fin"
        if self.state is HANDSHAKE and self.parser is not None:
            self._handshake_events(self.parser.finish())
        if self.state is FRAMES and self.sides is not None:
            for side in self.sides:
                if type(side.lane) is _FirstBytes:
                    side.lane.flush(self, record_no, ts_ns)
            for direction, side in enumerate(self.sides):
                self._frame_events(direction, side, side.decoder.finish())
                for mev in side.assembler.finish(record_no, ts_ns):
                    self._message_event(side, mev)
        if self.is_websocket:
            self._flush_pending_problems()
            self._check_close_echoed(record_no, ts_ns)
            self.rows.problems.extend(self.limiter.summary_rows(self.capture, self.conn_id,
                                                                "on this connection"))
            self._write_connection()

    # --- handshake -----------------------------------------------------------------------------

    def _handshake_events(self, events: list) -> None:
        for ev in events:
            if isinstance(ev, HandshakeDone):
                self.request_seen = True
                self.handshake = ev.handshake
                self.client_dir = ev.client_direction
                self._flush_pending_problems()
                if ev.handshake.upgraded:
                    # frames follow a 101 with its upgrade headers even when the RFC 6455 §4.1
                    # verdict (ok) is a failure: they are decoded and listed all the same
                    self._start_frames(ev.handshake)
                    for direction in (self.client_dir, 1 - self.client_dir):
                        trailing = ev.trailing[direction]
                        if trailing:
                            rec, ts = self._trailing_origin(ev.handshake, direction)
                            self._frames(direction, trailing, rec, ts)
                    return
            elif isinstance(ev, NotWebSocket):
                if (self.forced and not self.request_seen and not self.http_seen
                        and not self._replay_is_http()):
                    self._replay_as_frames()
                else:
                    self.state = IGNORED
                    self.parser = None
                    self.pending_problems = []
                return
            elif isinstance(ev, Problem):
                self._problem(None, ev)

    def _trailing_origin(self, hs: Handshake, direction: int) -> tuple[int, int]:
        if direction == self.client_dir:
            return hs.request_record_no or 0, hs.request_ts_ns or self.last_ts
        return hs.response_record_no or 0, hs.response_ts_ns or self.last_ts

    def _start_frames(self, hs: Handshake | None) -> None:
        self.state = FRAMES
        self.parser = None
        self.replay = []
        opts = self.options
        deflate = hs.deflate if hs is not None else None
        hixie = hs is not None and is_hixie(hs.draft)
        hybi04 = hs is not None and uses_hybi04_opcodes(hs.version)
        allowed_rsv = 0x7 if hs is None else (0x4 if deflate is not None else 0)
        sides = []
        for direction in (0, 1):
            from_client = direction == self.client_dir
            decoder: FrameDecoder | HixieFrameDecoder | PrefixMaskedFrameDecoder
            if hixie:
                decoder = HixieFrameDecoder(from_client=from_client, max_payload=opts.max_message_bytes,
                                            budget=self.budgets.payload)
            elif hybi04 and from_client and hs is not None:
                key04 = (connection_masking_key_04(hs.key, hs.server_nonce)
                         if hs.version == 4 and hs.key and hs.server_nonce else None)
                decoder = PrefixMaskedFrameDecoder(max_payload=opts.max_message_bytes, masking_key_04=key04,
                                                   allowed_rsv=allowed_rsv, budget=self.budgets.payload)
            else:
                decoder = FrameDecoder(from_client=from_client, max_payload=opts.max_message_bytes,
                                       hybi04_opcodes=hybi04, allowed_rsv=allowed_rsv,
                                       budget=self.budgets.payload)
            assembler = MessageAssembler(
                next_message_id=self.next_message_id, from_client=from_client, deflate=deflate,
                max_message_bytes=opts.max_message_bytes, keep_payload=opts.payloads,
                preview_len=opts.preview_len, validate_utf8=opts.validate_utf8,
                kept=self.budgets.of_rows(self.rows, opts))
            side = Side(decoder, assembler, "client" if from_client else "server")
            if FAST_LANE and type(decoder) is FrameDecoder:
                side.lane = FastLane(decoder, assembler, self.rows.frames, self.rows.messages, self.conn_id,
                                     side.frame_flags, side.message_flags)
            sides.append(side)
        self.sides = sides

    def _start_frames_without_handshake(self, direction: int, data: bytes) -> None:
        """ports= mode with no handshake: the server is the side on the given port; when both or
        neither are, the side whose first frame is masked is the client."""
        opened = self.opened
        if opened.server_port in self.options.ports and opened.client_port not in self.options.ports:
            self.client_dir = CLIENT
        elif opened.client_port in self.options.ports and opened.server_port not in self.options.ports:
            self.client_dir = SERVER
        else:
            masked = len(data) >= 2 and bool(data[1] & 0x80)
            self.client_dir = direction if masked else 1 - direction
        self._start_frames(None)
        other = 1 - direction
        if not self.replay_dirs & (1 << other):
            side = self.sides[other]  # type: ignore[index]
            side.lane = _FirstBytes(weakref.ref(self), other, side.lane)

    def _http_after_frames(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        """ports= mode: the direction that had not spoken when frames began starts with an HTTP
        request or status line (the capture began inside an HTTP body): the connection is HTTP,
        nothing more of it is decoded (Rule 1); the frames already listed stay, with a problem."""
        self.http_seen = True
        self.state = IGNORED
        line = data.split(b"\n", 1)[0][:80].decode("latin-1").strip()
        what = "a status line" if line.startswith("HTTP/") else "a request line"
        self._problem(self._sender(direction), Problem(
            ProblemKind.HTTP_ON_DECODE_AS_PORT,
            f"expected=WebSocket frames on a ports= port, found={what} ({line.split(' ', 1)[0]}…) "
            "as this side's first bytes: the connection is HTTP, not decoded further", record_no, ts_ns))

    def _forced_bytes(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> bool:
        """ports= mode before any handshake (Rule 1): True when `data` was taken as frames. The
        first bytes decide: not HTTP → frames; a request or status line → HTTP for good, through
        the handshake parser only (a plain exchange is ignored, never replayed as frames); else
        the bytes are kept to be replayed as frames if the parser finds they are not HTTP."""
        if not self.replay and not _HTTP_HEAD.match(data):
            self._start_frames_without_handshake(direction, data)
            self._frames(direction, data, record_no, ts_ns)
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
            self.state = IGNORED
            return
        self._start_frames_without_handshake(replay[0][0], replay[0][1])
        for direction, data, record_no, ts_ns in replay:
            self._frames(direction, data, record_no, ts_ns)

    # --- frames --------------------------------------------------------------------------------

    def _sender(self, direction: int) -> str:
        return "client" if direction == self.client_dir else "server"

    def _frames(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        """Decode one direction's bytes; write a frames row per frame (the hot path: the Frame,
        FrameInfo and Message tuples are unpacked once, not read field by field)."""
        assert self.sides is not None
        side = self.sides[direction]
        side.bytes += len(data)
        events = side.decoder.feed(data, record_no, ts_ns)
        if events:
            self._frame_events(direction, side, events)

    def _frame_events(self, direction: int, side: Side, events: list) -> None:
        feed = side.assembler.feed
        add_frame = self.rows.frames.add
        conn_id = self.conn_id
        base = side.frame_flags
        for ev in events:
            if type(ev) is not Frame:
                if type(ev) is CutFrame:
                    self._cut_frame(side, ev)
                else:
                    self._problem(side.sender, ev)  # type: ignore[arg-type]
                continue
            info, message_events = feed(ev)
            side.frames += 1
            (frame_no, frame_ts, opcode, fin, rsv1, rsv2, rsv3, masked, payload_len, payload,
             header_len, _raw) = ev
            message_id, compressed, close_code, close_reason = info
            rtt_ns = -1 if opcode < 8 else self._control(direction, side, opcode, payload, frame_ts,
                                                        close_code, close_reason)
            flags = (base | opcode | (fin << 4) | (rsv1 << 5) | (rsv2 << 6) | (rsv3 << 7) | (masked << 8)
                     | (compressed << 9) | (header_len << F_HEADER_SHIFT))
            add_frame(conn_id, frame_no, frame_ts, flags, payload_len,
                      -1 if close_code is None else close_code,
                      -1 if message_id is None else message_id, rtt_ns, close_reason)
            for mev in message_events:
                self._message_event(side, mev)

    def _cut_frame(self, side: Side, ev: CutFrame) -> None:
        """A frame the capture ended inside: a row (complete False, payload_len as declared). A data
        frame joins its message as a non-final fragment with an unknown payload, so the message
        stays open and the assembler's finish emits it incomplete; a control frame's payload (the
        close code, the ping data) is unknown, so it takes no part in the close and ping books."""
        (frame_no, frame_ts, opcode, fin, rsv1, rsv2, rsv3, masked, payload_len, _payload, header_len,
         raw) = ev
        message_id = -1
        compressed = False
        if opcode < 8:
            fragment = Frame(frame_no, frame_ts, opcode, False, rsv1, rsv2, rsv3, masked, payload_len, None,
                             header_len, raw)
            (mid, compressed, _code, _reason), message_events = side.assembler.feed(fragment)
            message_id = -1 if mid is None else mid
            for mev in message_events:
                self._message_event(side, mev)
        side.frames += 1
        flags = (side.frame_flags | opcode | (fin << 4) | (rsv1 << 5) | (rsv2 << 6) | (rsv3 << 7)
                 | (masked << 8) | (compressed << 9) | F_INCOMPLETE | (header_len << F_HEADER_SHIFT))
        self.rows.frames.add(self.conn_id, frame_no, frame_ts, flags, payload_len, -1, message_id, -1, None)

    def _control(self, direction: int, side: Side, opcode: int, payload: bytes | None, ts_ns: int,
                 close_code: int | None, close_reason: str | None) -> int:
        """Close and ping/pong bookkeeping; returns a pong's round-trip time in ns, else -1."""
        if opcode == 0x8:
            if not side.sent_close:
                side.sent_close = True
                side.close_code = 1005 if close_code is None else close_code
                side.close_reason = close_reason
                if self.first_close is None:
                    self.first_close = (side.sender, side.close_code)
        elif opcode == 0x9 and payload is not None:
            if len(side.pings) < _MAX_PENDING_PINGS:
                side.pings.setdefault(payload, ts_ns)
        elif opcode == 0xA and payload is not None and self.sides is not None:
            sent = self.sides[1 - direction].pings.pop(payload, None)
            if sent is not None:
                return ts_ns - sent
        return -1

    def _lane_problems(self, side: Side, lane: FastLane) -> None:
        problems = lane.problems
        lane.problems = []
        for problem in problems:
            self._problem(side.sender, problem)

    def _message_event(self, side: Side, ev: Message | Problem) -> None:
        if type(ev) is not Message:
            self._problem(side.sender, ev)  # type: ignore[arg-type]
            return
        side.messages += 1
        (message_id, kind, ts_start, ts_end, frames, wire_bytes, size, compressed, preview, payload,
         complete, first_record_no, last_record_no) = ev
        flags = (side.message_flags | (M_BINARY if kind == "binary" else 0)
                 | (M_COMPRESSED if compressed else 0) | (0 if complete else M_INCOMPLETE))
        self.rows.messages.add(self.conn_id, message_id, flags, ts_start, ts_end, frames, wire_bytes,
                               size, preview, payload, first_record_no, last_record_no)

    def _problem(self, sender: str | None, problem: Problem) -> None:
        """Problems of a connection not yet known to be WebSocket wait; an ignored one's are dropped."""
        if not self.is_websocket:
            if self.state is HANDSHAKE and len(self.pending_problems) < 100:
                self.pending_problems.append((sender, problem))
            return
        self._flush_pending_problems()
        kind = str(problem.kind)
        if self.limiter.admit(kind, problem.record_no, problem.ts_ns):
            self.rows.problems.append((self.capture, self.conn_id, problem.record_no, problem.ts_ns,
                                       sender, kind, problem.detail))

    def _check_close_echoed(self, record_no: int, ts_ns: int) -> None:
        """RFC 6455 §5.5.1: an endpoint that receives a Close frame answers with one. A TCP end
        with only one side's close frame is reported (not a capture that simply stopped)."""
        if self.sides is None or self.first_close is None or self.tcp_end == "open":
            return
        closed = [self._sender(d) for d, side in enumerate(self.sides) if side.sent_close]
        if len(closed) != 1:
            return
        first, code = self.first_close
        other = "server" if first == "client" else "client"
        how = "a TCP reset" if self.tcp_end == "rst" else "a TCP FIN"
        self._problem(other, Problem(ProblemKind.CLOSE_NOT_ECHOED,
                                     f"expected=a close frame answering the {first}'s close ({code}), "
                                     f"found={how} without one", record_no or None, ts_ns))

    def _flush_pending_problems(self) -> None:
        if self.pending_problems:
            pending, self.pending_problems = self.pending_problems, []
            for sender, problem in pending:
                self._problem(sender, problem)

    # --- the connections row -------------------------------------------------------------------

    def _close_status(self, hs: Handshake | None) -> tuple[str, int | None]:
        # handshake_ok False ⇔ "handshake-failed" (the summary counts failed handshakes by either);
        # its close_code stays null: no WebSocket connection was established for the application
        if hs is not None and not hs.ok:
            return "handshake-failed", None
        sides = self.sides or []
        closes = sum(1 for s in sides if s.sent_close)
        if closes == 2:
            status = "clean"
        elif closes == 1:
            status = "half-closed"
        elif self.tcp_end == "open":
            return "open-at-end", None
        else:
            status = "abnormal"
        code = self.first_close[1] if self.first_close is not None else 1006
        return status, code

    def _write_connection(self) -> None:
        o = self.opened
        hs = self.handshake
        swap = self.client_dir == SERVER
        client, client_port = (o.server, o.server_port) if swap else (o.client, o.client_port)
        server, server_port = (o.client, o.client_port) if swap else (o.server, o.server_port)
        sides = self.sides
        if sides is not None:
            cside, sside = sides[self.client_dir], sides[1 - self.client_dir]
        else:
            cside = sside = None
        status, code = self._close_status(hs)
        rtt = None
        if hs is not None and hs.request_ts_ns is not None and hs.response_ts_ns is not None:
            rtt = (hs.response_ts_ns - hs.request_ts_ns) / 1e9

        def val(side: Side | None, attr: str, default: object = 0) -> object:
            return default if side is None else getattr(side, attr)

        cframes, cmessages = cside.sent() if cside is not None else (0, 0)
        sframes, smessages = sside.sent() if sside is not None else (0, 0)

        version, draft = (hs.version, hs.draft) if hs is not None else (-1, "unknown")
        self.rows.connections.append((
            self.capture, self.conn_id, _address(client), client_port, _address(server), server_port,
            o.ip_version, o.record_no, o.ts_ns, self.last_ts, self.last_ts - o.ts_ns, o.syn_seen,
            version, draft,
            hs.http_status if hs else None, hs.ok if hs else None, hs.accept_valid if hs else None,
            hs.failure_reason if hs else None,
            hs.host if hs else None, hs.path if hs else None, hs.origin if hs else None,
            hs.user_agent if hs else None, hs.server if hs else None,
            ", ".join(hs.subprotocols_offered) if hs and hs.subprotocols_offered else None,
            hs.subprotocol if hs else None, hs.extensions_offered if hs else None,
            hs.extensions if hs else None, hs.deflate.extension if hs and hs.deflate else None,
            bool(hs.cookies_present) if hs else False,
            ", ".join(map(str, hs.versions_supported)) if hs and hs.versions_supported else None,
            val(cside, "close_code", None) if cside and cside.sent_close else None,
            val(sside, "close_code", None) if sside and sside.sent_close else None,
            cside.close_reason if cside and cside.sent_close else None,
            sside.close_reason if sside and sside.sent_close else None,
            self.first_close[0] if self.first_close else None,
            code, status, self.tcp_end,
            cframes, sframes, cmessages, smessages,
            val(cside, "bytes"), val(sside, "bytes"), rtt, self.tcp_gaps,
            hs.request_ts_ns if hs else None,
        ))


class _FirstBytes:
    """Stands in for the fast lane of the direction that had not spoken when a ports= connection
    began as frames (no handshake): its first bytes are held until they show whether they begin
    with an HTTP request or status line (a line end, or bytes no start line begins with; at most
    _MAX_START_LINE of them), then the real lane (or None) takes its place and the bytes held go
    to the frame decoder, or the connection is HTTP. It refers to its session weakly: a session
    is freed by reference counting alone (the pipeline runs with the cyclic GC off)."""

    __slots__ = ("_direction", "_held", "_lane", "_session")
    problems: tuple = ()          # read by Session.on_data as a lane's (never any), as is taken
    taken = 0

    def __init__(self, session: weakref.ref[Session], direction: int, lane: FastLane | None) -> None:
        self._session = session
        self._direction = direction
        self._lane = lane
        self._held = bytearray()

    def take(self, data: bytes, record_no: int, ts_ns: int) -> int:
        """Hold or hand on `data`; it is all taken (on_data counts it: the session corrects that)."""
        session = self._session()
        if session is None or session.sides is None:
            return 0
        held = self._held
        held += data
        http = _HTTP_START_LINE.match(held) is not None
        if not http and b"\n" not in data and len(held) < _MAX_START_LINE and _HTTP_HEAD.match(held):
            return len(data)                      # could still be a start line: wait for more
        side = session.sides[self._direction]
        side.lane = self._lane
        side.bytes -= len(held)                   # on_data adds len(data); _frames adds the rest
        if http:
            session._http_after_frames(self._direction, bytes(held), record_no, ts_ns)
        else:
            session._frames(self._direction, bytes(held), record_no, ts_ns)
        self._held = bytearray()
        return len(data)

    def flush(self, session: Session, record_no: int, ts_ns: int) -> None:
        """The stream ended while the bytes were held: they were no start line, so they are frames."""
        held, self._held = self._held, bytearray()
        if held and session.sides is not None:
            side = session.sides[self._direction]
            side.lane = self._lane
            side.bytes -= len(held)
            session._frames(self._direction, bytes(held), record_no, ts_ns)


def problem_row(capture: str, problem: Problem, conn_id: int | None = None,
                sender: str | None = None) -> tuple:
    """A problems row for problems that belong to no WebSocket session (capture, packets)."""
    return (capture, conn_id, problem.record_no, problem.ts_ns, sender, str(problem.kind), problem.detail)


__all__ = ["SENDERS", "Options", "Session", "problem_row"]
