"""One WebSocket conversation: frame decoders and message assemblers per side, the close handshake
and ping/pong pairing across both sides, and the rows they write (sans-IO).

The connection layer (analyzer.connection) decides that a byte stream carries WebSocket frames and
hands them here, direction by direction, after the handshake; a TCP connection (or, later, one
HTTP/2 stream or one TLS session's plaintext) carries 0..n conversations. A conversation writes
its frames and messages rows as they complete, and fills its part of the connections row at the
end (`fill_row`).

Frames of one sender go FrameDecoder (or the hixie / hybi-04 decoder) → MessageAssembler → rows;
whole one-frame messages go from the decoder's fast path straight to the rows
(FrameDecoder.emit_whole_messages) while WHOLE_MESSAGES is on (tests compare both ways).
Each data message's payload also goes to the conversation's application decoding
(analyzer.app.session) while it wants them: from the start, until no decoder is found for the
first data message (or the decoder is given up), after which the assemblers hand nothing over.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from analyzer.app.session import AppSession
from analyzer.budget import HANDSHAKE_BUDGET_BYTES, PAYLOAD_BUDGET_BYTES, PayloadBudget
from analyzer.events import SENDER_NAMES, Frame, Handshake, Message, Problem
from analyzer.frames import CutFrame, FrameDecoder
from analyzer.frames_hixie import HixieFrameDecoder
from analyzer.frames_hybi04 import PrefixMaskedFrameDecoder, connection_masking_key_04
from analyzer.messages import AppFeed, MessageAssembler
from analyzer.protocol import ProblemKind, is_hixie, uses_hybi04_opcodes
from analyzer.tables import (
    F_HEADER_SHIFT,
    F_INCOMPLETE,
    F_SERVER,
    M_BINARY,
    M_COMPRESSED,
    M_INCOMPLETE,
    M_SERVER,
    MAX_KEPT_PAYLOAD_BYTES,
    ConnectionProblems,
    KeptPayloads,
    TableRows,
)

__all__ = ["WHOLE_MESSAGES", "Budgets", "Options", "WebSocket"]

#: Whole one-frame messages go from the frame decoder's fast path straight to the rows (False:
#: every frame takes the general path; tests/test_whole_messages.py compares the two).
WHOLE_MESSAGES = True
_MAX_PENDING_PINGS = 64
_FrameDecoders = FrameDecoder | HixieFrameDecoder | PrefixMaskedFrameDecoder


@dataclass(frozen=True)
class Options:
    """Analysis options shared by every connection (see analyzer.analyze)."""

    ports: frozenset[int] = frozenset()
    max_message_bytes: int = 16 << 20
    payloads: bool | float = False
    preview_len: int = 64
    validate_utf8: bool = True
    max_payload_bytes: int = MAX_KEPT_PAYLOAD_BYTES
    keylog_files: tuple[str, ...] = ()      # NSS key logs that decrypt TLS (analyze(keylog=))
    app: bool = True                        # decode application protocols (analyzer.app)


@dataclass
class Budgets:
    """Memory shared by all connections of one analysis (divided when processes share a capture,
    so that the total stays the same)."""

    payload: PayloadBudget = field(default_factory=lambda: PayloadBudget(PAYLOAD_BUDGET_BYTES))
    handshake: PayloadBudget = field(default_factory=lambda: PayloadBudget(HANDSHAKE_BUDGET_BYTES))
    parts: int = 1

    @classmethod
    def split(cls, parts: int) -> Budgets:
        return cls(PayloadBudget(PAYLOAD_BUDGET_BYTES // parts),
                   PayloadBudget(HANDSHAKE_BUDGET_BYTES // parts), parts)

    def of_rows(self, rows: TableRows, options: Options) -> KeptPayloads:
        """This process's share of the caps kept with the rows (the problem rows listed, the bytes
        of kept payloads: options.max_payload_bytes); returns the kept-payload budget."""
        rows.problems.limit_to_share(self.parts)
        return rows.kept.limit_to(options.max_payload_bytes // self.parts)


class Side:
    """Decoder, assembler and counters of one sender (client or server)."""

    __slots__ = ("assembler", "bytes", "close_code", "close_reason", "decoder", "frame_flags", "frames",
                 "message_flags", "messages", "pings", "sender", "sent_close")

    def __init__(self, decoder: _FrameDecoders, assembler: MessageAssembler, sender: str) -> None:
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

    def sent(self) -> tuple[int, int]:
        """(frames, messages) this sender sent, the fast path's one-frame messages included."""
        whole = self.decoder.whole_messages if type(self.decoder) is FrameDecoder else 0
        return self.frames + whole, self.messages + whole


class WebSocket:
    """One conversation. Fed the bytes that follow the handshake, per stream direction.

    Args:
        rows: the sink the frames and messages rows go to.
        problems: the connection's problem log (limits and order are kept there).
        conn_id: the conversation's id in the tables.
        client_dir: which stream direction (0/1) carries the client's frames.
        handshake: what the opening handshake said; None when frames were decoded without one
            (ports= mode: every RSV bit allowed, RFC 6455 framing).
    """

    def __init__(self, rows: TableRows, problems: ConnectionProblems, options: Options, budgets: Budgets,
                 conn_id: int, client_dir: int, handshake: Handshake | None) -> None:
        self.rows = rows
        self.problems = problems
        self.conn_id = conn_id
        self.client_dir = client_dir
        self.handshake = handshake
        self.first_close: tuple[str, int] | None = None
        next_message_id = itertools.count(1).__next__
        deflate = handshake.deflate if handshake is not None else None
        hixie = handshake is not None and is_hixie(handshake.draft)
        hybi04 = handshake is not None and uses_hybi04_opcodes(handshake.version)
        allowed_rsv = 0x7 if handshake is None else (0x4 if deflate is not None else 0)
        kept = budgets.of_rows(rows, options)
        sides = []
        for direction in (0, 1):
            from_client = direction == client_dir
            decoder: _FrameDecoders
            if hixie:
                decoder = HixieFrameDecoder(from_client=from_client, max_payload=options.max_message_bytes,
                                            budget=budgets.payload)
            elif hybi04 and from_client and handshake is not None:
                key04 = (connection_masking_key_04(handshake.key, handshake.server_nonce)
                         if handshake.version == 4 and handshake.key and handshake.server_nonce else None)
                decoder = PrefixMaskedFrameDecoder(max_payload=options.max_message_bytes,
                                                   masking_key_04=key04, allowed_rsv=allowed_rsv,
                                                   budget=budgets.payload)
            else:
                decoder = FrameDecoder(from_client=from_client, max_payload=options.max_message_bytes,
                                       hybi04_opcodes=hybi04, allowed_rsv=allowed_rsv, budget=budgets.payload)
            assembler = MessageAssembler(
                next_message_id=next_message_id, from_client=from_client, deflate=deflate,
                max_message_bytes=options.max_message_bytes, keep_payload=options.payloads,
                preview_len=options.preview_len, validate_utf8=options.validate_utf8, kept=kept)
            side = Side(decoder, assembler, SENDER_NAMES[0 if from_client else 1])
            if WHOLE_MESSAGES and type(decoder) is FrameDecoder:
                decoder.emit_whole_messages(assembler, rows.whole_message_writer(), conn_id,
                                            side.frame_flags, side.message_flags)
            sides.append(side)
        self.sides = sides                      # indexed by stream direction
        self._decoders = [(side, side.decoder.feed) for side in sides]
        self.app: AppSession | None = None
        if options.app:
            self.app = AppSession(rows, problems, conn_id, handshake.subprotocol if handshake else None)
            for side in sides:
                side.assembler.app = self._app_feed(self.app, side.sender)

    def _app_feed(self, session: AppSession, sender: str) -> AppFeed:
        """What one sender's assembler hands each message's payload to; when the session wants no
        more, neither assembler hands anything over again."""
        def feed(message_id: int, text: bool, payload: bytes, record_no: int, ts_ns: int,
                 complete: bool) -> None:
            if not session.message(sender, message_id, text, payload, record_no, ts_ns, complete):
                for side in self.sides:
                    side.assembler.app = None
        return feed

    @property
    def app_protocol(self) -> str | None:
        """The application protocol decoded on this conversation (None: no decoder chosen)."""
        return self.app.protocol if self.app is not None else None

    # --- bytes and stream events, per direction -----------------------------------------------

    def feed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> None:
        """Decode one direction's bytes; write the rows of what they complete."""
        side, decode = self._decoders[direction]
        side.bytes += len(data)
        events = decode(data, record_no, ts_ns)
        if events:
            self._frame_events(direction, side, events)

    def gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> None:
        side = self.sides[direction]
        self._frame_events(direction, side, side.decoder.gap(size, record_no, ts_ns))
        for event in side.assembler.gap(record_no, ts_ns):
            self._message_event(side, event)

    def finish(self, record_no: int, ts_ns: int) -> None:
        """The streams ended: frames and messages the capture ended inside are written."""
        for direction, side in enumerate(self.sides):
            self._frame_events(direction, side, side.decoder.finish())
            for event in side.assembler.finish(record_no, ts_ns):
                self._message_event(side, event)
        if self.app is not None:
            self.app.finish(record_no, ts_ns)

    # --- frames and messages ---------------------------------------------------------------------

    def _frame_events(self, direction: int, side: Side, events: list[Any]) -> None:
        """A frames row per frame (the hot path: the Frame, FrameInfo and Message tuples are
        unpacked once, not read field by field)."""
        feed = side.assembler.feed
        add_frame = self.rows.frames.add
        conn_id = self.conn_id
        base = side.frame_flags
        for ev in events:
            if type(ev) is not Frame:
                if type(ev) is CutFrame:
                    self._cut_frame(side, ev)
                else:
                    self.problems.report(side.sender, ev)
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
        elif opcode == 0xA and payload is not None:
            sent = self.sides[1 - direction].pings.pop(payload, None)
            if sent is not None:
                return ts_ns - sent
        return -1

    def _message_event(self, side: Side, ev: Message | Problem) -> None:
        if type(ev) is not Message:
            self.problems.report(side.sender, ev)  # type: ignore[arg-type]
            return
        side.messages += 1
        (message_id, kind, ts_start, ts_end, frames, wire_bytes, size, compressed, preview, payload,
         complete, first_record_no, last_record_no) = ev
        flags = (side.message_flags | (M_BINARY if kind == "binary" else 0)
                 | (M_COMPRESSED if compressed else 0) | (0 if complete else M_INCOMPLETE))
        self.rows.messages.add(self.conn_id, message_id, flags, ts_start, ts_end, frames, wire_bytes,
                               size, preview, payload, first_record_no, last_record_no)

    # --- the end -----------------------------------------------------------------------------------

    def check_close_echoed(self, tcp_end: str, record_no: int, ts_ns: int) -> None:
        """RFC 6455 §5.5.1: an endpoint that receives a Close frame answers with one. A TCP end
        with only one side's close frame is reported (not a capture that simply stopped)."""
        if self.first_close is None or tcp_end == "open":
            return
        if sum(side.sent_close for side in self.sides) != 1:
            return
        first, code = self.first_close
        other = "server" if first == "client" else "client"
        how = "a TCP reset" if tcp_end == "rst" else "a TCP FIN"
        self.problems.report(other, Problem(ProblemKind.CLOSE_NOT_ECHOED,
                                            f"expected=a close frame answering the {first}'s close ({code}), "
                                            f"found={how} without one", record_no or None, ts_ns))

    def close_status(self, tcp_end: str) -> tuple[str, int | None]:
        """(close_status, close_code) of the connections row, once the handshake was ok."""
        closes = sum(1 for side in self.sides if side.sent_close)
        if closes == 2:
            status = "clean"
        elif closes == 1:
            status = "half-closed"
        elif tcp_end == "open":
            return "open-at-end", None
        else:
            status = "abnormal"
        code = self.first_close[1] if self.first_close is not None else 1006
        return status, code

    def client_side(self) -> Side:
        return self.sides[self.client_dir]

    def server_side(self) -> Side:
        return self.sides[1 - self.client_dir]
