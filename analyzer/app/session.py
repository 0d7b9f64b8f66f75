"""One WebSocket connection's application protocol: the decoder chosen for it, every data message
fed to it, its application messages and exchanges written as rows (sans-IO).

Rules:
1. The decoder is the one claiming the negotiated subprotocol (chosen_by "subprotocol",
   confidence 1.0); without one, the connection's first data message (either side) is sniffed by
   every decoder and the most confident one at or over registry.MIN_CONFIDENCE is chosen
   (chosen_by "content"). No decoder: `message` returns False and is never called again (the
   conversation stops handing payloads over: no cost for the rest of the connection).
2. Every data message, both directions in capture order, whole and decompressed (a message cut by
   a gap, the capture's end or max_message_bytes comes with complete=False), is fed to it.
3. AppMalformed → an `app-protocol-malformed` problem with the decoder's reason (and what did
   parse of that message is kept). After MAX_MALFORMED of them the decoder is given up, with one
   more problem saying so.
4. Any other exception from a decoder is a bug: one `internal-error` problem (as the connection
   layer words it), the decoder given up; the frames and messages of the connection go on being
   analysed, and the rows written before stay.
5. At the end, the decoder's `finish` and the exchanges still open (unanswered) are written; a
   connection given up by a bug of ours elsewhere writes its open exchanges all the same (`abandon`).
"""

from __future__ import annotations

import json
from typing import Any

from analyzer.app.base import ROLES, AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.exchanges import Exchanges
from analyzer.app.registry import by_content, by_subprotocol
from analyzer.bugs import describe, raise_bugs
from analyzer.events import Problem
from analyzer.protocol import ProblemKind
from analyzer.tables import AppMessageRow, ConnectionProblems, TableRows

__all__ = ["MAX_MALFORMED", "AppSession"]

#: malformed application messages after which a connection's decoder is given up
MAX_MALFORMED = 100
#: characters of a decoder's reason (or of a short text field) kept
_MAX_TEXT = 300
_ROLES = frozenset(ROLES)


def _text(value: Any) -> str | None:
    """A string column's value from whatever a decoder put there (None stays None), bounded."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


class AppSession:
    """The application decoding of one WebSocket connection (see the module doc).

    Args:
        rows: where app_messages and exchanges rows go.
        problems: the connection's problem log.
        conn_id: the connection's id in the tables.
        subprotocol: the negotiated Sec-WebSocket-Protocol (None: none or no handshake).
    """

    __slots__ = ("capture", "chosen_by", "confidence", "conn_id", "decoder", "exchanges", "last", "malformed",
                 "problems", "protocol", "rows", "undecided")

    def __init__(self, rows: TableRows, problems: ConnectionProblems, conn_id: int,
                 subprotocol: str | None) -> None:
        self.rows = rows
        self.problems = problems
        self.conn_id = conn_id
        self.capture = problems.capture
        self.decoder: AppDecoder | None = None
        self.protocol: str | None = None        # the chosen decoder's name (connections.app_protocol)
        self.chosen_by = ""
        self.confidence = 0.0
        self.malformed = 0
        self.exchanges = Exchanges(self.capture, conn_id)
        self.last: tuple[str, int, int, int] = ("client", 0, 0, 0)   # sender, message_id, record_no, ts
        self.undecided = True
        chosen = by_subprotocol(subprotocol)
        if chosen is not None:
            self.undecided = False
            self._start(chosen, "subprotocol", 1.0, None, None)

    @property
    def active(self) -> bool:
        """Messages are still wanted: a decoder works, or none was chosen yet."""
        return self.undecided or self.decoder is not None

    def message(self, sender: str, message_id: int, text: bool, payload: bytes, record_no: int, ts_ns: int,
                complete: bool) -> bool:
        """One data message of the connection; returns whether more are wanted (rule 1)."""
        msg = WsMessage(self.conn_id, message_id, sender, ts_ns, text, payload, complete)
        if self.undecided:
            self.undecided = False
            found = by_content(msg)
            if found is None:
                return False
            self._start(found[0], "content", found[1], record_no, ts_ns)
        decoder = self.decoder
        if decoder is None:
            return False
        self.last = (sender, message_id, record_no, ts_ns)
        try:
            out = decoder.feed(msg)
        except AppMalformed as exc:
            out = exc.messages
            self._malformed(sender, f"message {message_id}: {exc}", record_no, ts_ns)
        except Exception as exc:
            self._bug(exc, record_no, ts_ns)
            return False
        if out:
            self._record(out, sender, message_id, ts_ns, record_no)
        return self.decoder is not None

    def finish(self, record_no: int, ts_ns: int) -> None:
        """The connection ended: what the decoder holds, then the unanswered requests (rule 5)."""
        decoder = self.decoder
        if decoder is not None:
            sender, message_id, _record, last_ts = self.last
            out: list[AppMessage] = []
            try:
                out = decoder.finish()
            except AppMalformed as exc:
                out = exc.messages
                self._malformed(None, f"at the connection's end: {exc}", record_no, ts_ns)
            except Exception as exc:
                self._bug(exc, record_no, ts_ns)
            if out and message_id:
                self._record(out, sender, message_id, last_ts, record_no)
        self.decoder = None
        self.rows.exchanges.extend(self.exchanges.finish())

    def abandon(self) -> None:
        """The connection was given up (a bug of ours elsewhere): no more decoding; the exchanges
        still open are written unanswered."""
        self.decoder = None
        self.undecided = False
        self.rows.exchanges.extend(self.exchanges.finish())

    # --- inside ------------------------------------------------------------------------------------

    def _start(self, decoder: type[AppDecoder], chosen_by: str, confidence: float, record_no: int | None,
               ts_ns: int | None) -> None:
        self.protocol = decoder.name
        self.chosen_by = chosen_by
        self.confidence = min(1.0, max(0.0, confidence))
        try:
            self.decoder = decoder()
        except Exception as exc:
            self._bug(exc, record_no, ts_ns)

    def _record(self, out: list[AppMessage], sender: str, message_id: int, ts_ns: int,
                record_no: int) -> None:
        """The rows of the application messages one WebSocket message gave, and their pairing."""
        try:
            rows = []
            for index, m in enumerate(out):
                role = m.role if m.role in _ROLES else "message"
                correlation = _text(m.correlation_id)
                channel = _text(m.channel)
                status = _text(m.status)
                fields = json.dumps(m.fields, ensure_ascii=False, separators=(",", ":"), default=str)
                rows.append(AppMessageRow(self.capture, self.conn_id, message_id, index, sender, ts_ns,
                                          str(m.protocol), str(m.type), channel, correlation, role, status,
                                          fields, self.chosen_by, self.confidence))
                if correlation is None:
                    continue
                if role == "request":
                    self.rows.exchanges.extend(self.exchanges.request(str(m.protocol), correlation, channel,
                                                                      message_id, ts_ns))
                elif role == "response":
                    row = self.exchanges.response(str(m.protocol), correlation, message_id, ts_ns, status)
                    if row is not None:
                        self.rows.exchanges.append(row)
        except Exception as exc:            # what a decoder returned cannot be written: its bug
            self._bug(exc, record_no, ts_ns)
            return
        self.rows.app_messages.extend(rows)

    def _malformed(self, sender: str | None, reason: str, record_no: int, ts_ns: int) -> None:
        self.malformed += 1
        self.problems.report(sender, Problem(ProblemKind.APP_PROTOCOL_MALFORMED,
                                             f"{self.protocol}: {_text(reason)}", record_no or None, ts_ns))
        if self.malformed >= MAX_MALFORMED and self.decoder is not None:
            self.decoder = None
            self.problems.report(None, Problem(
                ProblemKind.APP_PROTOCOL_MALFORMED,
                f"{self.protocol}: decoder given up after {self.malformed} malformed messages; the rest of "
                "this connection is not decoded as it", record_no or None, ts_ns))

    def _bug(self, exc: Exception, record_no: int | None, ts_ns: int | None) -> None:
        """A decoder's unexpected exception (rule 4)."""
        if raise_bugs():
            raise exc
        self.decoder = None
        self.problems.report(None, Problem(
            ProblemKind.INTERNAL_ERROR,
            f"{describe(exc)}; the {self.protocol} decoder of this connection is given up (its frames and "
            "messages are still analysed; a bug of ws-analyzer: please report it)", record_no or None, ts_ns))
