"""Bounded DEFLATE decompression for WebSocket compression extensions, one sender at a time.

Owns the inflate context of permessage-deflate (RFC 7692) and the legacy deflate-frame /
x-webkit-deflate-frame extension: appending the 00 00 FF FF tail, context takeover or reset,
the decompression limit (a 1 KB bomb never allocates more than the limit), and what happens to the
shared context when a message is corrupt, over the limit or partly lost.

Context loss and resync: with context takeover, each message may copy strings out of the previous
messages' output (the LZ77 window). When that history is lost (a corrupt message, one stopped at the
limit, a TCP gap), the next message starts from a *fresh* inflate context. zlib then refuses any
back-reference into the missing history ("invalid distance too far back"), so a later message
either decodes to exactly the bytes the sender compressed or fails with InflateError; it is never
silently wrong. Messages that only reference data sent after the loss decode again.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import NoReturn

# RFC 7692, Section 7.2.2: the receiver appends these 4 octets (the end of an empty stored block,
# which the sender's sync flush produced and then removed) before inflating a message.
DEFLATE_TAIL = b"\x00\x00\xff\xff"

# Compressed input is fed to zlib in slices of this size, and zlib is asked for at most
# OUT_CHUNK bytes of output per call: a bomb then costs at most OUT_CHUNK of memory at a time
# (plus the caller's own buffer), and re-feeding `unconsumed_tail` copies at most IN_SLICE bytes.
IN_SLICE = 16 * 1024
OUT_CHUNK = 256 * 1024


class InflateError(Exception):
    """The compressed data of a message (or frame) cannot be inflated."""


def _raw_wbits(window_bits: int) -> int:
    """The zlib `wbits` for raw inflate with a negotiated max_window_bits (8..15).

    8 becomes 9: zlib special-cases a 256-byte window (madler/zlib#171: deflateInit2 refuses raw
    windowBits 8 and some zlib versions treat it inconsistently on the inflate side too), and a
    zlib encoder asked for 8 actually uses 9. Inflating with a larger window is always correct:
    the window only bounds how far back the *sender* may reference.
    """
    return -min(15, max(9, int(window_bits)))


class InflateStream:
    """One message's (or, for deflate-frame, one frame's) decompression, fed chunk by chunk.

    Output is yielded in pieces of at most OUT_CHUNK bytes and never totals more than `max_size`;
    past it `over_limit` turns True and the rest of the input is ignored. Obtain it from
    `Inflater.stream()`; call `end()` once the last chunk was fed.
    """

    __slots__ = ("_decomp", "_done", "_fresh_note", "_inflater", "failed", "over_limit", "produced",
                 "remaining")

    def __init__(self, inflater: Inflater, decomp: zlib._Decompress, max_size: int,
                 fresh_note: str | None) -> None:
        self._inflater = inflater
        self._decomp = decomp
        self._fresh_note = fresh_note
        self._done = False
        self.remaining = max(0, max_size)
        self.produced = 0
        self.over_limit = False
        self.failed = False

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[bytes]:
        """Inflate one more chunk of compressed data (a frame's payload).

        Raises:
            InflateError: the data is not valid DEFLATE in this context.
        """
        if self._done or self.over_limit or self.failed or not data:
            return
        if self._decomp.eof:
            self._fail("compressed data continues after the final deflate block (BFINAL)")
        view = memoryview(data)
        for start in range(0, len(view), IN_SLICE):
            yield from self._run(view[start:start + IN_SLICE])
            if self.over_limit:
                return

    def end(self) -> Iterator[bytes]:
        """Append the RFC 7692 tail and flush what it releases; close this stream.

        Raises:
            InflateError: the data is not valid DEFLATE in this context.
        """
        if self._done:
            return
        try:
            if not (self.over_limit or self.failed):
                if not self._decomp.eof:
                    yield from self._run(DEFLATE_TAIL)
                if self._decomp.eof:
                    # The sender closed its deflate stream (BFINAL=1, RFC 7692 §7.2.3.3): its
                    # next message starts a new stream whose window we cannot rebuild here.
                    self._inflater.lose_context("the sender ended its deflate stream (BFINAL)")
        finally:
            self._done = True
            self._inflater._message_done(self)

    def abandon(self, reason: str) -> None:
        """The rest of this message will never come (gap, end of capture): drop the context."""
        if not self._done:
            self._done = True
            self._inflater.lose_context(reason)
            self._inflater._message_done(self)

    def _run(self, data: bytes | memoryview) -> Iterator[bytes]:
        decomp = self._decomp
        while True:
            if self.remaining <= 0:
                # At the limit: one more byte of output proves the message is over it.
                try:
                    probe = decomp.decompress(data, 1)
                except zlib.error as exc:
                    self._fail(str(exc))
                if probe:
                    self._over()
                return
            want = min(self.remaining, OUT_CHUNK)
            try:
                out = decomp.decompress(data, want)
            except zlib.error as exc:
                self._fail(str(exc))
            if out:
                self.remaining -= len(out)
                self.produced += len(out)
                self._inflater._produced(len(out))
                yield out
            if len(out) < want:
                # zlib stopped before filling the output: all input consumed (or stream ended).
                if decomp.eof and decomp.unused_data and decomp.unused_data != DEFLATE_TAIL[
                        :len(decomp.unused_data)]:
                    self._fail("compressed data continues after the final deflate block (BFINAL)")
                return
            data = decomp.unconsumed_tail

    def _over(self) -> None:
        self.over_limit = True
        self._inflater.lose_context(f"a message went over the limit; inflating stopped at "
                                    f"{self.produced} bytes")

    def _fail(self, why: str) -> NoReturn:
        self.failed = True
        note = self._fresh_note
        self._inflater.lose_context(f"corrupt compressed data ({why})")
        if note:
            why = f"{why}; the inflate context had been lost before ({note})"
        raise InflateError(why)


class Inflater:
    """permessage-deflate (RFC 7692) / deflate-frame decompression for one sender, bounded."""

    def __init__(self, *, window_bits: int = 15, no_context_takeover: bool = False) -> None:
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self._wbits = _raw_wbits(window_bits)
        self._window = 1 << -self._wbits
        self._decomp: zlib._Decompress | None = None
        self._active: InflateStream | None = None
        #: Why the shared context was lost (None while it is intact). Only with context takeover.
        self.context_lost: str | None = None
        self._since_reset = 0

    def stream(self, max_size: int) -> InflateStream:
        """Start inflating the next message: a fresh context when the extension resets it per
        message or the old one was lost, else the context kept from the previous message."""
        if self._active is not None:
            self._active.abandon("a message was left unfinished")
        note: str | None = None
        if self._decomp is None or self.no_context_takeover:
            if self.context_lost is not None and not self.no_context_takeover:
                note = self.context_lost
            self._decomp = zlib.decompressobj(wbits=self._wbits)
            self._since_reset = 0
        elif self.context_lost is not None and self._since_reset < self._window:
            # Fresh since the loss, but not yet a whole window of known history.
            note = self.context_lost
        stream = InflateStream(self, self._decomp, max_size, note)
        self._active = stream
        return stream

    def inflate_message(self, chunks: Iterable[bytes], max_size: int) -> tuple[bytes, bool]:
        """Inflate one whole message given as its frames' payloads.

        Returns:
            The data (at most `max_size` bytes) and whether the message was over the limit.

        Raises:
            InflateError: corrupt data, or a reference into history lost earlier.
        """
        stream = self.stream(max_size)
        out = bytearray()
        for chunk in chunks:
            for piece in stream.feed(chunk):
                out += piece
        for piece in stream.end():
            out += piece
        return bytes(out), stream.over_limit

    def inflate_whole(self, data: bytes, max_size: int) -> tuple[bytes, bool, str | None] | None:
        """One whole message in one call, for the common case: an intact context, no message in
        progress and at most IN_SLICE compressed bytes. Returns what `stream()` + feed + end give
        - (data, over_limit, error or None) - or None when the case does not hold (then use
        stream(); nothing was touched)."""
        if self.context_lost is not None or self._active is not None or len(data) > IN_SLICE:
            return None
        decomp = self._decomp
        if decomp is None or self.no_context_takeover:
            decomp = self._decomp = zlib.decompressobj(wbits=self._wbits)
            self._since_reset = 0
        limit = max(0, max_size)
        try:
            out = decomp.decompress(data + DEFLATE_TAIL, limit + 1)
        except zlib.error as exc:
            self.lose_context(f"corrupt compressed data ({exc})")
            return b"", False, str(exc)
        over = len(out) > limit
        if over:
            out = out[:limit]
        self._produced(len(out))
        if over:
            self.lose_context(f"a message went over the limit; inflating stopped at {len(out)} bytes")
            return out, True, None
        if decomp.eof:
            unused = decomp.unused_data
            if unused and unused != DEFLATE_TAIL[:len(unused)]:
                why = "compressed data continues after the final deflate block (BFINAL)"
                self.lose_context(f"corrupt compressed data ({why})")
                return out, False, why
            self.lose_context("the sender ended its deflate stream (BFINAL)")
        elif self.no_context_takeover:
            self._decomp = None
        return out, False, None

    def lose_context(self, reason: str) -> None:
        """The history the next message may reference is gone (no-op without context takeover)."""
        if self._active is not None:
            self._active._done = True
            self._active = None
        self._decomp = None
        if not self.no_context_takeover:
            self.context_lost = reason

    def _produced(self, n: int) -> None:
        self._since_reset += n

    def _message_done(self, stream: InflateStream) -> None:
        if self._active is stream:
            self._active = None
        if self.no_context_takeover:
            self._decomp = None
