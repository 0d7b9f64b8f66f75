"""H2Session: both directions of one HTTP/2 connection (after TLS when any) as a stream transform
(sans-IO): each direction's bytes in, the RFC 8441 WebSocket streams out (H2WebSocket, then
their DATA as H2Data and their end as H2StreamEnd), with problems as H2Problem.

Rules (one session per connection; "a side" is one direction):

Rule 1: framing. The client side starts with the connection preface, then each side sends frames,
        the first a SETTINGS frame (RFC 9113 §3.4). Frame headers are read with one precompiled
        struct; DATA bodies are handled here, streamed out as their bytes arrive (a 16 MiB DATA
        frame is never buffered) with the padding removed; every other known frame is parsed by
        hyperframe once it is whole; unknown frame types are skipped by counting (§5.5).
Rule 2: a frame that does not parse, is longer than the receiver's SETTINGS_MAX_FRAME_SIZE (or
        16 MiB), or breaks a header block (§6.10), and a TCP gap, end the side: one h2-malformed
        problem for the connection, one per WebSocket stream it carried, and no more output from
        that side. The other side goes on (its frames and HPACK state are its own).
Rule 3: every header block (HEADERS or PUSH_PROMISE + CONTINUATION, reassembled up to
        MAX_HEADER_BLOCK) is decoded in order with the side's own hpack.Decoder, WebSocket stream
        or not, so the dynamic table stays right. A block that does not decode: h2-hpack-error,
        and the side's later header blocks are not decoded (its frames are still followed).
Rule 4: a client HEADERS with :method CONNECT and :protocol websocket opens a WebSocket stream
        (PENDING); the server's final HEADERS on it answers it: H2WebSocket (2xx: OPEN, anything
        else: forgotten). A RST_STREAM of a PENDING stream, or the end (finish), answers it with
        nothing (http_status None). DATA of a PENDING stream is held (MAX_HELD per session) and
        given out after the H2WebSocket of a 2xx.
Rule 5: END_STREAM and RST_STREAM of an OPEN stream: H2StreamEnd; a stream both sides ended, or
        reset, is forgotten. DATA of other streams is counted, never output; flow control is not
        checked.
Rule 6: memory: one partial frame per side (a whole non-DATA frame, at most 16 MiB), one header
        block in reassembly, MAX_OPEN WebSocket streams with a few bounded fields each, and the
        held DATA of PENDING streams.
"""

from __future__ import annotations

import struct
from enum import Enum

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from analyzer.events import Problem
from analyzer.h2.connect import handshake_from_h2, is_websocket_connect, kept_fields, status_of
from analyzer.h2.events import H2Data, H2Out, H2Problem, H2StreamEnd, H2WebSocket
from analyzer.protocol import ProblemKind

__all__ = ["MAX_HEADER_BLOCK", "MAX_HELD", "MAX_OPEN", "PREFACE", "H2Session", "error_name",
           "looks_like_h2"]

#: RFC 9113 §3.4: the client connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: A header block (HEADERS/PUSH_PROMISE + CONTINUATION fragments) larger than this: h2-malformed.
MAX_HEADER_BLOCK = 256 * 1024
#: The decoded size (RFC 7541 §4.1: names + values + 32 per field) of one header list: the bound
#: of hpack.Decoder (its default; HTTP/1.1's handshake parser also stops at 64 KiB of header).
MAX_HEADER_LIST = 64 * 1024
#: The largest HPACK dynamic table a peer may make us keep, whatever SETTINGS_HEADER_TABLE_SIZE says.
MAX_TABLE_SIZE = 1 << 20
#: WebSocket streams followed at once (RFC 9113 §6.5.2 recommends no fewer than 100 concurrent).
MAX_OPEN = 256
#: Bytes of DATA held, for the whole session, for streams whose CONNECT is not answered yet.
MAX_HELD = 64 * 1024
#: Of a longer SETTINGS frame only this much is read (1024 settings).
MAX_SETTINGS = 6 * 1024

# RFC 9113 §6: frame types and flags
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    range(10)
END_STREAM = 0x1
END_HEADERS = 0x4
PADDED = 0x8
_HEADER = struct.Struct("!HBBBL")          # 24-bit length as 16 + 8 bits, type, flags, stream id
HEADER_LEN = 9
_DEFAULT_MAX_FRAME = 16_384                # §6.5.2 SETTINGS_MAX_FRAME_SIZE initial value
_LARGEST_FRAME = (1 << 24) - 1
_HEADER_TABLE_SIZE = 0x1
_MAX_FRAME_SIZE = 0x5
_ENABLE_CONNECT_PROTOCOL = 0x8             # RFC 8441 §3

# RFC 9113 §7 error codes
_ERRORS = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
           "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
           "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED")
_NAMES = ("client", "server")


def error_name(code: int) -> str:
    """An HTTP/2 error code as RFC 9113 §7 names it, with its number: "CANCEL (0x8)"."""
    name = _ERRORS[code] if 0 <= code < len(_ERRORS) else "unknown error"
    return f"{name} (0x{code:x})"


def looks_like_h2(data: bytes) -> bool | None:
    """The client's first bytes: True = they start with the preface, False = they cannot,
    None = a proper prefix of it (need more bytes)."""
    if data[:len(PREFACE)] == PREFACE:
        return True
    return None if PREFACE.startswith(data) else False


class StreamState(Enum):
    PENDING = "pending"          # extended CONNECT sent, no final answer yet
    OPEN = "open"                # answered 2xx: a WebSocket
    CLOSED = "closed"            # forgotten (refused, reset, ended both ways): a DATA frame still
                                 # arriving for it is dropped


class _Stream:
    __slots__ = ("ended", "held", "held_lost", "lost", "request", "request_at", "state", "stream_id")

    def __init__(self, stream_id: int, request: dict[str, str], request_at: tuple[int, int]) -> None:
        self.stream_id = stream_id
        self.request = request
        self.request_at = request_at
        self.state = StreamState.PENDING
        self.ended = [False, False]            # END_STREAM seen, per direction
        self.lost = [False, False]             # that direction's data is not followed (its side died)
        self.held: list[tuple[int, bytes, int, int]] = []    # direction, data, record_no, ts_ns
        self.held_lost = 0                     # bytes of DATA before the answer over MAX_HELD


class _Side:
    """One direction's framing state."""

    __slots__ = ("block", "block_end", "block_kind", "block_stream", "buf", "data_end", "data_left",
                 "data_stream", "dead", "decoder", "direction", "hpack_dead", "in_data", "max_frame", "need",
                 "need_pad", "pad_left", "preface_left", "skip", "started")

    def __init__(self, direction: int, client: bool) -> None:
        self.direction = direction
        self.buf = bytearray()                 # a partial frame (or header), when need > len
        self.need = 0
        self.dead = False
        self.preface_left = len(PREFACE) if client else 0
        self.started = False                   # its first frame (SETTINGS) seen
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        self.hpack_dead = False
        self.block: bytearray | None = None    # header block being reassembled
        self.block_stream = 0
        self.block_kind = HEADERS
        self.block_end = False                 # END_STREAM of the HEADERS that began the block
        self.max_frame = _DEFAULT_MAX_FRAME    # the peer's SETTINGS_MAX_FRAME_SIZE (the largest seen)
        self.in_data = False                   # inside a DATA frame's body
        self.need_pad = False                  # its Pad Length byte not read yet
        self.data_left = 0                     # its data bytes still to come
        self.pad_left = 0                      # then its padding
        self.data_end = False                  # its END_STREAM flag
        self.data_stream: _Stream | None = None  # the WebSocket stream it belongs to
        self.skip = 0                          # bytes of an unknown frame's body still to skip


class _Malformed(Exception):
    """A frame or preface that does not parse (kind H2_MALFORMED)."""


class H2Session:
    """Both directions of one HTTP/2 connection (after TLS when any), sans-IO.

    Attributes:
        settings_connect_protocol: the server sent SETTINGS_ENABLE_CONNECT_PROTOCOL=1.
        streams: WebSocket streams (extended CONNECTs) seen.
        frames: HTTP/2 frames seen, both directions.
        other_data: DATA bytes of streams that are not WebSockets.
        goaway: (direction, last stream id, error name) of the last GOAWAY, or None.
    """

    def __init__(self, client_dir: int) -> None:
        self.client_dir = client_dir
        self._sides = (_Side(0, client_dir == 0), _Side(1, client_dir == 1))
        self._streams: dict[int, _Stream] = {}
        self._held = 0
        self._last_stream = 0                  # the largest stream id the client opened
        self._open_refused = False             # MAX_OPEN reached once (said once)
        self._finished = False
        self.settings_connect_protocol = False
        self.streams = 0
        self.frames = 0
        self.other_data = 0
        self.goaway: tuple[int, int, str] | None = None
        self._out: list[H2Out] = []
        self._at = (0, 0)
        # DATA pieces of one stream and direction not yet made an H2Data (joined at _flush)
        self._parts: list[bytes] = []
        self._parts_key = (-1, -1)

    # --- public API ----------------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> list[H2Out]:
        """In-order bytes of one direction; returns what they complete."""
        side = self._sides[direction]
        if side.dead or self._finished or not data:
            return []
        self._at = (record_no, ts_ns)
        if side.buf:
            side.buf += data
            if len(side.buf) < side.need:
                return []
            data = bytes(side.buf)
            side.buf = bytearray()
        try:
            pos = self._run(side, memoryview(data))
        except _Malformed as exc:
            self._kill(side, str(exc))
        else:
            if pos < len(data):
                side.buf = bytearray(memoryview(data)[pos:])
        return self._take()

    def gap(self, direction: int, record_no: int, ts_ns: int) -> list[H2Out]:
        """Bytes of one direction were lost: its frames (and HPACK state) cannot be followed."""
        side = self._sides[direction]
        if side.dead or self._finished:
            return []
        self._at = (record_no, ts_ns)
        self._kill(side, f"TCP gap: the {_NAMES[self._role(direction)]}'s HTTP/2 frames are not followed "
                         "further (their HPACK state is lost)")
        return self._take()

    def finish(self, record_no: int, ts_ns: int) -> list[H2Out]:
        """The connection (or the capture) ended: streams still waiting for an answer get one
        H2WebSocket each, unanswered."""
        if self._finished:
            return []
        self._finished = True
        self._at = (record_no, ts_ns)
        server = self._sides[1 - self.client_dir]
        why = ("no answer: the server's HTTP/2 frames were not followed to the end" if server.dead else
               "no answer: the server's header blocks could not be decoded" if server.hpack_dead else
               "no answer to the extended CONNECT before the end")
        for stream in list(self._streams.values()):
            if stream.state is StreamState.PENDING:
                self._answer(stream, None, why)
        self._streams.clear()
        return self._take()

    # --- framing -------------------------------------------------------------------------------

    def _run(self, side: _Side, mv: memoryview) -> int:
        """Consume whole frames (and DATA as it comes) from mv; the offset where it stopped."""
        n = len(mv)
        pos = 0
        if side.preface_left:
            k = min(side.preface_left, n)
            start = len(PREFACE) - side.preface_left
            if mv[:k] != PREFACE[start:start + k]:
                raise _Malformed("the client's bytes do not start with the HTTP/2 connection preface")
            side.preface_left -= k
            pos = k
        while pos < n:
            if side.in_data:
                pos = self._data_body(side, mv, pos, n)
                continue
            if side.skip:
                k = min(side.skip, n - pos)
                side.skip -= k
                pos += k
                continue
            if n - pos < HEADER_LEN:
                side.need = HEADER_LEN
                break
            hi, lo, ftype, flags, stream_id = _HEADER.unpack_from(mv, pos)
            length = hi << 8 | lo
            stream_id &= 0x7FFFFFFF
            if length > side.max_frame or side.block is not None or not side.started:
                self._check_header(side, ftype, length, stream_id)
            if ftype == DATA:
                pos = self._data_body(side, mv, self._data_start(side, flags, length, stream_id, pos), n)
                continue
            if ftype > CONTINUATION:              # §5.5: unknown types are ignored
                pos += HEADER_LEN
                side.skip = length
                self.frames += 1
                continue
            if length > MAX_HEADER_BLOCK:           # (a frame but DATA is held whole: bounded)
                raise _Malformed(f"a frame of {length} bytes (type {ftype}) on stream {stream_id}: no "
                                 f"frame but DATA is followed past {MAX_HEADER_BLOCK} bytes")
            if n - pos < HEADER_LEN + length:
                side.need = HEADER_LEN + length
                break
            self._frame(side, mv[pos:pos + HEADER_LEN], mv[pos + HEADER_LEN:pos + HEADER_LEN + length])
            pos += HEADER_LEN + length
            if side.dead:
                break
        return pos

    def _check_header(self, side: _Side, ftype: int, length: int, stream_id: int) -> None:
        if length > side.max_frame:
            raise _Malformed(f"a frame of {length} bytes (type {ftype}) on stream {stream_id}: larger "
                             f"than SETTINGS_MAX_FRAME_SIZE {side.max_frame}")
        if side.block is not None and (ftype != CONTINUATION or stream_id != side.block_stream):
            raise _Malformed(f"a frame of type {ftype} on stream {stream_id} inside the header block of "
                             f"stream {side.block_stream} (RFC 9113 §6.10: CONTINUATION expected)")
        if not side.started:
            if ftype != SETTINGS:
                raise _Malformed(f"the {_NAMES[self._role(side.direction)]}'s first frame is of type "
                                 f"{ftype}, not SETTINGS (RFC 9113 §3.4)")
            side.started = True

    def _frame(self, side: _Side, head: memoryview, body: memoryview) -> None:
        """One whole frame other than DATA, parsed by hyperframe."""
        self.frames += 1
        try:
            frame, length = Frame.parse_frame_header(head)
            if isinstance(frame, SettingsFrame) and length > MAX_SETTINGS:
                if length % 6:
                    raise _Malformed(f"a SETTINGS frame of {length} bytes (not a multiple of 6)")
                body = body[:MAX_SETTINGS]
            frame.parse_body(body)
        except HyperframeError as exc:
            raise _Malformed(f"{type(exc).__name__}: {exc}") from None
        if isinstance(frame, HeadersFrame | PushPromiseFrame):
            end = isinstance(frame, HeadersFrame) and "END_STREAM" in frame.flags
            self._block_start(side, frame.stream_id, frame.type, end, frame.data,
                              "END_HEADERS" in frame.flags)
        elif frame.type == CONTINUATION:
            if side.block is None:
                raise _Malformed(f"CONTINUATION on stream {frame.stream_id} without a header block")
            self._block_add(side, frame.data, "END_HEADERS" in frame.flags)  # type: ignore[attr-defined]
        elif isinstance(frame, SettingsFrame):
            self._settings(side, frame.settings)
        elif isinstance(frame, RstStreamFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                self._reset(stream, side.direction, frame.error_code)
        elif isinstance(frame, GoAwayFrame):
            self.goaway = (side.direction, frame.last_stream_id, error_name(frame.error_code))
        # PRIORITY, PING, WINDOW_UPDATE: parsed (checked), nothing to follow

    def _settings(self, side: _Side, settings: dict[int, int]) -> None:
        peer = self._sides[1 - side.direction]
        if _MAX_FRAME_SIZE in settings:
            peer.max_frame = max(peer.max_frame, min(settings[_MAX_FRAME_SIZE], _LARGEST_FRAME))
        if _HEADER_TABLE_SIZE in settings:
            size = min(settings[_HEADER_TABLE_SIZE], MAX_TABLE_SIZE)
            peer.decoder.max_allowed_table_size = max(peer.decoder.max_allowed_table_size, size)
        if settings.get(_ENABLE_CONNECT_PROTOCOL) == 1 and self._role(side.direction) == 1:
            self.settings_connect_protocol = True

    # --- DATA ----------------------------------------------------------------------------------

    def _data_start(self, side: _Side, flags: int, length: int, stream_id: int, pos: int) -> int:
        """A DATA frame's header at pos: the offset of its body."""
        if stream_id == 0:
            raise _Malformed("a DATA frame on stream 0")
        if flags & PADDED and length == 0:
            raise _Malformed(f"a padded DATA frame of 0 bytes on stream {stream_id}")
        self.frames += 1
        stream = self._streams.get(stream_id)
        if stream is not None and (stream.ended[side.direction] or stream.lost[side.direction]):
            stream = None
        side.in_data = True
        side.need_pad = bool(flags & PADDED)
        side.data_left = length
        side.pad_left = 0
        side.data_end = bool(flags & END_STREAM)
        side.data_stream = stream
        return pos + HEADER_LEN

    def _data_body(self, side: _Side, mv: memoryview, pos: int, n: int) -> int:
        """The hot path: a piece of the current DATA frame's body."""
        if side.need_pad:
            if pos == n:
                return pos
            pad = mv[pos]
            pos += 1
            side.data_left -= 1
            if pad > side.data_left:
                raise _Malformed(f"DATA padding of {pad} bytes in a frame of {side.data_left + 1}")
            side.data_left -= pad
            side.pad_left = pad
            side.need_pad = False
        k = min(side.data_left, n - pos)
        if k:
            stream = side.data_stream
            if stream is None or stream.state is StreamState.CLOSED:
                self.other_data += k
            else:
                self._data(stream, side.direction, mv[pos:pos + k])
            side.data_left -= k
            pos += k
        if not side.data_left:
            if side.pad_left:
                k = min(side.pad_left, n - pos)
                side.pad_left -= k
                pos += k
            if not side.pad_left:
                side.in_data = False
                stream = side.data_stream
                side.data_stream = None
                if side.data_end and stream is not None and stream.state is not StreamState.CLOSED:
                    self._end(stream, side.direction)
        return pos

    def _data(self, stream: _Stream, direction: int, piece: memoryview) -> None:
        if stream.state is StreamState.OPEN:
            key = (stream.stream_id, direction)
            if key != self._parts_key:
                self._flush()
                self._parts_key = key
            self._parts.append(piece.tobytes())
        elif stream.state is StreamState.CLOSED:
            return
        elif self._held + len(piece) <= MAX_HELD:
            self._held += len(piece)
            stream.held.append((direction, piece.tobytes(), *self._at))
        else:
            stream.held_lost += len(piece)

    def _flush(self) -> None:
        if self._parts:
            sid, direction = self._parts_key
            data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._out.append(H2Data(sid, direction, data, *self._at))
            self._parts = []
        self._parts_key = (-1, -1)

    def _emit(self, event: H2Out) -> None:
        self._flush()
        self._out.append(event)

    def _take(self) -> list[H2Out]:
        self._flush()
        out, self._out = self._out, []
        return out

    # --- header blocks -------------------------------------------------------------------------

    def _block_start(self, side: _Side, stream_id: int, kind: int, end_stream: bool, fragment: bytes,
                     done: bool) -> None:
        side.block = bytearray(fragment)
        side.block_stream = stream_id
        side.block_kind = kind
        side.block_end = end_stream
        self._block_add(side, b"", done)

    def _block_add(self, side: _Side, fragment: bytes, done: bool) -> None:
        assert side.block is not None
        side.block += fragment
        if len(side.block) > MAX_HEADER_BLOCK:
            raise _Malformed(f"a header block over {MAX_HEADER_BLOCK} bytes on stream {side.block_stream}")
        if not done:
            return
        block, side.block = bytes(side.block), None
        headers = self._decode(side, block)
        if side.block_kind == HEADERS:
            self._headers(side, side.block_stream, headers, side.block_end)

    def _decode(self, side: _Side, block: bytes) -> list[tuple[bytes, bytes]] | None:
        if side.hpack_dead:
            return None
        try:
            headers = side.decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            side.hpack_dead = True
            name = _NAMES[self._role(side.direction)]
            self._emit(H2Problem(None, side.direction, Problem(
                ProblemKind.H2_HPACK_ERROR,
                f"the {name}'s header block on stream {side.block_stream} does not decode "
                f"({type(exc).__name__}: {exc}): its later header blocks cannot be trusted and are "
                "not decoded", *self._at)))
            return None
        return headers  # type: ignore[return-value]

    def _headers(self, side: _Side, stream_id: int, headers: list[tuple[bytes, bytes]] | None,
                 end_stream: bool) -> None:
        stream = self._streams.get(stream_id)
        if self._role(side.direction) == 0:
            # RFC 9113 §5.1.1: a new stream's id is larger than any the client opened before
            # (a HEADERS on an older one is a trailer, or a stream used again: never a new CONNECT)
            if stream is None and headers is not None and stream_id > self._last_stream:
                self._last_stream = stream_id
                request = kept_fields(headers)
                if is_websocket_connect(request):
                    stream = self._open(stream_id, request)
        elif stream is not None and stream.state is StreamState.PENDING and headers is not None:
            answer = kept_fields(headers)
            status = status_of(answer)
            if status is None or not 100 <= status < 200 or status == 101 or end_stream:   # §8.6: no 101
                self._answer(stream, answer, None)
        if stream is not None and end_stream and stream.stream_id in self._streams:
            self._end(stream, side.direction)

    # --- WebSocket streams ---------------------------------------------------------------------

    def _open(self, stream_id: int, request: dict[str, str]) -> _Stream | None:
        self.streams += 1
        if len(self._streams) >= MAX_OPEN:
            if not self._open_refused:
                self._open_refused = True
                self._emit(H2Problem(stream_id, self.client_dir, Problem(
                    ProblemKind.H2_MALFORMED,
                    f"more than {MAX_OPEN} WebSocket streams open at once: stream {stream_id} and "
                    "later ones over the limit are not followed", *self._at)))
            return None
        stream = _Stream(stream_id, request, self._at)
        self._streams[stream_id] = stream
        return stream

    def _answer(self, stream: _Stream, answer: dict[str, str] | None, why: str | None) -> None:
        handshake, problems = handshake_from_h2(
            stream.request, answer, connect_enabled=self.settings_connect_protocol,
            request_at=stream.request_at, answer_at=self._at if answer is not None else None,
            unanswered_why=why)
        server = 1 - self.client_dir
        for kind, detail in problems:
            self._emit(H2Problem(stream.stream_id, server, Problem(kind, detail, *self._at)))
        self._emit(H2WebSocket(stream.stream_id, handshake, *self._at))
        held, stream.held = stream.held, []
        self._held -= sum(len(data) for _, data, _, _ in held)
        if not handshake.upgraded:
            self._forget(stream)
            return
        stream.state = StreamState.OPEN
        for direction, data, record_no, ts_ns in held:
            self._emit(H2Data(stream.stream_id, direction, data, record_no, ts_ns))
        if stream.held_lost:
            self._emit(H2Problem(stream.stream_id, self.client_dir, Problem(
                ProblemKind.H2_MALFORMED,
                f"stream {stream.stream_id}: {stream.held_lost} bytes of DATA before the answer were "
                f"beyond the {MAX_HELD} bytes held: the stream's data is not followed", *self._at)))
            stream.lost = [True, True]
        for direction in (0, 1):
            if stream.ended[direction]:
                stream.ended[direction] = False
                self._end(stream, direction)

    def _end(self, stream: _Stream, direction: int) -> None:
        """END_STREAM from `direction` (nothing for a stream already closed: a DATA frame that
        began before an RST_STREAM ended it)."""
        if stream.state is StreamState.CLOSED:
            return
        if stream.state is StreamState.PENDING:
            stream.ended[direction] = True     # told after the answer
            return
        if stream.ended[direction]:
            return
        stream.ended[direction] = True
        self._emit(H2StreamEnd(stream.stream_id, direction, False, *self._at))
        if stream.ended[1 - direction]:
            self._forget(stream)

    def _reset(self, stream: _Stream, direction: int, code: int) -> None:
        name = _NAMES[self._role(direction)]
        if stream.state is StreamState.PENDING:
            self._answer(stream, None, f"stream reset by the {name} ({error_name(code)}) before an answer")
            return
        self._emit(H2Problem(stream.stream_id, direction, Problem(
            ProblemKind.H2_STREAM_RESET, f"stream {stream.stream_id} reset by the {name}: {error_name(code)}",
            *self._at)))
        # the reset ends what is still open: the resetting side's direction, or the other one when
        # that side had already ended its own with END_STREAM (each direction ends once)
        open_side = direction if not stream.ended[direction] else 1 - direction
        self._emit(H2StreamEnd(stream.stream_id, open_side, True, *self._at))
        self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        stream.state = StreamState.CLOSED
        self._streams.pop(stream.stream_id, None)

    # --- the end of a side ---------------------------------------------------------------------

    def _kill(self, side: _Side, detail: str) -> None:
        """Rule 2: the side is not followed further."""
        side.dead = True
        side.buf = bytearray()
        side.block = None
        side.in_data = False
        d = side.direction
        self._emit(H2Problem(None, d, Problem(ProblemKind.H2_MALFORMED, detail, *self._at)))
        name = _NAMES[self._role(d)]
        for stream in self._streams.values():
            if stream.state is StreamState.OPEN and not stream.ended[d] and not stream.lost[d]:
                stream.lost[d] = True
                self._emit(H2Problem(stream.stream_id, d, Problem(
                    ProblemKind.H2_MALFORMED,
                    f"stream {stream.stream_id}: the {name}'s data is not followed further", *self._at)))

    def _role(self, direction: int) -> int:
        """0 for the client's direction, 1 for the server's."""
        return 0 if direction == self.client_dir else 1
