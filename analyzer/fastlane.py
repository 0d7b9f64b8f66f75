"""The fast lane: whole one-frame data messages decoded and written as table rows in one step.

Nearly every packet of a healthy connection carries whole frames that are each a whole message
(FIN set, text or binary, clean header, within the limits). On the general path each such frame
goes FrameDecoder → Frame → MessageAssembler → Message/FrameInfo → Session → two table rows:
three tuples built and unpacked and a dozen calls per frame, which was most of the time spent on a
busy capture. The lane reads the header itself, hands the payload to the assembler's one-frame
helpers (`single`, `single_compressed`: the same code the general path uses for such messages)
and appends the frame and message rows directly.

It takes frames only from a frame start (`FrameDecoder.at_frame_start`) while no message is open,
and stops at the first frame it cannot take whole: a control frame, a fragment, a 64-bit or
non-minimal length, a frame cut by the end of the packet, a reserved opcode or RSV bit, a mask bit
that does not fit the sender, a frame over the limit. The general path decodes the rest of the
bytes from there, so every check and problem stays where it was. tests/test_fastlane.py holds the
tables of the lane equal to those of the general path.
"""

from __future__ import annotations

from typing import Any

from analyzer.frames import FrameDecoder
from analyzer.masking import unmask
from analyzer.messages import MessageAssembler
from analyzer.tables import F_COMPRESSED, F_HEADER_SHIFT, F_MASKED, M_BINARY, M_COMPRESSED

__all__ = ["FastLane"]

# Per first byte: None (not for the lane) or (opcode, compressed, frame-row flags, message-row flags).
_LaneEntry = tuple[int, bool, int, int] | None


def _lane_table(b0_table: tuple, compression: str | None, masked: bool, frame_base: int,
                message_base: int) -> tuple[_LaneEntry, ...]:
    table: list[_LaneEntry] = []
    for opcode, fin, rsv1, rsv2, rsv3, _raw, clean in b0_table:
        # RSV1 compresses the message under permessage-deflate ("message"); under deflate-frame
        # ("frame") it compresses the frame, which the general path inflates; allowed without an
        # extension (ports= mode allows every RSV bit) it is only a flag, as on the general path
        if not (clean and fin and opcode in (1, 2)) or (rsv1 and compression == "frame"):
            table.append(None)
            continue
        compressed = rsv1 and compression == "message"
        frame_flags = (frame_base | opcode | (1 << 4) | (rsv1 << 5) | (rsv2 << 6) | (rsv3 << 7)
                       | (F_MASKED if masked else 0) | (F_COMPRESSED if compressed else 0))
        message_flags = message_base | (M_BINARY if opcode == 2 else 0) | (M_COMPRESSED if compressed else 0)
        table.append((opcode, compressed, frame_flags, message_flags))
    return tuple(table)


class FastLane:
    """Whole one-frame data messages of one sender, straight from the stream bytes to the rows.

    Args:
        decoder: the sender's RFC 6455 frame decoder (its state, checks and counters are kept).
        assembler: the sender's message assembler (message ids, previews, UTF-8, inflation).
        frames, messages: the FrameColumns / MessageColumns the rows go to.
        conn_id: the connection's id in the tables.
        frame_base, message_base: the sender's bits of the row flags (F_SERVER / M_SERVER or 0).

    The lane holds no reference back to its session or side (`problems` and `taken` are read by
    the caller): the pipeline runs with the cyclic GC off, so a cycle would keep every closed
    connection alive until the end of the capture.

    Attributes:
        problems: the Problems the messages raised (invalid UTF-8, inflation failures), in order;
            the caller takes them after each `take`.
        taken: one-frame messages taken so far (each is one frame and one message).
    """

    __slots__ = ("_assembler", "_decoder", "_loop", "problems", "taken")

    def __init__(self, decoder: FrameDecoder, assembler: MessageAssembler, frames: Any, messages: Any,
                 conn_id: int, frame_base: int, message_base: int) -> None:
        b0_table, expect_mask, max_payload = decoder.lane_params()
        self._decoder = decoder
        self._assembler = assembler
        self.problems: list[Any] = []
        self.taken = 0
        table = _lane_table(b0_table, assembler.compression, bool(expect_mask), frame_base, message_base)
        # what the loop needs, unpacked in one step per call; the general path treats a longer
        # uncompressed payload as over the message limit
        self._loop = (table, expect_mask, min(max_payload, assembler.max_message_bytes), assembler.single,
                      assembler.single_compressed, frames.extend, messages.extend, messages.preview_utf8,
                      messages.preview_ends, messages.payload, conn_id)

    def take(self, data: bytes, record_no: int, ts_ns: int) -> int:
        """Write the rows of the whole one-frame messages at the start of `data`; return how many
        bytes they took (0 when the decoder or the assembler is not at a message boundary)."""
        decoder = self._decoder
        assembler = self._assembler
        if type(data) is not bytes or not decoder.at_frame_start() or not assembler.can_take_single():
            return 0
        (table, expect_mask, max_payload, single, single_compressed, frame_row, message_row, previews,
         preview_ends, payloads, conn_id) = self._loop
        problems = self.problems
        mark = len(problems)
        end = len(data)
        pos = 0
        taken = 0
        while end - pos >= 2:
            entry = table[data[pos]]
            if entry is None:
                break
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126 and end - pos >= 4:
                length = (data[pos + 2] << 8) | data[pos + 3]
                if length < 126:
                    break                       # non-minimal: the general path reports it
                start = pos + 4
            else:
                break
            if (b1 & 0x80) != expect_mask or length > max_payload:
                break
            if expect_mask:
                start += 4
                stop = start + length
                if stop > end:
                    break
                payload = unmask(data[start:stop], data[start - 4:start])
            else:
                stop = start + length
                if stop > end:
                    break
                payload = data[start:stop]
            opcode, compressed, frame_flags, message_flags = entry
            try:
                if compressed:
                    message_id, size, preview, kept = single_compressed(opcode, payload, record_no, ts_ns,
                                                                        problems)
                else:
                    message_id, size, preview, kept = single(opcode, payload, record_no, ts_ns, problems)
            except Exception:
                # never expected; the general path (whose assembler turns an internal error into
                # a problem row) takes the frame from here
                del problems[mark:]
                break
            # the rows as FrameColumns.add / MessageColumns.add write them (no close reason here)
            frame_row((conn_id, record_no, ts_ns, frame_flags | ((start - pos) << F_HEADER_SHIFT), length,
                       -1, message_id, -1))
            mark = len(problems)
            if kept is not None:
                payloads[len(preview_ends) - 1] = kept     # by row, as MessageColumns.add
            message_row((conn_id, message_id, message_flags, ts_ns, ts_ns, 1, length, size, record_no,
                         record_no))
            previews += preview.encode("utf-8", "surrogatepass")
            preview_ends.append(len(previews))
            taken += 1
            pos = stop
        if taken:
            decoder.took(taken, pos, record_no, ts_ns)
            self.taken += taken
        return pos
