"""Frames of one sender → messages: fragmentation, permessage-deflate, UTF-8, limits, close frames.

Rules (RFC 6455 §5.4-5.6, RFC 7692), applied per sender:

1. A text/binary frame starts a message; continuations append; FIN ends it. Every data frame of a
   message gets its message_id; control frames (close/ping/pong, reserved 0xB-0xF) and reserved
   data opcodes 3-7 get None and never disturb an open message.
2. A text/binary frame while a message is open → the open one is emitted complete=False and a
   MESSAGE_INTERRUPTED problem is written; the new frame starts a new message.
3. A continuation with no open message → no message and one CONTINUATION_WITHOUT_START problem per
   run of such frames (up to the FIN). Right after a TCP gap the run is expected (its start was
   lost) and reported by the gap, not again here.
4. permessage-deflate: RSV1 on the first frame compresses the whole message (continuations carry
   RSV1=0); deflate-frame: each frame with RSV1 is compressed on its own. The sender's own
   parameters (client_* for the client, server_* for the server) choose window and takeover.
5. Limits: never more than `max_message_bytes` of message data is held or inflated. Over it, one
   MESSAGE_OVER_LIMIT problem; wire bytes keep counting. `size` is then exact for an uncompressed
   message (the frame lengths say it) and equals the limit for a compressed one (a lower bound:
   inflating stopped there). A kept payload holds the first `max_message_bytes` bytes.
6. A frame whose payload is None (over the frame buffering limit or lost in a gap): an
   uncompressed message still gets its exact size but no UTF-8 verdict past the hole; a
   compressed one cannot be inflated further: DECOMPRESSION_FAILURE and complete=False.
   The preview and a kept payload hold the bytes known before the hole ("" when none); the
   same goes for the bytes inflated before a decompression failure.
7. Text messages are validated incrementally; a character split across fragments is valid.
   INVALID_UTF8 names the byte offset (in the decompressed message) of the first invalid byte.
8. Any frame after this sender's close frame → DATA_AFTER_CLOSE.
9. `gap()` cuts an open message (complete=False, MESSAGE_INTERRUPTED) and breaks a shared
   inflate context; `finish()` emits an open message complete=False with CAPTURE_ENDS_MID_MESSAGE.
10. While `app` is set (an application decoder wants this connection's messages, analyzer.app),
   each message's whole payload (decompressed, at most max_message_bytes: the bytes known before
   a hole, a failure or the limit) is handed to it, kept or not, with complete=False when it is
   not all of the message. Unset, a message costs one test of the attribute.

Nothing here raises: bad data becomes Problem events.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Protocol

from analyzer.events import DeflateParams, Frame, FrameEvent, FrameInfo, Message, MessageEvent, Problem
from analyzer.frames import parse_close_payload
from analyzer.inflate import InflateError, Inflater, InflateStream
from analyzer.protocol import ProblemKind
from analyzer.tables import KeptPayloads

# UTF-8 validation decodes at most this many bytes at a time, so the temporary str stays small.
_UTF8_SLICE = 64 * 1024

_PER_MESSAGE = "permessage-deflate"
_new = tuple.__new__        # Message(...)/FrameInfo(...) without the NamedTuple __new__ (hot path)
_PER_FRAME = frozenset({"x-webkit-deflate-frame", "deflate-frame"})


#: where the one-frame helpers append their problems: a list of problems or of events
ProblemSink = list[Problem] | list[MessageEvent] | list[FrameEvent]


class AppFeed(Protocol):
    """Takes each message's payload for the application decoding (rule 10)."""

    def __call__(self, message_id: int, text: bool, payload: bytes, record_no: int, ts_ns: int,
                 complete: bool) -> None: ...


class _Utf8Check:
    """Incremental UTF-8 validation across fragments; remembers the first error's offset."""

    __slots__ = ("_decoder", "error", "fed", "stopped")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.fed = 0                 # bytes of the message fed so far
        self.error: str | None = None
        self.stopped = False         # an error was found, or a hole made validation impossible

    def feed(self, data: bytes | bytearray | memoryview, final: bool = False) -> str | None:
        """Validate the next bytes; return an error detail the first time one is found."""
        if self.stopped:
            return None
        decoder = self._decoder
        n = len(data)
        if not final and isinstance(data, (bytes, bytearray)) and not decoder.getstate()[0] \
                and data.isascii():
            self.fed += n           # the common case: nothing pending and plain ASCII
            return None
        view = memoryview(data)
        start = 0
        while True:
            piece = view[start:start + _UTF8_SLICE]
            last = start + _UTF8_SLICE >= n
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(piece, final and last)
            except UnicodeDecodeError as exc:
                # exc.start counts from the bytes the decoder held back plus this piece.
                self.stopped = True
                offset = self.fed + start - pending + exc.start
                self.error = f"invalid UTF-8 at byte offset {offset}: {exc.reason}"
                return self.error
            if last:
                break
            start += _UTF8_SLICE
        self.fed += n
        return None

    def stop(self) -> None:
        self.stopped = True


class _Open:
    """The message being assembled."""

    __slots__ = (
        "app_data",
        "compressed",
        "failed",
        "first_record_no",
        "frames",
        "head",
        "inflate",
        "kept_refused",
        "last_record_no",
        "lost",
        "message_id",
        "over_limit",
        "payload",
        "size",
        "ts_end",
        "ts_start",
        "type",
        "utf8",
        "wire_bytes",
    )

    def __init__(self, message_id: int, mtype: str, frame: Frame) -> None:
        self.message_id = message_id
        self.type = mtype
        self.ts_start = frame.ts_ns
        self.ts_end = frame.ts_ns
        self.first_record_no = frame.record_no
        self.last_record_no = frame.record_no
        self.frames = 0
        self.wire_bytes = 0
        self.size = 0                         # message bytes (after decompression) seen so far
        self.compressed = False
        self.head = bytearray()               # the first bytes, for the preview
        self.payload: bytearray | None = None
        self.app_data: bytearray | None = None    # the whole payload for the application decoder
        self.kept_refused = False             # its payload was to be kept, but the budget had no room
        self.utf8: _Utf8Check | None = None
        self.inflate: InflateStream | None = None   # permessage-deflate stream of this message
        self.over_limit = False
        self.lost = False                     # some payload bytes were not captured (None frames)
        self.failed = False                   # decompression failed


class MessageAssembler:
    """Turns one sender's frames into FrameInfo, Message and Problem events (sans-IO).

    Args:
        next_message_id: called once per message, at its first frame.
        from_client: whether this sender is the client (picks the client_* deflate parameters).
        deflate: the negotiated compression extension, or None.
        max_message_bytes: the most message data held or inflated per message.
        keep_payload: keep each message's (decompressed) bytes in Message.payload; a float in
            (0, 1) keeps that fraction of the messages, chosen by message id (the same messages
            on every run).
        preview_len: characters of a text preview; a binary preview shows preview_len // 2 bytes.
        validate_utf8: check text messages for valid UTF-8.
        kept: the budget of kept payloads shared by the whole analysis (a payload past it is not
            kept: None, and counted there); None: a budget of this assembler's own.
    """

    def __init__(self, *, next_message_id: Callable[[], int], from_client: bool,
                 deflate: DeflateParams | None = None, max_message_bytes: int = 16 << 20,
                 keep_payload: bool | float = False, preview_len: int = 64,
                 validate_utf8: bool = True, kept: KeptPayloads | None = None) -> None:
        self._next_id = next_message_id
        self.from_client = from_client
        self.deflate = deflate
        self.max_message_bytes = max(0, max_message_bytes)
        self.keep_payload = bool(keep_payload)
        self.kept = kept if kept is not None else KeptPayloads()
        # a sample: keep the payload of a message when the hash of its id falls below this
        self._sample_below = (int(float(keep_payload) * 2**32)
                              if not isinstance(keep_payload, bool) and 0 < keep_payload < 1 else None)
        self.preview_len = max(0, preview_len)
        self.validate_utf8 = validate_utf8
        # Text previews need at most 4 bytes per character.
        self._head_cap = min(self.max_message_bytes, 4 * self.preview_len)
        self._mode: str | None = None
        self._inflater: Inflater | None = None
        if deflate is not None:
            if deflate.extension == _PER_MESSAGE:
                self._mode = "message"
            elif deflate.extension in _PER_FRAME:
                self._mode = "frame"
            if self._mode is not None:
                if from_client:
                    bits, reset = deflate.client_max_window_bits, deflate.client_no_context_takeover
                else:
                    bits, reset = deflate.server_max_window_bits, deflate.server_no_context_takeover
                self._inflater = Inflater(window_bits=bits, no_context_takeover=reset)
        self._open: _Open | None = None
        self.app: AppFeed | None = None   # rule 10 (set and unset by analyzer.websocket)
        self._orphan_run = False      # inside a run of continuations with no start
        self._after_gap = False       # no data frame seen since the last gap
        self.close_frames = 0
        self.sent_close = False

    # --- public ---------------------------------------------------------------------------

    def feed(self, frame: Frame) -> tuple[FrameInfo, list[MessageEvent]]:
        """Account for one frame of this sender."""
        out: list[MessageEvent] = []
        # no catch-all here: an exception is a bug of ours, and the connection layer makes it one
        # internal-error row (analyzer.connection), never a bad-input kind
        info = self._feed(frame, out)
        return info, out

    def gap(self, record_no: int, ts_ns: int) -> list[MessageEvent]:
        """Bytes of this direction were lost: cut the open message, break the inflate context."""
        out: list[MessageEvent] = []
        msg = self._open
        if msg is not None:
            self._open = None
            out.append(self._emit(msg, complete=False, reason="a TCP gap"))
            out.append(Problem(ProblemKind.MESSAGE_INTERRUPTED,
                               f"message {msg.message_id} cut by a TCP gap after {msg.frames} frame(s)",
                               record_no, ts_ns))
        if self._inflater is not None:
            self._inflater.lose_context("a TCP gap")
        self._after_gap = True
        self._orphan_run = False
        return out

    def finish(self, record_no: int | None, ts_ns: int | None) -> list[MessageEvent]:
        """End of this direction's stream: an open message is emitted incomplete."""
        msg = self._open
        if msg is None:
            return []
        self._open = None
        if record_no is None:
            record_no, ts_ns = msg.last_record_no, msg.ts_end
        return [self._emit(msg, complete=False, reason="the end of the capture"),
                Problem(ProblemKind.CAPTURE_ENDS_MID_MESSAGE,
                        f"message {msg.message_id} open after {msg.frames} frame(s) "
                        f"({msg.wire_bytes} wire bytes)", record_no, ts_ns)]

    # --- frames -----------------------------------------------------------------------------

    def _feed(self, frame: Frame, out: list[MessageEvent]) -> FrameInfo:
        opcode = frame.opcode
        if self.sent_close and (opcode < 8 or opcode == 0x8):
            # RFC 6455 §5.5.1: no data frames after a Close (a second Close is reported too);
            # a ping or pong after it is not forbidden (websockets answers pings while closing).
            out.append(self._problem(ProblemKind.DATA_AFTER_CLOSE,
                                     f"opcode {opcode} frame after this sender's close frame", frame))
        if opcode == 0x8:
            return self._close(frame, out)
        if opcode >= 0x8 or 3 <= opcode <= 7:
            return FrameInfo(None, False)
        payload = frame.payload
        if frame.fin and opcode != 0 and self._open is None and payload is not None:
            if not frame.rsv1 or not self._mode:
                if len(payload) <= self.max_message_bytes:
                    return self._single(frame, payload, out)
            elif self._mode == "message" and self._inflater is not None:
                return self._single_compressed(frame, payload, out)
        if opcode == 0x0:
            msg = self._open
            if msg is None:
                if not (self._orphan_run or self._after_gap):
                    out.append(self._problem(ProblemKind.CONTINUATION_WITHOUT_START,
                                             f"continuation frame (fin={frame.fin}) with no message open",
                                             frame))
                self._orphan_run = not frame.fin
                if frame.fin:
                    self._after_gap = False
                return FrameInfo(None, False)
        else:
            self._after_gap = False
            self._orphan_run = False
            old = self._open
            if old is not None:
                self._open = None
                out.append(self._emit(old, complete=False, reason="a new message"))
                out.append(self._problem(ProblemKind.MESSAGE_INTERRUPTED,
                                         f"message {old.message_id} (fin not seen after {old.frames} "
                                         f"frame(s)) interrupted by a new opcode {opcode} frame", frame))
            msg = self._start(frame)
        compressed = self._data(msg, frame, out)
        if frame.fin:
            self._open = None
            self._end(msg, frame, out)
            # A compressed message with uncaptured bytes is not known in full (rule 6).
            out.append(self._emit(msg, complete=not (msg.lost and msg.compressed), reason="its end"))
        return FrameInfo(msg.message_id, compressed)

    def _single(self, frame: Frame, payload: bytes, out: list[MessageEvent]) -> FrameInfo:
        """Fast path for the common case: an uncompressed one-frame message within the limit."""
        record_no, ts_ns = frame.record_no, frame.ts_ns
        message_id, size, preview, kept = self.single(frame.opcode, payload, record_no, ts_ns, out)
        # positional: a NamedTuple is built twice as fast without keywords (fields as in events.Message)
        out.append(_new(Message, (message_id, "text" if frame.opcode == 1 else "binary", ts_ns, ts_ns, 1,
                                  frame.payload_len, size, False, preview, kept, True, record_no,
                                  record_no)))
        return _new(FrameInfo, (message_id, False, None, None))

    def _single_compressed(self, frame: Frame, payload: bytes, out: list[MessageEvent]) -> FrameInfo:
        """Fast path for a permessage-deflate message in one frame."""
        record_no, ts_ns = frame.record_no, frame.ts_ns
        message_id, size, preview, kept = self.single_compressed(frame.opcode, payload, record_no, ts_ns,
                                                                 out)
        out.append(_new(Message, (message_id, "text" if frame.opcode == 1 else "binary", ts_ns, ts_ns, 1,
                                  frame.payload_len, size, True, preview, kept, True, record_no,
                                  record_no)))
        return _new(FrameInfo, (message_id, True, None, None))

    # --- one-frame messages (also called by the frame decoder's fast path) --------------------

    def can_take_single(self) -> bool:
        """No message is open and this sender has not closed: a whole one-frame data message may
        skip the general bookkeeping (single / single_compressed)."""
        return self._open is None and not self.sent_close

    @property
    def compression(self) -> str | None:
        """What RSV1 means for this sender: "message" (permessage-deflate: the first frame of a
        compressed message, inflated by single_compressed), "frame" (deflate-frame: each frame
        compressed on its own, the general path's work) or None (no extension: only a flag)."""
        return self._mode

    def single(self, opcode: int, payload: bytes, record_no: int, ts_ns: int,
               problems: ProblemSink) -> tuple[int, int, str, bytes | None]:
        """An uncompressed text (opcode 1) or binary message in one frame, payload within the limit:
        (message_id, size, preview, kept payload or None); problems are appended to `problems`.
        The caller has checked `can_take_single()`."""
        self._after_gap = False
        self._orphan_run = False
        message_id = self._next_id()
        if type(payload) is not bytes:
            payload = bytes(payload)
        n = len(payload)
        text = opcode == 1
        preview_len = self.preview_len
        if text and payload.isascii():
            # the common case: ASCII text is valid UTF-8 and one character a byte
            preview = payload[:preview_len].decode("ascii")
            if n > preview_len and self._head_cap:    # preview_len=0: no preview at all
                preview += "…"
        else:
            if text and self.validate_utf8:
                if n <= _UTF8_SLICE:
                    try:
                        payload.decode("utf-8")
                        error = None
                    except UnicodeDecodeError as exc:
                        error = f"invalid UTF-8 at byte offset {exc.start}: {exc.reason}"
                else:
                    error = _Utf8Check().feed(payload, final=True)
                if error is not None:
                    problems.append(Problem(ProblemKind.INVALID_UTF8, f"text message {message_id}: {error}",
                                            record_no, ts_ns))
            preview = self._preview_of(text, payload[:self._head_cap], n)
        if self.app is not None:
            self.app(message_id, text, payload, record_no, ts_ns, True)
        return message_id, n, preview, (payload if (self.keep_payload or self._sample_below is not None)
                                        and self._keeps(message_id) and self.kept.admit(n, record_no, ts_ns)
                                        else None)

    def single_compressed(self, opcode: int, payload: bytes, record_no: int, ts_ns: int,
                          problems: ProblemSink) -> tuple[int, int, str, bytes | None]:
        """A permessage-deflate message in one frame: the same stream, limits and problems as the
        general path (_start/_data/_end/_emit), without its bookkeeping. Returns as `single`; the
        caller has checked `can_take_single()` and that `compression` is "message"."""
        assert self._inflater is not None
        self._after_gap = False
        self._orphan_run = False
        message_id = self._next_id()
        text = opcode == 1
        whole = self._inflater.inflate_whole(payload, self.max_message_bytes)
        if whole is not None:
            data, over_limit, failure = whole
        else:
            stream = self._inflater.stream(self.max_message_bytes)
            pieces: list[bytes] = []
            failure = None
            try:
                pieces.extend(stream.feed(payload))
                if not stream.over_limit:
                    pieces.extend(stream.end())
            except InflateError as exc:
                failure = str(exc)
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            over_limit = stream.over_limit
        n = len(data)
        # as the general path: UTF-8 errors in what was inflated come before a failure
        if text and self.validate_utf8 and not data.isascii():
            check = _Utf8Check()
            error = check.feed(data, final=failure is None and not over_limit)
            if error is not None:
                problems.append(Problem(ProblemKind.INVALID_UTF8, f"text message {message_id}: {error}",
                                        record_no, ts_ns))
        if failure is not None:
            problems.append(Problem(ProblemKind.DECOMPRESSION_FAILURE,
                                    f"message {message_id}: {failure} (after {n} bytes inflated)",
                                    record_no, ts_ns))
        elif over_limit:
            problems.append(Problem(ProblemKind.MESSAGE_OVER_LIMIT,
                                    f"message {message_id}: more than max_message_bytes="
                                    f"{self.max_message_bytes} after decompression; inflating stopped "
                                    "there", record_no, ts_ns))
        if text and data.isascii():
            preview = data[:self.preview_len].decode("ascii")
            if n > self.preview_len and self._head_cap:
                preview += "…"
        else:
            preview = self._preview_of(text, data[:self._head_cap], n)
        if self.app is not None:
            self.app(message_id, text, data, record_no, ts_ns, failure is None and not over_limit)
        return message_id, n, preview, (data if (self.keep_payload or self._sample_below is not None)
                                        and self._keeps(message_id) and self.kept.admit(n, record_no, ts_ns)
                                        else None)

    def _keeps(self, message_id: int) -> bool:
        """Is this message's payload kept (all, none, or a sample by id)?"""
        if self._sample_below is None:
            return self.keep_payload
        return (message_id * 0x9E3779B1) & 0xFFFFFFFF < self._sample_below

    def _close(self, frame: Frame, out: list[MessageEvent]) -> FrameInfo:
        self.close_frames += 1
        self.sent_close = True
        if frame.payload is None:
            return FrameInfo(None, False)
        code, reason, problems = parse_close_payload(frame.payload)
        for kind, detail in problems:
            if self.validate_utf8 or kind is not ProblemKind.INVALID_CLOSE_REASON_UTF8:
                out.append(self._problem(kind, detail, frame))
        return FrameInfo(None, False, code, reason)

    def _start(self, frame: Frame) -> _Open:
        text = frame.opcode == 1
        msg = _Open(self._next_id(), "text" if text else "binary", frame)
        if text and self.validate_utf8:
            msg.utf8 = _Utf8Check()
        if self.app is not None:
            msg.app_data = bytearray()
        if self._keeps(msg.message_id):
            if self.kept.room > 0:
                msg.payload = bytearray()
            else:
                msg.kept_refused = True
        if self._mode == "message" and frame.rsv1 and self._inflater is not None:
            msg.compressed = True
            msg.inflate = self._inflater.stream(self.max_message_bytes)
        self._open = msg
        return msg

    def _data(self, msg: _Open, frame: Frame, out: list[MessageEvent]) -> bool:
        """Add one data frame to the open message; return whether the frame is compressed."""
        msg.frames += 1
        msg.wire_bytes += frame.payload_len
        msg.ts_end = frame.ts_ns
        msg.last_record_no = frame.record_no
        payload = frame.payload
        if self._mode == "message":
            if not msg.compressed:
                self._plain(msg, frame, out)
                return False
            if payload is None:
                self._lost_compressed(msg, frame, out)
            elif msg.inflate is not None:
                self._pump(msg, frame, msg.inflate, payload, out, end=False)
            return True
        if self._mode == "frame" and frame.rsv1 and self._inflater is not None:
            msg.compressed = True
            if payload is None:
                self._lost_compressed(msg, frame, out)
            elif not (msg.over_limit or msg.failed):
                stream = self._inflater.stream(self.max_message_bytes - min(msg.size, self.max_message_bytes))
                self._pump(msg, frame, stream, payload, out, end=True)
            return True
        self._plain(msg, frame, out)
        return False

    def _end(self, msg: _Open, frame: Frame, out: list[MessageEvent]) -> None:
        """FIN seen: flush the permessage-deflate tail and finish UTF-8 validation."""
        stream = msg.inflate
        if stream is not None:
            msg.inflate = None
            self._pump(msg, frame, stream, None, out, end=True)
        check = msg.utf8
        if check is not None:           # stopped (so silent) after a hole, failure or error
            error = check.feed(b"", final=True)
            if error is not None:
                out.append(self._problem(ProblemKind.INVALID_UTF8,
                                         f"text message {msg.message_id}: {error}", frame))

    def _plain(self, msg: _Open, frame: Frame, out: list[MessageEvent]) -> None:
        """An uncompressed frame: the payload is message data as is."""
        payload = frame.payload
        if payload is None:
            msg.size += frame.payload_len
            msg.lost = True
            if msg.utf8 is not None:
                msg.utf8.stop()
            self._check_limit(msg, frame, out)
            return
        if not msg.over_limit:
            room = self.max_message_bytes - msg.size
            if len(payload) > room:
                self._store(msg, frame, memoryview(payload)[:room], out)
                msg.size += len(payload) - room
                self._check_limit(msg, frame, out)
                self._validate(msg, frame, memoryview(payload)[room:], out)
                return
            self._store(msg, frame, payload, out)
        else:
            msg.size += len(payload)
            self._validate(msg, frame, payload, out)

    def _pump(self, msg: _Open, frame: Frame, stream: InflateStream, payload: bytes | None,
              out: list[MessageEvent], *, end: bool) -> None:
        """Feed compressed bytes (and, with end, the RFC 7692 tail) through a bounded stream."""
        try:
            if payload is not None:
                for piece in stream.feed(payload):
                    self._store(msg, frame, piece, out)
            if end:
                for piece in stream.end():
                    self._store(msg, frame, piece, out)
        except InflateError as exc:
            msg.failed = True
            if msg.utf8 is not None:
                msg.utf8.stop()
            out.append(self._problem(ProblemKind.DECOMPRESSION_FAILURE,
                                     f"message {msg.message_id}: {exc} (after {msg.size} bytes "
                                     f"inflated)", frame))
            if msg.inflate is stream:
                msg.inflate = None
            return
        if stream.over_limit and not msg.over_limit:
            msg.over_limit = True
            if msg.inflate is stream:
                msg.inflate = None
            if msg.utf8 is not None:
                msg.utf8.stop()
            out.append(self._problem(ProblemKind.MESSAGE_OVER_LIMIT,
                                     f"message {msg.message_id}: more than max_message_bytes="
                                     f"{self.max_message_bytes} after decompression; inflating stopped "
                                     "there", frame))

    def _lost_compressed(self, msg: _Open, frame: Frame, out: list[MessageEvent]) -> None:
        first = not msg.lost
        msg.lost = True
        if msg.utf8 is not None:
            msg.utf8.stop()
        if msg.inflate is not None:
            msg.inflate.abandon("compressed bytes were not captured")
            msg.inflate = None
        elif self._inflater is not None:
            self._inflater.lose_context("compressed bytes were not captured")
        if first and not (msg.over_limit or msg.failed):
            out.append(self._problem(ProblemKind.DECOMPRESSION_FAILURE,
                                     f"message {msg.message_id}: a compressed frame's payload "
                                     f"({frame.payload_len} bytes) was not captured; size unknown past "
                                     f"{msg.size} bytes", frame))

    def _store(self, msg: _Open, frame: Frame, data: bytes | memoryview, out: list[MessageEvent]) -> None:
        """Message data within the limit: size, preview head, kept payload, UTF-8."""
        n = len(data)
        if not n:
            return
        msg.size += n
        if msg.lost or msg.failed:
            return              # not contiguous with what came before: count it, keep nothing
        room = self._head_cap - len(msg.head)
        if room > 0:
            msg.head += data[:room]
        if msg.app_data is not None:
            msg.app_data += data
        payload = msg.payload
        if payload is not None:
            payload += data
            if len(payload) > self.kept.room:     # it cannot be kept: hold no more of it
                msg.payload = None
                msg.kept_refused = True
        self._validate(msg, frame, data, out)

    def _validate(self, msg: _Open, frame: Frame, data: bytes | memoryview, out: list[MessageEvent]) -> None:
        check = msg.utf8
        if check is not None and not msg.lost:
            error = check.feed(data)
            if error is not None:
                out.append(self._problem(ProblemKind.INVALID_UTF8,
                                         f"text message {msg.message_id}: {error}", frame))

    def _check_limit(self, msg: _Open, frame: Frame, out: list[MessageEvent]) -> None:
        if msg.over_limit or msg.size <= self.max_message_bytes:
            return
        msg.over_limit = True
        out.append(self._problem(ProblemKind.MESSAGE_OVER_LIMIT,
                                 f"message {msg.message_id}: over max_message_bytes={self.max_message_bytes}"
                                 " (uncompressed: size stays exact, data past the limit not kept)", frame))

    # --- output ---------------------------------------------------------------------------

    def _emit(self, msg: _Open, *, complete: bool, reason: str) -> Message:
        if msg.inflate is not None:
            msg.inflate.abandon(f"message {msg.message_id} was cut by {reason}")
            msg.inflate = None
        payload = None
        if msg.payload is not None and self.kept.admit(len(msg.payload), msg.last_record_no, msg.ts_end):
            payload = bytes(msg.payload)
        elif msg.kept_refused:
            self.kept.refuse(min(msg.size, self.max_message_bytes), msg.last_record_no, msg.ts_end)
        if msg.app_data is not None and self.app is not None:
            whole = complete and not (msg.over_limit or msg.lost or msg.failed)
            self.app(msg.message_id, msg.type == "text", bytes(msg.app_data), msg.last_record_no, msg.ts_end,
                     whole)
            msg.app_data = None
        return Message(
            message_id=msg.message_id, type=msg.type, ts_start_ns=msg.ts_start, ts_end_ns=msg.ts_end,
            frames=msg.frames, wire_bytes=msg.wire_bytes, size=msg.size, compressed=msg.compressed,
            preview=self._preview(msg), payload=payload,
            complete=complete, first_record_no=msg.first_record_no, last_record_no=msg.last_record_no)

    def _preview(self, msg: _Open) -> str:
        return self._preview_of(msg.type == "text", msg.head, msg.size)

    def _preview_of(self, text: bool, head: bytes | bytearray, size: int) -> str:
        """The first preview_len characters (text) or preview_len // 2 bytes in hex (binary), with
        "…" when more follows; `head` holds the first bytes known, `size` the message size."""
        known = len(head)
        if not known:
            return ""
        if text:
            chars = head.decode("utf-8", errors="replace")
            cut = len(chars) > self.preview_len
            chars = chars[:self.preview_len]
            # More characters may follow the head (or the head stopped at a hole).
            return chars + "…" if cut or size > known else chars
        n = self.preview_len // 2
        shown = head[:n].hex()
        return shown + "…" if size > n else shown

    @staticmethod
    def _problem(kind: ProblemKind, detail: str, frame: Frame) -> Problem:
        return Problem(kind, detail, frame.record_no, frame.ts_ns)
