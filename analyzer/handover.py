"""One capture on several cores: the calling process reads every record once and hands each
worker process the TCP segments of the connections it owns, in batches through the worker's stdin.

Before this, every process read and decoded every record of the capture and kept its own share
(measured on a loaded 2-core machine: two processes slower than one). Now:

* The calling process (shard 0) reads the capture and decodes every record (`HandingDecoder`, a
  `PacketDecoder`): link layers, IP fragments and every packet-level problem are its alone. Each
  TCP segment's owner comes from `ConnectionOwners.owner` (analyzer.sharding); its own segments go
  on into its pipeline, a worker's are appended to the next batch.
* A batch holds, for a run of segments in capture order: every segment's time and owner (a worker
  runs its idle checks at every segment it does not own, `Reassembler.tick`, exactly as one process
  would), the worker's own segments as columns (record numbers, times, addresses as indices into a
  small table, ports, sequence numbers, flags, payload lengths; the payloads in one blob), and the
  pcapng Decryption Secrets Blocks read meanwhile, at their place in the stream (TLS keys reach the
  worker when they would have reached one process).
* `Sender` writes the batches to the pipe without blocking, as far as the pipe takes them, and
  queues the rest: when a worker falls behind, the pipe fills, the queue fills and the reader
  waits (back-pressure: at most QUEUED_BYTES of batches are held per worker).
* The worker's `Receiver` is its capture reader and decoder at once: it yields the segments and,
  for the others' segments, their times (ints); the pipeline runs them as it runs a file's records
  (analyzer.pipeline, analyzer.ring.open_capture).

A frame on the pipe: `<QQ` (length of the pickled columns, length of the payload blob), then both;
a first length of 0 ends the stream. The pipe stays open after it: its end of file tells the worker
that its parent died (analyzer.worker).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import select
import struct
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import accumulate
from typing import Any

from analyzer.events import PacketRecord, Problem, Segment
from analyzer.packets import PacketDecoder
from analyzer.sharding import ConnectionOwners, process_weights

__all__ = ["BATCH_BYTES", "BATCH_SEGMENTS", "QUEUED_BYTES", "HandingDecoder", "HandoverBroken",
           "Receiver", "Sender", "SplitCapture", "packet_decoder"]

#: A batch is sent when it spans this many segments (all owners) or its payloads reach BATCH_BYTES:
#: small enough that a worker starts soon and ends soon after the reading.
BATCH_SEGMENTS = 1 << 11
BATCH_BYTES = 1 << 20
#: Bytes of batches waiting for a worker's writer thread (plus what its pipe holds): room for what
#: is read while the worker starts (~0.5 s), the bound on what a slow worker makes us hold.
QUEUED_BYTES = 48 << 20
PIPE_BYTES = 1 << 20            # asked of Linux for each worker's pipe (F_SETPIPE_SZ), best effort
_FRAME = struct.Struct("<QQ")
_END = _FRAME.pack(0, 0)
_new_segment = partial(tuple.__new__, Segment)


class HandoverBroken(Exception):
    """A worker's pipe broke (the worker is gone): the worker's own status says why."""


class Sender:
    """The batches for one worker, written to its pipe by the reading thread itself, without
    blocking while the pipe has room or QUEUED_BYTES wait. (A writer thread was tried: on a busy
    machine each hand-over of the GIL to it waited for the OS to schedule it, and the reading
    stalled.) Made before the worker starts; `attach` gives it the pipe, `fail` says the worker
    will not read any more; `drain` waits until everything queued is in the pipe."""

    def __init__(self) -> None:
        self._queue: collections.deque[memoryview] = collections.deque()
        self._queued = 0                # bytes in the queue
        self._lock = threading.Lock()   # the fd and the queue (attach and fail come from another thread)
        self._attached = threading.Event()
        self._fd = -1
        self.error: BaseException | None = None

    def attach(self, pipe: Any) -> None:
        """Start writing to `pipe` (a worker's stdin, binary). The pipe is written through a
        duplicate of its fd, closed by `fail` (the caller closes `pipe` itself, after `fail`)."""
        fd = os.dup(pipe.fileno())
        with contextlib.suppress(OSError, AttributeError, ValueError):
            import fcntl
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        os.set_blocking(fd, False)
        with self._lock:
            if self.error is not None:
                os.close(fd)
                return
            self._fd = fd
        self._attached.set()

    def fail(self, error: BaseException) -> None:
        """The worker is gone or never started, or has read everything: what is sent from now on
        raises HandoverBroken."""
        with self._lock:
            if self.error is None:
                self.error = error
            self._queue.clear()
            self._queued = 0
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        self._attached.set()

    def put(self, item: tuple[bytes, bytes] | None) -> None:
        """Queue one frame (meta, blob), or None for the end, and write what the pipe takes; waits
        (back-pressure) while more than QUEUED_BYTES are left over."""
        if item is None:
            frame = [memoryview(_END)]
        else:
            meta, blob = item
            frame = [memoryview(_FRAME.pack(len(meta), len(blob))), memoryview(meta), memoryview(blob)]
        with self._lock:
            self._check()
            self._queue.extend(part for part in frame if part)
            self._queued += sum(map(len, frame))
            self._write()
        while self._queued > QUEUED_BYTES:
            self._wait()

    def drain(self) -> None:
        """Wait until everything queued is in the pipe."""
        while self._queued:
            self._wait()

    def _check(self) -> None:
        if self.error is not None:
            raise HandoverBroken(str(self.error))

    def _wait(self) -> None:
        """Wait (at most 0.1 s) for the worker to start or its pipe to take more; then write."""
        if not self._attached.wait(0.1):
            with self._lock:
                self._check()
            return
        with self._lock:
            self._check()
            fd = self._fd
        with contextlib.suppress(OSError, ValueError):
            select.select([], [fd], [], 0.1)    # (a closed fd: the check below says why)
        with self._lock:
            self._check()
            self._write()

    def _write(self) -> None:
        """Write what the pipe takes now (holding the lock)."""
        if self._fd < 0:
            return
        queue = self._queue
        try:
            while queue:
                part = queue[0]
                n = os.write(self._fd, part)
                self._queued -= n
                if n < len(part):
                    queue[0] = part[n:]
                    return
                queue.popleft()
        except BlockingIOError:
            return
        except OSError as exc:          # EPIPE: the worker died; its status is reported elsewhere
            self.error = exc
            raise HandoverBroken(str(exc)) from None

    def join(self, timeout: float | None = None) -> None:
        """(Nothing to wait for: no thread of its own.)"""


class SplitCapture:
    """A capture that this process reads while workers analyse some of its connections: the path
    to give `analyze_file` (analyzer.ring.open_capture and packet_decoder know it). `senders[k-1]`
    takes shard k's batches."""

    def __init__(self, path: str | tuple[str, ...], senders: Sequence[Sender]) -> None:
        self.capture = path
        self.path = path
        self.senders = list(senders)
        self.decoder: HandingDecoder | None = None

    def secrets(self, text: bytes) -> None:
        """A Decryption Secrets Block was read: every worker gets it at this point of the stream."""
        if self.decoder is not None:
            self.decoder.add_secrets(text)


class HandingDecoder(PacketDecoder):
    """Shard 0's decoder: decodes every record, returns its own segments, and batches the others'
    for their workers (a worker's segment counts as `dropped_ts`: this process's idle checks run at
    it, as before)."""

    def __init__(self, split: SplitCapture, admit: Callable[[str, int | None, int | None], bool]) -> None:
        super().__init__(admit=admit)
        self._senders = split.senders
        shards = len(self._senders) + 1
        self._owner = ConnectionOwners(shards, 0, process_weights(shards)).owner
        self._whole = super().decode
        self._ts = array("q")              # every segment of the batch: time and owner
        self._owners = bytearray()
        self._segments: list[list[Segment]] = [[] for _ in range(shards)]
        self._bytes = 0
        self._secrets: list[tuple[int, bytes]] = []
        self._ended = False
        split.decoder = self

    def decode(self, rec: PacketRecord) -> Segment | None:
        seg = self._whole(rec)
        if seg is None:
            return None
        owner = self._owner(seg[5], seg[6])
        self._ts.append(seg[1])
        self._owners.append(owner)
        if owner:
            self._segments[owner].append(seg)
            self._bytes += len(seg[10])
            if len(self._owners) >= BATCH_SEGMENTS or self._bytes >= BATCH_BYTES:
                self.flush()
            self.dropped_ts = seg[1]
            return None
        if len(self._owners) >= BATCH_SEGMENTS:
            self.flush()
        return seg

    def add_secrets(self, text: bytes) -> None:
        self._secrets.append((len(self._owners), text))

    def flush(self) -> None:
        """Send the batch to every worker (each gets its own segments and everyone's times)."""
        if not self._owners and not self._secrets:
            return
        ts, owners, secrets = self._ts, bytes(self._owners), self._secrets
        for k, sender in enumerate(self._senders, 1):
            sender.put(_encode(ts, owners, self._segments[k], secrets))
            self._segments[k] = []
        self._ts, self._owners, self._secrets, self._bytes = array("q"), bytearray(), [], 0

    def finish(self) -> None:
        """End of the capture: the last batch and the end of every worker's stream."""
        super().finish()
        self.end()

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.flush()
            for sender in self._senders:
                sender.put(None)


def _encode(ts: array[int], owners: bytes, segments: list[Segment],
            secrets: list[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """One batch for one worker: (pickled columns, payload blob)."""
    columns: dict[str, Any] = {"ts": ts, "owners": owners, "secrets": secrets}
    blob = b""
    if segments:
        (rec, seg_ts, ver, src, dst, sport, dport, seq, ack, flags, payloads,
         cut) = zip(*segments, strict=True)
        addresses = list(dict.fromkeys(src + dst))
        index = {a: i for i, a in enumerate(addresses)}.__getitem__
        columns.update(rec=array("q", rec), seg_ts=array("q", seg_ts), ver=bytes(ver),
                       addresses=addresses, src=array("L", map(index, src)),
                       dst=array("L", map(index, dst)), sport=array("H", sport),
                       dport=array("H", dport), seq=array("L", seq), ack=array("L", ack),
                       flags=bytes(flags), lengths=array("q", map(len, payloads)), cut=bytes(cut))
        blob = b"".join(payloads)
    return pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL), blob


def _decode(columns: dict[str, Any], blob: bytes, mine: int) -> list[Any]:
    """A batch back into the worker's stream: its segments, and the times (ints) of the others'."""
    ts, owners = columns["ts"], columns["owners"]
    if "rec" not in columns:
        return list(ts)
    addresses = columns["addresses"].__getitem__
    ends = list(accumulate(columns["lengths"]))
    payloads = map(blob.__getitem__, map(slice, [0, *ends[:-1]], ends))
    segments = iter(map(_new_segment, zip(
        columns["rec"], columns["seg_ts"], columns["ver"], map(addresses, columns["src"]),
        map(addresses, columns["dst"]), columns["sport"], columns["dport"], columns["seq"],
        columns["ack"], columns["flags"], payloads, map(bool, columns["cut"]))))
    following = segments.__next__
    return [following() if owner == mine else t for owner, t in zip(owners, ts)]


class Receiver(PacketDecoder):
    """A worker's capture: reader and decoder in one (analyzer.ring.open_capture hands it to the
    pipeline as the reader, packet_decoder as the decoder). Reads the batches from `fd`.

    Args:
        fd: the pipe from the parent.
        shard: this worker's shard index.
        path: the capture's path (its name; the file is never opened here).
        size: the capture's size in bytes.
        on_end: called once the stream has ended (the parent then only ever closes the pipe).
        on_gone: called when the pipe ends before the stream did (the parent died).
    """

    def __init__(self, fd: int, shard: int, path: str | tuple[str, ...], size: int,
                 on_end: Callable[[], object] | None = None,
                 on_gone: Callable[[], object] | None = None) -> None:
        super().__init__()
        self._pipe = io.FileIO(fd, "rb", closefd=False)
        self._mine = shard
        self.capture = path
        self.path = path if isinstance(path, str) else path[0]
        self.paths = (path,) if isinstance(path, str) else tuple(path)
        self.size = size
        self.problems: list[Problem] = []          # the parent reports the capture's problems
        self.on_secrets: Callable[[bytes], object] | None = None
        self._on_end = on_end
        self._on_gone = on_gone
        self._read = 0

    # --- as the reader ---

    def __iter__(self) -> Iterator[Any]:
        while True:
            header = self._exactly(_FRAME.size)
            meta_len, blob_len = _FRAME.unpack(header)
            if not meta_len:
                if self._on_end is not None:
                    self._on_end()
                return
            columns = pickle.loads(self._exactly(meta_len))    # from our own parent
            blob = self._exactly(blob_len)
            self._read += blob_len
            items = _decode(columns, blob, self._mine)
            del blob
            start = 0
            for at, text in columns["secrets"]:
                yield from items[start:at]
                start = at
                if self.on_secrets is not None:
                    self.on_secrets(text)
            yield from items[start:] if start else items

    def _exactly(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._pipe.readinto(view[got:])
            if not k:
                if self._on_gone is not None:
                    self._on_gone()
                raise EOFError("the parent closed the pipe before the end of the capture")
            got += k
        return bytes(buf) if n > 1 << 16 else bytes(view)

    def position(self) -> int:
        return min(self._read, self.size)

    def close(self) -> None:
        pass

    # --- as the decoder ---

    def decode(self, rec: Any) -> Segment | None:
        if type(rec) is int:
            self.dropped_ts = rec
            return None
        return rec  # type: ignore[no-any-return]  # a Segment from _decode

    def finish(self) -> None:
        pass


def packet_decoder(path: object, shard: tuple[int, int],
                   admit: Callable[[str, int | None, int | None], bool]) -> PacketDecoder:
    """The decoder for analyze_file: a worker's Receiver itself, shard 0's HandingDecoder for a
    SplitCapture, else a PacketDecoder (keeping only shard k's connections when n > 1: every
    process reads the whole capture, the way before the hand-over)."""
    if isinstance(path, Receiver):
        return path
    if isinstance(path, SplitCapture):
        return HandingDecoder(path, admit)
    k, n = shard
    return PacketDecoder(keep=None if n == 1 else ConnectionOwners(n, k, process_weights(n)).keep,
                         admit=admit)
