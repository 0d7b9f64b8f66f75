"""Client frames of hybi-04..06: a frame nonce before each frame, and the whole frame masked.

In draft-ietf-hybi-thewebsocketprotocol-04 to -06 a client put a fresh 4-byte nonce in front of
every frame and XORed everything after it, header included:
  - hybi-05 and -06 with the nonce itself, repeated;
  - hybi-04 with a 20-byte key, SHA-1(nonce + connection masking key), repeated, where the
    connection masking key is SHA-1(Sec-WebSocket-Key + Sec-WebSocket-Nonce (the server's) +
    "61AC5F19-FBBA-4540-B96F-6561F1AB40A8").
(libwebsockets implemented exactly this in its 04/05 code paths.) hybi-07 moved the key into the
header behind a MASK bit, which is what frames.py decodes. This module undoes the old masking as
the bytes stream past and hands the clear frame bytes to a FrameDecoder with the hybi-04 opcode
table, so frames of every draft come out as the same Frame events.
"""

from __future__ import annotations

import hashlib

from analyzer.budget import PayloadBudget
from analyzer.events import Frame, FrameEvent, Problem
from analyzer.frames import FrameDecoder
from analyzer.masking import unmask
from analyzer.protocol import ProblemKind

MASKING_GUID_04 = b"61AC5F19-FBBA-4540-B96F-6561F1AB40A8"
_NONCE_LEN = 4
_STOPPED = -1


def connection_masking_key_04(key: str, server_nonce: str) -> bytes:
    """hybi-04's per-connection masking key (20 bytes)."""
    return hashlib.sha1(key.encode("latin-1") + server_nonce.encode("latin-1") + MASKING_GUID_04).digest()


def _xor_repeating(data: bytes, key: bytes, offset: int) -> bytes:
    """XOR `data` with `key` repeated, starting `offset` bytes into the key stream (one big-int XOR)."""
    n = len(data)
    if not n:
        return b""
    start = offset % len(key)
    rotated = key[start:] + key[:start]
    stream = (rotated * (n // len(rotated) + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class PrefixMaskedFrameDecoder:
    """Decoder for the client direction of hybi-04..06 (the server direction uses FrameDecoder).

    Args:
        max_payload: frames larger than this are counted, not buffered.
        masking_key_04: the connection masking key for hybi-04 (None: hybi-05/06 nonce masking).
        allowed_rsv: RSV bits a negotiated extension allows.
    """

    def __init__(self, *, max_payload: int = 16 << 20, masking_key_04: bytes | None = None,
                 allowed_rsv: int = 0, budget: PayloadBudget | None = None) -> None:
        self._inner = FrameDecoder(from_client=False, max_payload=max_payload, hybi04_opcodes=True,
                                   allowed_rsv=allowed_rsv, budget=budget)
        self._conn_key = masking_key_04
        self._buf = bytearray()
        self._key = b""             # key stream period of the current frame (4 or 20 bytes)
        self._offset = 0            # bytes of the current frame unmasked so far (after the nonce)
        self._remaining = 0         # payload bytes of the current frame still to come
        self._state = 0             # 0 nonce, 1 header, 2 payload, _STOPPED
        self.bytes_consumed = 0

    @property
    def frames_decoded(self) -> int:
        return self._inner.frames_decoded

    @property
    def stopped(self) -> bool:
        return self._state == _STOPPED

    def _unmask(self, data: bytes) -> bytes:
        if len(self._key) == 4:
            clear = unmask(data, self._key, self._offset)
        else:
            clear = _xor_repeating(data, self._key, self._offset)
        self._offset += len(data)
        return clear

    def feed(self, data: bytes, record_no: int, ts_ns: int) -> list[FrameEvent]:
        self.bytes_consumed += len(data)
        if self._state == _STOPPED:
            return []
        buf = self._buf
        buf += data
        clear = bytearray()
        pos = 0
        while True:
            state = self._state
            if state == 2:
                take = min(self._remaining, len(buf) - pos)
                if take:
                    clear += self._unmask(bytes(buf[pos:pos + take]))
                    pos += take
                    self._remaining -= take
                if self._remaining:
                    break
                self._state = 0
            elif state == 0:
                if len(buf) - pos < _NONCE_LEN:
                    break
                nonce = bytes(buf[pos:pos + _NONCE_LEN])
                pos += _NONCE_LEN
                self._key = nonce if self._conn_key is None else hashlib.sha1(nonce + self._conn_key).digest()
                self._offset = 0
                self._state = 1
            else:  # header: 2 bytes, then 2 or 8 more for the extended length
                if len(buf) - pos < 2:
                    break
                first = self._peek(buf, pos, 2)
                size7 = first[1] & 0x7F
                header_len = 2 + (2 if size7 == 126 else 8 if size7 == 127 else 0)
                if len(buf) - pos < header_len:
                    break
                header = self._unmask(bytes(buf[pos:pos + header_len]))
                pos += header_len
                clear += header
                length = size7 if size7 < 126 else int.from_bytes(header[2:], "big")
                if length >> 63:
                    # The inner decoder reports LENGTH_TOP_BIT_SET and loses sync; so do we.
                    self._state = _STOPPED
                    break
                self._remaining = length
                self._state = 2
        if pos:
            del buf[:pos]
        events = self._inner.feed(bytes(clear), record_no, ts_ns) if clear else []
        if self._state == _STOPPED:
            events.append(Problem(ProblemKind.FRAMES_LOST_AFTER_GAP,
                                  "expected=a frame length below 2**63, found=a masked length with "
                                  "the top bit set; the rest of this direction is not decoded",
                                  record_no, ts_ns))
        return [self._as_client_frame(ev) for ev in events]

    def _peek(self, buf: bytearray, pos: int, n: int) -> bytes:
        """Unmask `n` bytes at `pos` without advancing the key stream."""
        offset = self._offset
        clear = self._unmask(bytes(buf[pos:pos + n]))
        self._offset = offset
        return clear

    @staticmethod
    def _as_client_frame(ev: FrameEvent) -> FrameEvent:
        if isinstance(ev, Frame):               # a CutFrame too
            return ev._replace(masked=True, header_len=ev.header_len + _NONCE_LEN)
        return ev

    def gap(self, size: int, record_no: int, ts_ns: int) -> list[FrameEvent]:
        self.bytes_consumed += size
        if self._state == _STOPPED:
            return []
        if self._state == 2 and not self._buf and size <= self._remaining:
            self._remaining -= size
            self._offset += size
            if not self._remaining:
                self._state = 0
            return [self._as_client_frame(ev) for ev in self._inner.gap(size, record_no, ts_ns)]
        self._state = _STOPPED
        self._buf.clear()
        return [Problem(ProblemKind.FRAMES_LOST_AFTER_GAP,
                        f"expected=the next frame nonce, found={size} bytes missing; masked hybi-04..06 "
                        "client frames cannot be resynchronised", record_no, ts_ns)]

    def finish(self) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        if self._state in (0, 1) and self._buf:
            events.append(Problem(ProblemKind.CAPTURE_ENDS_MID_FRAME,
                                  f"expected=a whole frame, found={len(self._buf)} bytes of a frame "
                                  "nonce or header"))
            self._buf.clear()
        if self._state != _STOPPED:
            events.extend(self._as_client_frame(ev) for ev in self._inner.finish())
        return events
