"""Stream bytes of one direction → Frame / Problem events for hixie-75/76 and hybi-00..03 framing.

This module owns the sentinel framing of draft-hixie-thewebsocketprotocol-75/76 (Section 4.2
for the client reading, 5.3 for the server; hybi-00..03 are hixie-76 renamed). It reports the
same `events.Frame` as frames.py, with RFC 6455 opcodes:

- frame type 0x00, UTF-8 bytes, 0xFF: text frame → opcode 1, fin True, payload_len = the bytes
  between the delimiters (header_len 1: the 0xFF terminator is counted in neither).
- frame type with the high bit set (0x80-0xFF), a length in base-128 digits (high bit = more
  digits follow, most significant digit first), then that many bytes: binary → opcode 2.
- type 0xFF with length 0 (bytes 0xFF 0x00): the closing frame (hixie-76) → opcode 8,
  payload_len 0, payload b"".
- frame types 0x01-0x7F: the draft says read to 0xFF and discard; we do, and report
  HIXIE_FRAME_ERROR (no Frame).

Rules (as in frames.py): nothing raises out; a Frame carries the record_no/ts_ns of the call
that completed it; a frame over `max_payload` is counted, not kept (FRAME_TOO_LARGE, payload
None); the 0xFF search is `bytes.find` over new bytes only, never a rescan. After a TCP gap
the data resumes at a frame start if its first byte is 0x00, else just after the next 0xFF
(the end of a text frame), and FRAMES_LOST_AFTER_GAP reports the bytes skipped. A gap wholly
inside a length-prefixed payload keeps sync (that frame's payload is None).
"""

from __future__ import annotations

import re

from analyzer.budget import SHARED_BUDGET, BudgetedPayload, PayloadBudget
from analyzer.events import Frame, FrameEvent, Problem
from analyzer.frames import CutFrame
from analyzer.protocol import ProblemKind

__all__ = ["HixieFrameDecoder"]

# draft-hixie-thewebsocketprotocol-76, Section 4.2: the length of a high-bit frame is a run of
# bytes with the high bit set, ended by one without it. More than 9 digits (63 bits) is garbage.
_MAX_LENGTH_DIGITS = 9
_LENGTH_RE = re.compile(rb"[\x80-\xff]{0,%d}[\x00-\x7f]" % (_MAX_LENGTH_DIGITS - 1))
_HIGH_RUN_RE = re.compile(rb"[\x80-\xff]*")

_IDLE = 0       # at a frame boundary
_TEXT = 1       # inside a 0x00-0x7F frame, looking for 0xFF
_BINARY = 2     # inside a length-prefixed payload
_LOST = 3       # after a gap: looking for a frame start


class HixieFrameDecoder(BudgetedPayload):
    """Decode the frames of one direction of a hixie-75/76 (hybi-00..03) connection.

    Args:
        from_client: the direction (kept for symmetry with FrameDecoder; hixie frames are
            never masked, whoever sends them).
        max_payload: payloads longer than this are counted and skipped, not kept.
        budget: the bound on partial payloads shared with other decoders (frames.SHARED_BUDGET).
    """

    __slots__ = (
        "_buf", "_count", "_dropped", "_fresh", "_hlen", "_last", "_length",
        "_lost_cause", "_lost_record", "_max_payload", "_skipped", "_state",
        "_ttype",
        "bytes_consumed", "frames_decoded", "from_client", "stopped",
    )

    def __init__(self, *, from_client: bool, max_payload: int = 16 << 20,
                 budget: PayloadBudget | None = None) -> None:
        self._budget = SHARED_BUDGET if budget is None else budget
        self._held = 0
        self._dropped = False            # text: the payload is no longer being kept
        self.from_client = from_client
        self._max_payload = max(0, max_payload)
        self._buf = bytearray()          # only ever holds an incomplete length header
        self._state = _IDLE
        self._ttype = 0                  # frame type byte of the current frame
        self._payload: bytearray | None = None
        self._count = 0                  # text: payload bytes seen so far
        self._last = (0, 0)              # record_no, ts_ns of the last feed
        self._remaining = 0              # binary: payload bytes still to come
        self._length = 0                 # binary: payload length
        self._hlen = 0
        self._fresh = False              # lost: no byte seen since the gap yet
        self._skipped = 0
        self._lost_cause = ""
        self._lost_record: int | None = None
        self.frames_decoded = 0
        self.bytes_consumed = 0
        self.stopped = False             # hixie framing always resynchronises; kept for the interface

    def feed(self, data: bytes, record_no: int, ts_ns: int) -> list[FrameEvent]:
        """Take the next bytes of the direction; return the frames and problems they complete."""
        out: list[FrameEvent] = []
        if not data:
            return out
        if type(data) is not bytes:
            data = bytes(data)
        self._last = (record_no, ts_ns)
        src: bytes = data
        if self._buf:
            # an incomplete length header is waiting: it is a few bytes at most
            src = bytes(self._buf) + data       # not counted yet: counted with pos below
            self._buf.clear()
        end = len(src)
        pos = 0
        max_payload = self._max_payload
        while pos < end:
            state = self._state
            if state == _IDLE:
                ttype = src[pos]
                if ttype < 0x80:
                    self._state = _TEXT
                    self._ttype = ttype
                    self._dropped = False
                    self._count = 0
                    self._drop_payload()     # nothing accumulated yet (see _TEXT)
                    pos += 1
                    continue
                m = _LENGTH_RE.match(src, pos + 1)
                if m is None:
                    if end - pos - 1 < _MAX_LENGTH_DIGITS:
                        self._buf += src[pos:]
                        self.bytes_consumed += pos
                        return out
                    out.append(Problem(
                        ProblemKind.HIXIE_FRAME_ERROR,
                        f"expected=at most {_MAX_LENGTH_DIGITS} length digits, found more "
                        f"(frame type 0x{ttype:02X})", record_no, ts_ns))
                    # skip the whole run of length digits (they may be 0xFF bytes)
                    run = _HIGH_RUN_RE.match(src, pos + 1)
                    run_end = run.end() if run is not None else pos + 1
                    self._lose(run_end - pos, "unreadable hixie frame length", record_no)
                    pos = run_end
                    continue
                length = 0
                for digit in src[pos + 1:m.end()]:   # at most 9 header bytes, not payload
                    length = (length << 7) | (digit & 0x7F)
                hlen = m.end() - pos
                pos = m.end()
                if ttype == 0xFF and length == 0:
                    out.append(Frame(record_no, ts_ns, 8, True, False, False, False, False, 0, b"",
                                     hlen, None))
                    self.frames_decoded += 1
                    continue
                stop = pos + length
                if stop <= end and length <= max_payload:
                    out.append(Frame(record_no, ts_ns, 2, True, False, False, False, False, length,
                                     src[pos:stop], hlen, None))
                    self.frames_decoded += 1
                    pos = stop
                    continue
                self._state = _BINARY
                self._ttype = ttype
                self._length = self._remaining = length
                self._hlen = hlen
                if length <= max_payload:
                    self._payload = bytearray()
                else:
                    self._drop_payload()
                    out.append(Problem(
                        ProblemKind.FRAME_TOO_LARGE,
                        f"expected=payload_len<={max_payload}, found={length} (binary): "
                        f"payload counted, not kept", record_no, ts_ns))
            elif state == _TEXT:
                j = src.find(b"\xff", pos)
                stop = end if j < 0 else j
                n = stop - pos
                keep = self._ttype == 0 and not self._dropped and self._count + n <= max_payload
                if j >= 0 and self._count == 0 and keep:
                    payload: bytes | None = src[pos:j]          # whole frame in this call
                elif keep and self._budget.take(n):
                    if self._payload is None:
                        self._payload = bytearray()
                    self._payload += memoryview(src)[pos:stop]
                    self._held += n
                    payload = None
                else:
                    if self._ttype == 0 and not self._dropped:
                        if keep:              # within max_payload, but the shared budget is used up
                            out.append(self._over_budget(self._count + n, record_no, ts_ns))
                        else:
                            out.append(Problem(
                                ProblemKind.FRAME_TOO_LARGE,
                                f"expected=payload_len<={max_payload}, found>{max_payload} "
                                f"(text, no 0xFF yet): payload counted, not kept", record_no, ts_ns))
                        self._dropped = True
                    self._drop_payload()
                    payload = None
                self._count += n
                if j < 0:
                    pos = end
                    break
                pos = j + 1
                self._state = _IDLE
                if self._ttype != 0:
                    out.append(Problem(
                        ProblemKind.HIXIE_FRAME_ERROR,
                        f"expected=frame type 0x00 or 0x80-0xFF, found=0x{self._ttype:02X}: "
                        f"{self._count} bytes up to 0xFF discarded", record_no, ts_ns))
                    continue
                if payload is None and self._payload is not None:
                    payload = bytes(self._payload)
                self._drop_payload()
                out.append(Frame(record_no, ts_ns, 1, True, False, False, False, False, self._count,
                                 payload, 1, None))
                self.frames_decoded += 1
            elif state == _BINARY:
                take = min(end - pos, self._remaining)
                if self._payload is not None:
                    if self._budget.take(take):
                        self._payload += memoryview(src)[pos:pos + take]
                        self._held += take
                    else:
                        out.append(self._over_budget(self._length, record_no, ts_ns))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    out.append(self._complete_binary(record_no, ts_ns))
            else:  # _LOST
                if self._fresh and src[pos] == 0x00:
                    start = pos
                else:
                    j = src.find(b"\xff", pos)
                    if j < 0:
                        self._skipped += end - pos
                        self._fresh = False
                        pos = end
                        break
                    start = j + 1
                self._fresh = False
                self._skipped += start - pos
                pos = start
                out.append(Problem(
                    ProblemKind.FRAMES_LOST_AFTER_GAP,
                    f"{self._lost_cause}: resynchronised after skipping {self._skipped} bytes",
                    record_no, ts_ns))
                self._skipped = 0
                self._state = _IDLE
        self.bytes_consumed += pos
        return out

    def gap(self, size: int, record_no: int, ts_ns: int) -> list[FrameEvent]:
        """`size` bytes of this direction are missing (TCP gap); the data after them follows."""
        out: list[FrameEvent] = []
        if size <= 0:
            return out
        self.bytes_consumed += size
        state = self._state
        if state == _BINARY:
            size = self._gap_in_payload(size, lambda: self._complete_binary(record_no, ts_ns), out)
            if size:
                self._lose(size, f"TCP gap of {size} bytes after a frame", record_no)
        elif state == _LOST:
            self._skipped += size
            self._fresh = True
        elif state == _TEXT:
            self._lose(size + 1 + self._count,
                       f"TCP gap of {size} bytes in a text frame", record_no)
        else:
            buffered = len(self._buf)
            self.bytes_consumed += buffered
            self._buf.clear()
            self._lose(size + buffered, f"TCP gap of {size} bytes at a frame start", record_no)
        return out

    def finish(self) -> list[FrameEvent]:
        """End of the stream: report a partial frame (and list it as a CutFrame once its type, and
        for a binary frame its length, were read) or an unfinished resynchronisation."""
        out: list[FrameEvent] = []
        state = self._state
        record_no, ts_ns = self._last
        if state == _TEXT:
            out.append(Problem(
                ProblemKind.CAPTURE_ENDS_MID_FRAME,
                f"expected=0xFF after text frame type 0x{self._ttype:02X}, "
                f"found={self._count} payload bytes and no 0xFF, missing>=1", None, None))
            if self._ttype == 0:        # (0x01-0x7F frames are discarded, never frames)
                out.append(CutFrame(record_no, ts_ns, 1, True, False, False, False, False, self._count,
                                    None, 1, None))
        elif state == _BINARY:
            out.append(Problem(
                ProblemKind.CAPTURE_ENDS_MID_FRAME,
                f"expected={self._length} payload bytes (binary), "
                f"found={self._length - self._remaining}, missing={self._remaining}", None, None))
            out.append(CutFrame(record_no, ts_ns, 2, True, False, False, False, False, self._length, None,
                                self._hlen, None))
        elif state == _LOST:
            out.append(Problem(
                ProblemKind.FRAMES_LOST_AFTER_GAP,
                f"{self._lost_cause}: no frame start found before the end of the stream, "
                f"skipped={self._skipped} bytes", self._lost_record, None))
        elif self._buf:
            out.append(Problem(
                ProblemKind.CAPTURE_ENDS_MID_FRAME,
                f"expected=a complete length after frame type 0x{self._buf[0]:02X}, "
                f"found={len(self._buf) - 1} length bytes, missing>=1", None, None))
            self.bytes_consumed += len(self._buf)
            self._buf.clear()
        self._state = _IDLE
        self._drop_payload()
        self._skipped = 0
        return out

    def _over_budget(self, length: int, record_no: int, ts_ns: int) -> Problem:
        kind = "binary" if self._state == _BINARY else "text"
        return self._budget_refusal(f"{kind}, {length} bytes so far", record_no, ts_ns)

    def _complete_binary(self, record_no: int, ts_ns: int) -> Frame:
        kept = self._payload
        self._drop_payload()
        self._state = _IDLE
        self.frames_decoded += 1
        return Frame(record_no, ts_ns, 2, True, False, False, False, False, self._length,
                     None if kept is None else bytes(kept), self._hlen, None)

    def _lose(self, skipped: int, cause: str, record_no: int | None) -> None:
        self._state = _LOST
        self._drop_payload()
        self._fresh = True
        self._skipped = skipped
        self._lost_cause = cause
        self._lost_record = record_no
