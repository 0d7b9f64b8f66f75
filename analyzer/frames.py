"""Stream bytes of one direction → Frame / Problem events: RFC 6455 and hybi-04+ framing (sans-IO).

This module owns the base framing layer (RFC 6455, Section 5.2): headers, lengths, masking,
the per-frame protocol checks, payload size limits, TCP gaps and resynchronisation. Messages,
UTF-8, compression and close semantics belong to messages.py; `parse_close_payload` is here
because it reads the close frame's own payload.

Rules of the decoder (one instance per direction of one connection):

1. Nothing raises out of `feed`/`gap`/`finish`; every defect becomes a `Problem` with a stable
   `ProblemKind` and an "expected=…, found=…" detail.
2. A Frame carries the record_no/ts_ns of the `feed` (or `gap`) call that COMPLETED it, as
   Wireshark numbers a frame by the packet that completed it. Problems about a frame header
   are emitted when the header has been read, just before the frame (same call when both are
   in one packet), with the record_no of the call that completed the header.
3. A payload over `max_payload` is counted while it streams past, never buffered
   (FRAME_TOO_LARGE, Frame.payload None). Payload bytes lost in a TCP gap that falls wholly
   inside a payload keep sync: that frame is reported with payload None.
4. Sync is lost when a gap hits a header, or on a 64-bit length with its top bit set. The
   decoder then searches forward (a regex over the buffered bytes, never per byte in Python)
   for a plausible header whose frame is followed by another plausible header or ends exactly
   on a feed boundary, and reports FRAMES_LOST_AFTER_GAP with the bytes skipped. When nothing
   is found within `RESYNC_GIVE_UP` bytes the direction stops (`stopped`) and only counts bytes.
5. `finish` reports a frame the capture ended inside: CAPTURE_ENDS_MID_FRAME, then, when its header
   was read, a `CutFrame` (payload_len as declared, payload None) so that it is listed as tshark
   lists it; a partial header is only the problem.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from analyzer.budget import SHARED_BUDGET, BudgetedPayload, PayloadBudget
from analyzer.events import Frame, FrameEvent, Problem
from analyzer.masking import unmask, unmask_inplace
from analyzer.protocol import HYBI04_OPCODES, ProblemKind, close_code_class, opcode_name
from analyzer.tables import F_COMPRESSED, F_FIN, F_HEADER_SHIFT, F_MASKED, M_BINARY, M_COMPRESSED

if TYPE_CHECKING:
    from analyzer.messages import MessageAssembler

__all__ = [
    "RESYNC_CHAIN", "RESYNC_GIVE_UP", "RESYNC_MAX_FRAME", "RESYNC_PROBATION", "CutFrame", "FrameDecoder",
    "parse_close_payload",
]

# RFC 6455, Section 5.2 - Base Framing Protocol
FIN_MASK = 0x80
RSV_MASK = 0x70
OPCODE_MASK = 0x0F
MASK_MASK = 0x80
PAYLOAD_LEN_MASK = 0x7F
PAYLOAD_LEN_16 = 126
PAYLOAD_LEN_64 = 127
MAX_CONTROL_PAYLOAD = 125           # Section 5.5: control frames carry at most 125 bytes

# What the fast path needs to write whole one-frame messages (emit_whole_messages): per first byte
# None or (opcode, compressed, frame flags, message flags); the largest payload; the assembler's
# can_take_single, single and single_compressed; the row writer; the conn_id.
_WholeMessages = tuple[tuple["tuple[int, bool, int, int] | None", ...], int, Any, Any, Any, Any, int]
_NO_WHOLE: _WholeMessages = ((None,) * 256, -1, None, None, None, None, 0)
_HEAD = struct.Struct("!BB")
_HEADER_SHIFT = F_HEADER_SHIFT
_new = tuple.__new__        # Frame(...) without the Python-level NamedTuple __new__ (hot path)
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_CLOSE_CODE = struct.Struct("!H")

#: While resynchronising, a candidate frame longer than this cannot be checked (we would have
#: to buffer it whole) and is not accepted.
RESYNC_MAX_FRAME = 1 << 20
#: A resynchronisation candidate is accepted after this many plausible headers in a row.
RESYNC_CHAIN = 3
#: After a resynchronisation, this many further frames must look plausible too, else sync is
#: lost again (a false start found in random payload bytes soon runs into an implausible header).
RESYNC_PROBATION = 16
#: Bytes searched without finding a plausible header before the direction is given up.
RESYNC_GIVE_UP = 4 << 20

_KNOWN_OPCODES = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})


class CutFrame(Frame):
    """A frame the capture ended inside (header read, payload incomplete), reported by `finish`
    after its CAPTURE_ENDS_MID_FRAME problem: payload_len as the header declared it (for a hixie
    text frame, which declares none, the bytes seen), payload None, record_no/ts_ns of the last
    packet that carried its bytes. Its message, if any, stays incomplete."""

    __slots__ = ()


# hybi-04..06 wire opcode → RFC 6455 opcode. The defined ones come from protocol.HYBI04_OPCODES;
# the wire values reserved in those drafts map one-to-one onto RFC-reserved numbers (6, 7, B-F
# stay as they are, 8/9/A become 3/4/5) so that a reserved opcode is reported as reserved.
_HYBI04_TO_RFC: tuple[int, ...] = tuple(
    int(HYBI04_OPCODES[raw]) if raw in HYBI04_OPCODES else {8: 3, 9: 4, 10: 5}.get(raw, raw)
    for raw in range(16)
)


def _rsv_names(rsv: int) -> str:
    names = [n for bit, n in ((4, "rsv1"), (2, "rsv2"), (1, "rsv3")) if rsv & bit]
    return "+".join(names) if names else "none"


_B0Table = tuple[tuple[int, bool, bool, bool, bool, "int | None", bool], ...]


@functools.lru_cache(maxsize=64)
def _tables(from_client: bool, hybi04_opcodes: bool, allowed_rsv: int) -> tuple[_B0Table, re.Pattern[bytes]]:
    """The first-byte table and the resync candidate regex of a decoder configuration, built once
    per configuration (32 at most) and shared: a capture may open thousands of decoders.

    Per first byte: (opcode, fin, rsv1, rsv2, rsv3, raw_opcode, clean) where clean means no check
    can fire from this byte alone (rsv allowed, opcode known, control with FIN)."""
    b0_table = []
    plausible_first = bytearray()
    for b0 in range(256):
        raw = b0 & OPCODE_MASK
        opcode = _HYBI04_TO_RFC[raw] if hybi04_opcodes else raw
        fin = bool(b0 & FIN_MASK)
        rsv = (b0 & RSV_MASK) >> 4
        clean = opcode in _KNOWN_OPCODES and not rsv & ~allowed_rsv and (fin or opcode < 8)
        if clean:
            plausible_first.append(b0)
        b0_table.append((opcode, fin, bool(rsv & 4), bool(rsv & 2), bool(rsv & 1),
                         raw if hybi04_opcodes else None, clean))
    second = rb"[\x80-\xff]" if from_client else rb"[\x00-\x7f]"
    cand_re = re.compile(b"[" + b"".join(re.escape(bytes([b])) for b in plausible_first) + b"]" + second)
    return tuple(b0_table), cand_re


@functools.lru_cache(maxsize=256)
def _whole_table(from_client: bool, hybi04_opcodes: bool, allowed_rsv: int, compression: str | None,
                 frame_flags: int, message_flags: int) -> tuple[tuple[int, bool, int, int] | None, ...]:
    """Per first byte: None, or (opcode, compressed, frame-row flags, message-row flags) of a whole
    one-frame text or binary message (FrameDecoder.emit_whole_messages); built once per
    configuration, not per connection."""
    b0_table, _ = _tables(from_client, hybi04_opcodes, allowed_rsv)
    table: list[tuple[int, bool, int, int] | None] = []
    for opcode, fin, rsv1, rsv2, rsv3, _raw, clean in b0_table:
        # RSV1 compresses the message under permessage-deflate ("message"); under deflate-frame
        # ("frame") it compresses the frame, which the general path inflates; allowed without an
        # extension (ports= mode allows every RSV bit) it is only a flag, as on the general path
        if not (clean and fin and opcode in (1, 2)) or (rsv1 and compression == "frame"):
            table.append(None)
            continue
        compressed = rsv1 and compression == "message"
        table.append((opcode, compressed,
                      frame_flags | opcode | F_FIN | (rsv1 << 5) | (rsv2 << 6) | (rsv3 << 7)
                      | (F_MASKED if from_client else 0) | (F_COMPRESSED if compressed else 0),
                      message_flags | (M_BINARY if opcode == 2 else 0)
                      | (M_COMPRESSED if compressed else 0)))
    return tuple(table)


class FrameDecoder(BudgetedPayload):
    """Decode the frames of one direction of a WebSocket connection (RFC 6455 / hybi-07+).

    Args:
        from_client: this direction is client→server, whose frames must be masked; server
            frames must not be.
        max_payload: payloads longer than this are counted and skipped, not kept.
        hybi04_opcodes: decode opcodes with the hybi-04..06 table and report RFC numbers
            (`Frame.raw_opcode` keeps the wire value).
        allowed_rsv: bitmask of the RSV bits a negotiated extension allows, as
            `first_byte >> 4 & 7` (RSV1=4 for permessage-deflate, RSV2=2, RSV3=1).
        budget: the bound on partial payloads shared with other decoders (SHARED_BUDGET).
    """

    __slots__ = (
        "_allowed_rsv", "_b0", "_bounds", "_buf", "_cand_re", "_cur", "_expect_mask", "_from_client",
        "_hybi04", "_last", "_lost", "_lost_cause", "_lost_record", "_max_payload", "_probation",
        "_skipped", "_whole", "bytes_consumed", "frames_decoded", "stopped", "whole_messages",
    )

    def __init__(self, *, from_client: bool, max_payload: int = 16 << 20, hybi04_opcodes: bool = False,
                 allowed_rsv: int = 0, budget: PayloadBudget | None = None) -> None:
        self._budget = SHARED_BUDGET if budget is None else budget
        self._held = 0                   # bytes of the budget this decoder holds
        self._from_client = from_client
        self._max_payload = max(0, max_payload)
        self._hybi04 = hybi04_opcodes
        self._allowed_rsv = allowed_rsv & 7
        self._expect_mask = MASK_MASK if from_client else 0
        self._b0, self._cand_re = _tables(from_client, hybi04_opcodes, self._allowed_rsv)
        self._buf = bytearray()
        # the frame whose payload is streaming: (opcode, fin, rsv1, rsv2, rsv3, masked,
        # payload_len, header_len, raw_opcode, key); None between frames
        self._cur: tuple[int, bool, bool, bool, bool, bool, int, int, int | None, bytes | None] | None = None
        self._remaining = 0
        self._payload: bytearray | None = None
        # resynchronisation state
        self._lost = False
        self._lost_cause = ""
        self._lost_record: int | None = None
        self._skipped = 0
        self._bounds: set[int] = set()      # absolute stream offsets where feeds ended
        self._last = (0, 0)                  # record_no, ts_ns of the last feed
        self._probation = 0                  # frames after a resync still checked for plausibility
        self.frames_decoded = 0             # frames returned as Frame events
        self.whole_messages = 0             # one-frame messages written to the rows (emit_whole_messages)
        self.bytes_consumed = 0
        self.stopped = False
        self._whole: _WholeMessages | None = None    # set by emit_whole_messages

    # --- public ---------------------------------------------------------------------------

    def feed(self, data: bytes, record_no: int, ts_ns: int) -> list[FrameEvent]:
        """Take the next bytes of the direction; return the frames and problems they complete
        (whole one-frame messages go to the rows instead when `emit_whole_messages` was called)."""
        if self.stopped:
            self.bytes_consumed += len(data)
            return []
        if not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        self._last = (record_no, ts_ns)
        if self._buf or self._cur is not None or self._lost or self._probation:
            return self._run(data, record_no, ts_ns, False)
        # Fast path: whole, clean frames at the start of `data` (nearly every packet of a healthy
        # connection), decoded straight from the bytes object. Anything else - a partial frame, a
        # check that would fire, a 64-bit or an over-limit length - goes to _run from there.
        # While no Frame has been returned yet and the assembler has no message open, a whole
        # one-frame text or binary message is written to the rows here (see emit_whole_messages).
        out: list[FrameEvent] = []
        append = out.append
        b0_table = self._b0
        expect_mask = self._expect_mask
        max_payload = self._max_payload
        whole = self._whole
        taking = whole is not None and whole[2]()           # the assembler can take one now
        (whole_table, whole_max, _can_take, single, single_compressed, write,
         conn_id) = whole if whole is not None else _NO_WHOLE
        end = len(data)
        pos = 0
        wholes = frames = 0
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & PAYLOAD_LEN_MASK
            if length < PAYLOAD_LEN_16:
                hlen = 2
            elif length == PAYLOAD_LEN_16 and end - pos >= 4:
                length = (data[pos + 2] << 8) | data[pos + 3]
                if length < PAYLOAD_LEN_16:
                    break                       # non-minimal: _run reports it
                hlen = 4
            else:
                break
            masked = b1 & MASK_MASK
            entry = None
            if taking:
                # a whole one-frame text or binary message (the table has an entry only for a clean
                # first byte with FIN and opcode 1 or 2): its rows are written here
                entry = whole_table[b0]
                if entry is None or masked != expect_mask or length > whole_max:
                    entry = None
                    taking = False              # from here on, Frames (their order is the rows')
            general = b0_table[b0]              # (opcode, fin, rsv1, rsv2, rsv3, raw, clean)
            if entry is None and (masked != expect_mask or not general[6] or length > max_payload
                                  or (general[0] >= 8 and length > MAX_CONTROL_PAYLOAD)):
                break
            if masked:
                hlen += 4
                start = pos + hlen
                stop = start + length
                if stop > end:
                    break
                payload = unmask(data[start:stop], data[start - 4:start])
            else:
                start = pos + hlen
                stop = start + length
                if stop > end:
                    break
                payload = data[start:stop]
            pos = stop
            if entry is not None:
                opcode, compressed, frame_flags, message_flags = entry
                if compressed:
                    message_id, size, preview, kept = single_compressed(opcode, payload, record_no, ts_ns,
                                                                        out)
                else:
                    message_id, size, preview, kept = single(opcode, payload, record_no, ts_ns, out)
                write(conn_id, record_no, ts_ns, frame_flags | (hlen << _HEADER_SHIFT), length,
                      message_id, message_flags, size, preview, kept)
                wholes += 1
                continue
            opcode, fin, rsv1, rsv2, rsv3, raw, _clean = general
            append(_new(Frame, (record_no, ts_ns, opcode, fin, rsv1, rsv2, rsv3, bool(masked), length,
                                payload, hlen, raw)))
            frames += 1
        self.frames_decoded += frames
        self.whole_messages += wholes
        self.bytes_consumed += pos
        if pos < end:
            out.extend(self._run(data[pos:] if pos else data, record_no, ts_ns, False))
        return out

    def emit_whole_messages(self, assembler: MessageAssembler, write: Callable[..., None], conn_id: int,
                            frame_flags: int, message_flags: int) -> None:
        """From now on, write whole one-frame text and binary messages met on the fast path
        straight to the rows: `assembler.single` / `single_compressed` make the message (the same
        code its general path uses for such a message), `write` writes both rows. Only at a
        message boundary of the assembler, and only until the first frame that is not such a
        message in each feed: the frames after it go the general way, so every row and problem
        keeps its order. `write`: TableRows.whole_message_writer().
        frame_flags / message_flags: the sender's bits (F_SERVER / M_SERVER).
        Problems of those messages (invalid UTF-8, inflation) are returned by `feed` in order."""
        table = _whole_table(self._from_client, self._hybi04, self._allowed_rsv, assembler.compression,
                             frame_flags, message_flags)
        # the general path treats a longer uncompressed payload as over the message limit
        self._whole = (table, min(self._max_payload, assembler.max_message_bytes),
                       assembler.can_take_single, assembler.single, assembler.single_compressed, write,
                       conn_id)

    def _run(self, data: bytes, record_no: int, ts_ns: int, final: bool) -> list[FrameEvent]:
        out: list[FrameEvent] = []
        buf = self._buf
        src: bytes | bytearray
        if buf or self._lost:
            buf += data
            src = buf
        else:
            src = data
        end = len(src)
        pos = 0
        b0_table = self._b0
        max_payload = self._max_payload
        expect_mask = self._expect_mask
        while True:
            if self._lost:
                # resynchronisation works on the buffer: move what is left there
                if src is not buf:
                    self.bytes_consumed += pos
                    buf += memoryview(src)[pos:]
                    src = buf
                else:
                    self.bytes_consumed += pos
                    del buf[:pos]
                pos = 0
                end = len(buf)
                self._bounds.add(self.bytes_consumed + end)
                if not self._resync(out, record_no, ts_ns, final):
                    return out
                # resynchronised: buf[0] starts a frame
                end = len(buf)
                continue
            if self._cur is not None:
                # inside a payload: take what is there, up to the end of the frame
                take = end - pos
                if take > self._remaining:
                    take = self._remaining
                if self._payload is not None:
                    if self._budget.take(take):
                        self._payload += memoryview(src)[pos:pos + take]
                        self._held += take
                    else:
                        out.append(self._over_budget(record_no, ts_ns))
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                out.append(self._complete(record_no, ts_ns))
                continue
            avail = end - pos
            if avail < 2:
                break
            if self._probation:
                # just resynchronised: one implausible header means the chain was a fluke
                e = self._plausible(src, pos, False)
                if e is None:
                    break
                if e < 0:
                    self._lose_sync(1, "implausible frame header after resynchronising", record_no)
                    pos += 1
                    continue
                self._probation -= 1
            b0, b1 = _HEAD.unpack_from(src, pos)
            length = b1 & PAYLOAD_LEN_MASK
            hlen = 2
            if length >= PAYLOAD_LEN_16:
                if length == PAYLOAD_LEN_16:
                    if avail < 4:
                        break
                    (length,) = _U16.unpack_from(src, pos + 2)
                    hlen = 4
                    form = 16
                else:
                    if avail < 10:
                        break
                    (length,) = _U64.unpack_from(src, pos + 2)
                    hlen = 10
                    form = 64
                    if length >> 63:
                        out.append(Problem(
                            ProblemKind.LENGTH_TOP_BIT_SET,
                            f"expected=64-bit length with most significant bit 0, found=0x{length:016X}",
                            record_no, ts_ns))
                        self._lose_sync(1, "64-bit length with its top bit set", record_no)
                        pos += 1            # search from the byte after the bad header's start
                        continue
            else:
                form = 7
            masked = b1 & MASK_MASK
            if masked:
                if avail < hlen + 4:
                    break
                key: bytes | None = bytes(src[pos + hlen:pos + hlen + 4])
                hlen += 4
            else:
                key = None
            opcode, fin, rsv1, rsv2, rsv3, raw, clean = b0_table[b0]
            if not clean or masked != expect_mask or (form != 7 and (
                    length < PAYLOAD_LEN_16 or (form == 64 and length < 0x10000))) or (
                    opcode >= 8 and length > MAX_CONTROL_PAYLOAD):
                self._check(out, b0, opcode, fin, bool(masked), length, form, record_no, ts_ns)
            start = pos + hlen
            stop = start + length
            if stop <= end and length <= max_payload:
                # fast path: the whole frame is here
                if key is not None:
                    payload = unmask(memoryview(src)[start:stop], key)
                else:           # (a slice of the bytes object, or a copy out of the buffer)
                    payload = bytes(memoryview(src)[start:stop]) if src is buf else bytes(src[start:stop])
                out.append(Frame(record_no, ts_ns, opcode, fin, rsv1, rsv2, rsv3, bool(masked),
                                 length, payload, hlen, raw))
                self.frames_decoded += 1
                pos = stop
                continue
            self._cur = (opcode, fin, rsv1, rsv2, rsv3, bool(masked), length, hlen, raw, key)
            self._remaining = length
            if length <= max_payload:
                self._payload = bytearray()
            else:
                self._drop_payload()
                out.append(Problem(
                    ProblemKind.FRAME_TOO_LARGE,
                    f"expected=payload_len<={max_payload}, found={length} "
                    f"({opcode_name(opcode)}): payload counted, not kept", record_no, ts_ns))
            pos = start
        # one del per batch (amortised O(n)), or keep the tail of a bytes object
        if src is buf:
            if pos:
                del buf[:pos]
        elif pos < end:
            buf += memoryview(src)[pos:]
        self.bytes_consumed += pos
        return out

    def gap(self, size: int, record_no: int, ts_ns: int) -> list[FrameEvent]:
        """`size` bytes of this direction are missing (TCP gap); the data after them follows.
        size -1: an unknown number of bytes is missing (a gap inside TLS records): the frame in
        progress ends there and the next frame is found by resynchronising."""
        out: list[FrameEvent] = []
        if size < 0:
            if self.stopped or self._lost:
                return out
            if self._cur is not None:
                self._gap_in_payload(self._remaining + 1, lambda: self._complete(record_no, ts_ns), out)
            buffered = len(self._buf)
            self.bytes_consumed += buffered
            self._buf.clear()
            self._lose_sync(buffered, "bytes lost in a gap of the TLS stream", record_no)
            return out
        if size == 0:
            return out
        self.bytes_consumed += size
        if self.stopped:
            return out
        if self._lost:
            # a chain of frames cannot be checked across missing bytes: drop what was buffered
            self._skipped += size + len(self._buf)
            self.bytes_consumed += len(self._buf)
            self._buf.clear()
            self._bounds.clear()
            return out
        if self._cur is not None:
            size = self._gap_in_payload(size, lambda: self._complete(record_no, ts_ns), out)
            if not size:
                return out
        # the next header is (at least partly) in the gap
        buffered = len(self._buf)
        self.bytes_consumed += buffered
        self._buf.clear()
        self._lose_sync(size + buffered, f"TCP gap of {size} bytes in a frame header", record_no)
        return out

    def finish(self) -> list[FrameEvent]:
        """End of the stream: report a partial frame (and list it as a CutFrame when its header
        was read) or an unfinished resynchronisation."""
        out: list[FrameEvent] = []
        if self.stopped:
            return out
        if self._lost and self._buf:
            # last chance: a chain of plausible frames that runs to the end of the stream
            out += self._run(b"", self._last[0], self._last[1], True)
            if self.stopped:
                return out
        buffered = len(self._buf)
        if self._lost:
            out.append(Problem(
                ProblemKind.FRAMES_LOST_AFTER_GAP,
                f"{self._lost_cause}: no frame header found before the end of the stream, "
                f"skipped={self._skipped + buffered} bytes", self._lost_record, None))
            self._skipped = 0
            self._lost = False
        elif self._cur is not None:
            opcode, fin, rsv1, rsv2, rsv3, masked, length, hlen, raw, _k = self._cur
            out.append(Problem(
                ProblemKind.CAPTURE_ENDS_MID_FRAME,
                f"expected={length} payload bytes ({opcode_name(opcode)}), "
                f"found={length - self._remaining}, missing={self._remaining}", None, None))
            record_no, ts_ns = self._last
            out.append(CutFrame(record_no, ts_ns, opcode, fin, rsv1, rsv2, rsv3, masked, length, None, hlen,
                                raw))
            self._cur = None
            self._drop_payload()
            self._remaining = 0
        elif buffered:
            need = self._header_need(self._buf)
            out.append(Problem(
                ProblemKind.CAPTURE_ENDS_MID_FRAME,
                f"expected={need} header bytes, found={buffered}, missing={need - buffered}",
                None, None))
        self.bytes_consumed += buffered
        self._buf.clear()
        self._bounds.clear()
        return out

    # --- internals ------------------------------------------------------------------------

    def _over_budget(self, record_no: int, ts_ns: int) -> Problem:
        cur = self._cur
        assert cur is not None
        return self._budget_refusal(f"{opcode_name(cur[0])}, payload_len={cur[6]}", record_no, ts_ns)

    def _complete(self, record_no: int, ts_ns: int) -> Frame:
        cur = self._cur
        assert cur is not None
        opcode, fin, rsv1, rsv2, rsv3, masked, length, hlen, raw, key = cur
        kept = self._payload
        payload: bytes | None
        if kept is None:
            payload = None
        else:
            if key is not None:
                unmask_inplace(kept, key)
            payload = bytes(kept)
        self._cur = None
        self._drop_payload()
        self.frames_decoded += 1
        return Frame(record_no, ts_ns, opcode, fin, rsv1, rsv2, rsv3, masked, length, payload, hlen, raw)

    def _check(self, out: list[FrameEvent], b0: int, opcode: int, fin: bool, masked: bool,
               length: int, form: int, record_no: int, ts_ns: int) -> None:
        """The per-header checks, run only when the fast test saw something wrong."""
        name = opcode_name(opcode)
        if masked != self._from_client:
            if self._from_client:
                out.append(Problem(ProblemKind.UNMASKED_CLIENT_FRAME,
                                   f"expected=masked, found=unmasked ({name})", record_no, ts_ns))
            else:
                out.append(Problem(ProblemKind.MASKED_SERVER_FRAME,
                                   f"expected=unmasked, found=masked ({name})", record_no, ts_ns))
        rsv = (b0 & RSV_MASK) >> 4
        if rsv & ~self._allowed_rsv:
            out.append(Problem(
                ProblemKind.RSV_WITHOUT_EXTENSION,
                f"expected={_rsv_names(self._allowed_rsv)}, found={_rsv_names(rsv)} ({name})",
                record_no, ts_ns))
        if opcode not in _KNOWN_OPCODES:
            raw = b0 & OPCODE_MASK
            wire = f" (wire 0x{raw:X}, hybi-04 table)" if self._hybi04 else ""
            out.append(Problem(
                ProblemKind.RESERVED_OPCODE,
                f"expected=0x0-0x2 or 0x8-0xA, found=0x{opcode:X}{wire}", record_no, ts_ns))
        if opcode >= 8:
            if length > MAX_CONTROL_PAYLOAD:
                out.append(Problem(
                    ProblemKind.CONTROL_FRAME_TOO_LONG,
                    f"expected=payload_len<={MAX_CONTROL_PAYLOAD}, found={length} ({name})",
                    record_no, ts_ns))
            if not fin:
                out.append(Problem(ProblemKind.FRAGMENTED_CONTROL_FRAME,
                                   f"expected=fin=1, found=fin=0 ({name})", record_no, ts_ns))
        if form == 16 and length < PAYLOAD_LEN_16:
            out.append(Problem(ProblemKind.NON_MINIMAL_LENGTH,
                               f"expected=7-bit length, found=16-bit length {length}", record_no, ts_ns))
        elif form == 64 and length < 0x10000:
            minimal = "7-bit" if length < PAYLOAD_LEN_16 else "16-bit"
            out.append(Problem(ProblemKind.NON_MINIMAL_LENGTH,
                               f"expected={minimal} length, found=64-bit length {length}",
                               record_no, ts_ns))

    @staticmethod
    def _header_need(buf: bytes | bytearray) -> int:
        """How many header bytes the (partial) header at buf[0] needs in all."""
        if len(buf) < 2:
            return 2
        b1 = buf[1]
        length = b1 & PAYLOAD_LEN_MASK
        need = 2 + (2 if length == PAYLOAD_LEN_16 else 8 if length == PAYLOAD_LEN_64 else 0)
        return need + (4 if b1 & MASK_MASK else 0)

    def _lose_sync(self, skipped: int, cause: str, record_no: int | None) -> None:
        self._probation = 0
        self._cur = None
        self._drop_payload()
        self._remaining = 0
        self._lost = True
        self._lost_cause = cause
        self._lost_record = record_no
        self._skipped = skipped
        self._bounds.clear()

    def _plausible(self, buf: bytes | bytearray, i: int, bounded: bool = True) -> int | None:
        """End offset of a plausible frame starting at buf[i]; -1 if implausible; None: need more.

        Plausible = what a conforming peer of this direction would send: known opcode, control
        frames final and short, the right mask bit, only allowed RSV bits, minimal length, and
        short enough to be checked (RESYNC_MAX_FRAME) when `bounded`; and not 0x00 0x00."""
        end = len(buf)
        if end - i < 2:
            return None
        b0, b1 = buf[i], buf[i + 1]
        if not self._b0[b0][6] or (b1 & MASK_MASK) != self._expect_mask or not (b0 or b1):
            return -1       # (0x00 0x00, an empty unfinished continuation, is what zero padding looks like)
        length = b1 & PAYLOAD_LEN_MASK
        hlen = 2
        if length == PAYLOAD_LEN_16:
            if end - i < 4:
                return None
            (length,) = _U16.unpack_from(buf, i + 2)
            if length < PAYLOAD_LEN_16:
                return -1
            hlen = 4
        elif length == PAYLOAD_LEN_64:
            if end - i < 10:
                return None
            (length,) = _U64.unpack_from(buf, i + 2)
            if length < 0x10000:
                return -1
            hlen = 10
        if self._b0[b0][0] >= 8 and length > MAX_CONTROL_PAYLOAD:
            return -1
        if bounded and (length > RESYNC_MAX_FRAME or length > self._max_payload):
            return -1
        return i + hlen + (4 if b1 & MASK_MASK else 0) + length

    def _chain(self, buf: bytearray, i: int, base: int, final: bool) -> bool | None:
        """Is buf[i] a frame start? Follow the chain of plausible frames from it.

        Accept after RESYNC_CHAIN plausible headers in a row, or after two when the second
        frame ends exactly on a feed boundary, or (at the end of the stream) when the chain
        runs exactly to the end. Reject as soon as one header is implausible. None: need more.
        On random bytes a header is plausible with p ~ 2%, so a chain of three is ~1e-5."""
        end = len(buf)
        bounds = self._bounds
        e = self._plausible(buf, i)
        k = 1
        while True:
            if e is None:
                return False if final and k >= 2 else None
            if e < 0:
                return False
            if k >= RESYNC_CHAIN or (k >= 2 and base + e in bounds):
                return True
            if e >= end:
                if final:
                    return e == end or k >= 2
                return None
            e = self._plausible(buf, e)
            k += 1

    def _resync(self, out: list[FrameEvent], record_no: int, ts_ns: int, final: bool = False) -> bool:
        """Search the buffer for a frame start; True when buf[0] now starts a frame."""
        buf = self._buf
        end = len(buf)
        base = self.bytes_consumed          # absolute stream offset of buf[0]
        search = self._cand_re.search
        pos = 0
        keep_from = max(0, end - 1)         # where to cut when no candidate is pending
        while True:
            m = search(buf, pos)
            if m is None:
                break
            i = m.start()
            verdict = self._chain(buf, i, base, final)
            if verdict is None:
                keep_from = i
                break
            if verdict:
                self._skipped += i
                self.bytes_consumed += i
                del buf[:i]
                out.append(Problem(
                    ProblemKind.FRAMES_LOST_AFTER_GAP,
                    f"{self._lost_cause}: resynchronised after skipping {self._skipped} bytes",
                    record_no, ts_ns))
                self._lost = False
                self._skipped = 0
                self._bounds.clear()
                self._probation = RESYNC_PROBATION
                return True
            pos = i + 1
        if final:
            keep_from = end
        # nothing accepted yet: drop what can no longer start a frame
        self._skipped += keep_from
        self.bytes_consumed += keep_from
        del buf[:keep_from]
        if self._skipped > RESYNC_GIVE_UP:
            out.append(Problem(
                ProblemKind.FRAMES_LOST_AFTER_GAP,
                f"{self._lost_cause}: no frame header found in {self._skipped} bytes, "
                f"direction stopped", record_no, ts_ns))
            self.bytes_consumed += len(buf)
            buf.clear()
            self._bounds.clear()
            self._lost = False
            self.stopped = True
            return False
        base = self.bytes_consumed
        self._bounds = {b for b in self._bounds if b > base}
        return False


def parse_close_payload(payload: bytes) -> tuple[int | None, str | None, list[tuple[ProblemKind, str]]]:
    """Read a Close frame's payload (RFC 6455, Section 5.5.1): status code and UTF-8 reason.

    Which codes are invalid on the wire: RFC 6455 Section 7.4.2 leaves 0-999 unused and reserves
    1000-2999 for the protocol and its extensions, and Section 8.1 / 7.1.7 make a peer fail the
    connection on a code it does not know. websockets (`Close.check`: only the defined codes
    plus 3000-4999) and wsproto (`_process_close`: no unknown code <= 2999) both reject 1004,
    1016-2999, <1000 and >=5000; so do we (INVALID_CLOSE_CODE, classes "reserved", "unassigned"
    and "invalid" of protocol.close_code_class). 1012-1014 (IANA) are valid. 1005, 1006 and 1015
    are defined but MUST NOT be sent (Section 7.4.1): FORBIDDEN_CLOSE_CODE.

    Returns:
        (code, reason, problems): (None, None, []) for an empty payload; code None for a
        one-byte payload; reason None when there are no reason bytes, else decoded with
        errors="replace".
    """
    n = len(payload)
    if n == 0:
        return None, None, []
    if n == 1:
        return None, None, [(ProblemKind.ONE_BYTE_CLOSE_PAYLOAD,
                             f"expected=0 or >=2 bytes, found=1 byte 0x{payload[0]:02X}")]
    (code,) = _CLOSE_CODE.unpack_from(payload, 0)
    problems: list[tuple[ProblemKind, str]] = []
    cls = close_code_class(code)
    if cls == "not-sent-on-wire":
        problems.append((ProblemKind.FORBIDDEN_CLOSE_CODE,
                         f"expected=a code allowed on the wire, found={code} (MUST NOT be sent)"))
    elif cls in ("reserved", "unassigned", "invalid"):
        problems.append((ProblemKind.INVALID_CLOSE_CODE,
                         f"expected=1000-1003, 1007-1014 or 3000-4999, found={code} ({cls})"))
    if n == 2:
        return code, None, problems
    raw = bytes(payload[2:])
    try:
        reason = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = raw.decode("utf-8", errors="replace")
        problems.append((ProblemKind.INVALID_CLOSE_REASON_UTF8,
                         f"expected=UTF-8 reason, found=invalid byte at {exc.start} of {len(raw)}"))
    return code, reason, problems
