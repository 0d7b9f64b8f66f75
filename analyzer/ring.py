"""Ring-buffer files → one record stream: consecutive files of one capture read as one capture.

Captures are often kept as rotated files (`tcpdump -G`/`-C`/`-W`, `dumpcap -b`). A WebSocket whose
handshake is in one file and its frames in the next is only understood when the files are read
as one stream, as `mergecap -a` of them would be. `RingReader` chains one `CaptureReader` per file
(each in its own format: pcap, pcapng, gzipped or not), in the order of each file's first record
time, numbering the records on across files, so the pipeline sees one capture.

Where the files do not join up, a capture-level problem says so (a `Problem` in `ring_problems`, at the first
record of the later file): `capture-overlap` when a file starts before the previous one ended,
`capture-gap` when more than GAP_NS pass between them (a file of the ring may be missing, or the
link was quiet), `capture-file-missing` when the sequence numbers in dumpcap's or tcpdump -C's
file names skip one, and `capture-linktype-change` when the files' link types differ.

`ring_files` tells (conservatively) whether a list of paths is one ring by its names alone.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from analyzer.capture import STDIN, CaptureError, CaptureReader
from analyzer.events import PacketRecord, Problem
from analyzer.handover import Receiver, SplitCapture
from analyzer.protocol import ProblemKind

__all__ = ["GAP_NS", "FileStart", "RingReader", "open_capture", "probe",
           "reading_order", "ring_files", "ring_name"]

#: Silence between two files longer than this is reported as a possible gap: 60 s, longer than the
#: keepalive pings of browsers and servers (20-60 s), so a quiet link with WebSockets open does not
#: cause it (a file missing from a numbered ring is reported whatever the time).
GAP_NS = 60 * 1_000_000_000

# dumpcap -b: PREFIX_NNNNN_YYYYMMDDhhmmss.EXT (the number never wraps, even with files:N)
_DUMPCAP = re.compile(r"(?P<base>.+)_(?P<no>\d{5,})_\d{14}(?P<ext>(?:\.[A-Za-z0-9]+)*)")
# tcpdump -C (and -W): NAME, NAME1, NAME2… (NAME0, NAME1… zero-padded with -W); -z gzip adds .gz
_TCPDUMP_C = re.compile(r"(?P<base>.+?\.(?:pcap|pcapng|cap|dmp))(?P<no>\d*)(?P<ext>\.gz)?",
                        re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FileStart:
    """What a file's first record says: its time and link type (None: the file has no record)."""

    path: str
    first_ts_ns: int | None
    linktype: int | None
    size: int


def probe(path: str) -> FileStart:
    """Open one ring file and read its first record only.

    Raises:
        CaptureError: the file is not a readable capture, or not a regular file (a ring's files
            are read twice: once here, once in order).
    """
    name = os.path.basename(path) or path
    if path == STDIN:
        raise CaptureError("stdin: standard input cannot be one of several ring-buffer files")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG         # let the reader say what is wrong with it
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise CaptureError(f"{name}: a ring-buffer file must be a regular file (it is read twice)")
    with CaptureReader(path) as reader:
        first = next(iter(reader), None)
        return FileStart(path, None if first is None else first.ts_ns,
                         None if first is None else first.linktype, reader.size)


def _ordered(starts: list[FileStart]) -> list[FileStart]:
    """By first record time (files without a record last); ties keep the order given."""
    return sorted(starts, key=lambda s: (s.first_ts_ns is None, s.first_ts_ns or 0))


def reading_order(paths: Sequence[str]) -> tuple[str, ...]:
    """The files of a ring in the order they are read: by their first record's time.

    Raises:
        CaptureError: a file is not a readable capture or not a regular file.
    """
    return tuple(s.path for s in _ordered([probe(p) for p in paths]))


def ring_name(paths: Sequence[str]) -> str:
    """The capture name of a ring: its first file's name and how many follow ("a.pcap+2")."""
    first = os.path.basename(paths[0]) or paths[0]
    return first if len(paths) == 1 else f"{first}+{len(paths) - 1}"


def _sequence_no(path: str) -> tuple[str, int] | None:
    """(pattern key, number) from a dumpcap or tcpdump -C file name; None for other names."""
    name = os.path.basename(path)
    m = _DUMPCAP.fullmatch(name)
    if m:
        return f"dumpcap:{os.path.dirname(path)}/{m['base']}|{m['ext']}", int(m["no"])
    m = _TCPDUMP_C.fullmatch(name)
    if m:
        return f"tcpdump:{os.path.dirname(path)}/{m['base']}", int(m["no"] or 0)
    return None


def ring_files(paths: Sequence[str]) -> bool:
    """Whether 2+ paths are, by their names alone, the files of one ring: all of one dumpcap ring
    (PREFIX_NNNNN_YYYYMMDDhhmmss.EXT, one PREFIX, EXT and folder) or of one tcpdump -C set (NAME,
    NAME1, NAME2…, NAME ending in .pcap/.pcapng/.cap/.dmp, .gz after -z gzip allowed), with no
    number twice. Anything else (tcpdump -G names are whatever strftime made) is not guessed."""
    if len(paths) < 2:
        return False
    keys = [_sequence_no(p) for p in paths]
    if any(k is None for k in keys):
        return False
    numbers = [k[1] for k in keys if k is not None]
    return len({k[0] for k in keys if k is not None}) == 1 and len(set(numbers)) == len(numbers)


def _missing_files(prev: str, nxt: str) -> str | None:
    """'files N to M' when the sequence numbers of two consecutive files skip some (a ring that
    wrapped, tcpdump -W, goes back to 0: not a gap)."""
    a, b = _sequence_no(prev), _sequence_no(nxt)
    if a is None or b is None or a[0] != b[0] or b[1] <= a[1] + 1:
        return None
    return f"file number {a[1] + 1}" if b[1] == a[1] + 2 else f"file numbers {a[1] + 1} to {b[1] - 1}"


class RingReader:
    """Stream the records of several files of one capture as one capture.

    Args:
        paths: the files (regular files; each pcap or pcapng, gzipped or not), in any order: they
            are read in the order of their first record's time.
        on_secrets: given to every file's reader (pcapng Decryption Secrets Blocks).

    Raises:
        CaptureError: a file cannot be read as a capture (checked before any record is yielded).

    The records are numbered on across files (1, 2, 3… as after `mergecap -a` of `paths` in that
    order); `problems` holds every file's reader problems, `ring_problems` where files do not join.
    One file is open at a time.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *,
                 on_secrets: Callable[[bytes], object] | None = None) -> None:
        self.starts = _ordered([probe(os.fspath(p)) for p in paths])
        self.paths: list[str] = [s.path for s in self.starts]
        self.on_secrets = on_secrets
        self.problems: list[Problem] = []
        self.ring_problems: list[Problem] = []
        self.size: int = sum(s.size for s in self.starts)
        self._done_bytes = 0
        self._current: CaptureReader | None = None
        self._started = False

    def __iter__(self) -> Iterator[PacketRecord]:
        if self._started:
            raise RuntimeError("a RingReader can be iterated only once")
        self._started = True
        # chain: no Python code of ours runs per record
        return itertools.chain.from_iterable(self._files())

    def _files(self) -> Iterator[CaptureReader]:
        """Each file's reader in turn; when the chain asks for the next, the previous one is done."""
        next_no = 1
        previous: tuple[CaptureReader, FileStart] | None = None
        for start in self.starts:
            reader = CaptureReader(start.path, first_record_no=next_no, on_secrets=self.on_secrets)
            self._current = reader
            try:
                if previous is not None:
                    self._joint(*previous, start, next_no)
                yield reader
            finally:
                reader.close()
                self._current = None
            self.problems.extend(reader.problems)
            self._done_bytes += reader.size
            next_no = reader.next_record_no
            previous = reader, start

    def _joint(self, previous: CaptureReader, before_start: FileStart, start: FileStart,
               first_no: int) -> None:
        """Where the previous file (read) and the next (about to be) do not join up."""
        before, now = previous.path, start.path
        prev_name, name = os.path.basename(before), os.path.basename(now)
        ts = start.first_ts_ns
        last = previous.last_ts_ns
        missing = _missing_files(before, now)
        if missing is not None:
            self._add(ProblemKind.CAPTURE_FILE_MISSING,
                      f"{name}: {missing} of the ring missing between {prev_name} and {name}",
                      first_no, ts)
        if ts is not None and last is not None:
            if ts < last:
                self._add(ProblemKind.CAPTURE_OVERLAP,
                          f"{name}: starts {(last - ts) / 1e9:.6f} s before {prev_name} ended: its records "
                          "are read after all of that file's (as mergecap -a would), not merged by time",
                          first_no, ts)
            elif ts - last > GAP_NS and missing is None:
                self._add(ProblemKind.CAPTURE_GAP,
                          f"{name}: no record for {(ts - last) / 1e9:.6f} s after {prev_name} ended: "
                          "a file of the ring may be missing (or the link was quiet)", first_no, ts)
        lt_before = before_start.linktype
        if start.linktype is not None and lt_before is not None and start.linktype != lt_before:
            self._add(ProblemKind.CAPTURE_LINKTYPE_CHANGE,
                      f"{name}: link type {start.linktype} after {prev_name}'s {lt_before}: the files may "
                      "come from different interfaces or captures", first_no, ts)

    def _add(self, kind: ProblemKind, detail: str, record_no: int, ts_ns: int | None) -> None:
        self.ring_problems.append(Problem(kind, detail, record_no, ts_ns))

    def position(self) -> int:
        """Bytes of all files consumed so far (the compressed offset for a .gz)."""
        current = self._current
        return self._done_bytes + (current.position() if current is not None else 0)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()

    def __enter__(self) -> RingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(path: str | os.PathLike[str] | Sequence[str] | SplitCapture | Receiver,
                 on_secrets: Callable[[bytes], object] | None = None
                 ) -> CaptureReader | RingReader | Receiver:
    """One file's reader, or a RingReader for several paths (a list or tuple of them). One capture
    on several cores (analyzer.handover): a SplitCapture is its file(s) read here, their secrets
    handed to the workers too; a worker's Receiver is its own reader."""
    if isinstance(path, Receiver):
        path.on_secrets = on_secrets
        return path
    if isinstance(path, SplitCapture):
        split = path

        def both(text: bytes) -> None:
            if on_secrets is not None:
                on_secrets(text)
            split.secrets(text)
        return open_capture(split.path, both)
    if isinstance(path, (str, os.PathLike)):
        return CaptureReader(path, on_secrets=on_secrets)
    if len(path) == 1:
        return CaptureReader(path[0], on_secrets=on_secrets)
    return RingReader(path, on_secrets=on_secrets)
