"""The TLS record layer of one direction (RFC 8446 §5, RFC 5246 §6.2): buffered bytes in, whole
records out; and handshake messages reassembled across the records that carry them (§5.1).

Framing only: what the records mean (plaintext or not, which keys) is session.py's business.
"""

from __future__ import annotations

import struct

__all__ = [
    "ALERT", "APPLICATION_DATA", "CHANGE_CIPHER_SPEC", "HANDSHAKE", "HEARTBEAT", "MAX_HANDSHAKE",
    "MAX_RECORD", "HandshakeReader", "RecordError", "RecordReader", "looks_like_tls",
]

# RFC 8446 §5.1 ContentType (24: heartbeat, RFC 6520)
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

#: RFC 8446 §5.2 / RFC 5246 §6.2.3: a protected fragment is at most 2^14 + 256 (1.3) or 2^14 + 2048
#: (1.2) bytes; the larger bound serves both.
MAX_RECORD = 2 ** 14 + 2048
#: Handshake messages longer than this are skipped by counting, never buffered (a Certificate chain
#: can be large, and nothing in one is needed to decrypt).
MAX_HANDSHAKE = 256 * 1024

HEADER_LEN = 5
_RECORD = struct.Struct("!BHH")          # type, version, length
_FAST = struct.Struct("!H1xH")           # type + major version, length
#: the first two bytes of a header that can be TLS: content type 20..24, major version 3
_GOOD_START = frozenset((ctype << 8) | 3 for ctype in range(20, 25))
_HS_HEADER = struct.Struct("!I")         # msg_type (8 bits) + length (24 bits)


class RecordError(ValueError):
    """A record header that cannot be TLS: the direction's framing is lost (message: why)."""


def looks_like_tls(data: bytes) -> bool:
    """Whether the first bytes of a stream look like a TLS record header.

    Needs 3 bytes: content type 20..24 and version 3.0..3.4; a handshake record (the usual first
    one, a ClientHello) is held to version 3.1.. and, once its 6th byte is there, handshake type 1
    (ClientHello) or 2 (ServerHello). The connection layer's detection.
    """
    if len(data) < 3:
        return False
    ctype, major, minor = data[0], data[1], data[2]
    if major != 3 or minor > 4 or not CHANGE_CIPHER_SPEC <= ctype <= HEARTBEAT:
        return False
    if ctype == HANDSHAKE:
        if minor == 0:
            return False
        if len(data) >= 6 and data[5] not in (1, 2):
            return False
    return True


Record = tuple[bytes, "bytes | memoryview"]   # (5-byte header as on the wire, fragment)


class RecordReader:
    """One direction's records. `feed` returns the records its bytes complete; at most one partial
    record is buffered. A header that cannot be TLS raises RecordError (the caller gives up)."""

    __slots__ = ("_buf", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 0           # total size of the record being buffered (0: header not read yet)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held."""
        return len(self._buf)

    @property
    def pending_total(self) -> int:
        """Size on the wire of the record being buffered (0 when its header is not complete)."""
        return self._need

    def reset(self) -> None:
        """Drop the partial record (after a gap)."""
        self._buf = bytearray()
        self._need = 0

    def feed(self, data: bytes | memoryview) -> list[Record]:
        records: list[Record] = []
        buf = self._buf
        if buf:
            # Complete the buffered record first (the header may itself be incomplete).
            if not self._need:
                take = HEADER_LEN - len(buf)
                buf += data[:take]
                data = data[take:]
                if len(buf) < HEADER_LEN:
                    return records
                self._need = HEADER_LEN + _check(bytes(buf))
            take = self._need - len(buf)
            buf += data[:take]
            if len(buf) < self._need:
                return records
            whole = bytes(buf)
            records.append((whole[:HEADER_LEN], whole[HEADER_LEN:]))
            self._buf = bytearray()
            self._need = 0
            data = data[take:]
        if not isinstance(data, bytes):
            data = bytes(data)
        view = memoryview(data)
        end = len(data)
        off = 0
        unpack = _FAST.unpack_from
        good = _GOOD_START
        while end - off >= HEADER_LEN:
            start, length = unpack(data, off)
            if start not in good or length > MAX_RECORD:
                _check(data[off:off + HEADER_LEN])
            stop = off + HEADER_LEN + length
            if stop > end:
                self._need = stop - off
                break
            records.append((data[off:off + HEADER_LEN], view[off + HEADER_LEN:stop]))
            off = stop
        if off < end:
            self._buf = bytearray(view[off:])
        return records


def _check(header: bytes) -> int:
    """The fragment length of a 5-byte record header, or RecordError saying what is wrong."""
    ctype, version, length = _RECORD.unpack_from(header)
    length = int(length)
    if not CHANGE_CIPHER_SPEC <= ctype <= HEARTBEAT:
        raise RecordError(f"expected=a record content type 20..24, found={ctype}")
    if version >> 8 != 3:
        raise RecordError(f"expected=record version 0x03XX, found=0x{version:04X}")
    if length > MAX_RECORD:
        raise RecordError(f"expected=record length <= {MAX_RECORD}, found={length}")
    return length


class HandshakeReader:
    """Handshake messages of one direction, reassembled across records (RFC 8446 §4: 1-byte type,
    24-bit length). `feed` returns (msg_type, body, length) per completed message; body is None for a
    message over MAX_HANDSHAKE, which is skipped by counting (reported once, when it starts)."""

    __slots__ = ("_buf", "_skip")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0

    def reset(self) -> None:
        self._buf = bytearray()
        self._skip = 0

    @property
    def partial(self) -> bool:
        """A message is incomplete (RFC 8446 §5.1: must not be when the keys change)."""
        return bool(self._buf) or self._skip > 0

    def feed(self, fragment: bytes | memoryview) -> list[tuple[int, bytes | None, int]]:
        out: list[tuple[int, bytes | None, int]] = []
        if self._skip:
            n = min(self._skip, len(fragment))
            self._skip -= n
            fragment = fragment[n:]
        buf = self._buf
        buf += fragment
        off = 0
        end = len(buf)
        while end - off >= 4:
            word, = _HS_HEADER.unpack_from(buf, off)
            msg_type, length = word >> 24, word & 0xFFFFFF
            if length > MAX_HANDSHAKE:
                out.append((msg_type, None, length))
                available = end - off - 4
                if available >= length:      # (cannot happen with records <= MAX_RECORD; kept exact)
                    off += 4 + length
                    continue
                self._skip = length - available
                off = end
                break
            if end - off - 4 < length:
                break
            out.append((msg_type, bytes(buf[off + 4:off + 4 + length]), length))
            off += 4 + length
        if off:
            del buf[:off]
        return out
