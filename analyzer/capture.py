"""Capture files → PacketRecord: pcap (both byte orders, µs and ns), pcapng and gzip of either.

This module owns opening a capture, telling a capture from anything else (with one clear error line),
and streaming its records whole, in capture order, with exact integer-nanosecond timestamps. It
does not look inside the packets (that is packets.py).

Scapy's raw reader (`scapy.utils.RawPcapReader`) parses the pcap file header. The pcapng Section
Header and Interface Description Blocks are parsed here, bounded (scapy's `RawPcapNgReader` parsed
every option of an IDB at ~1.4 MB/s, so a 128 MB block of options took 94 s, and it logs its
complaints to stderr). Of an IDB only the link type, snap length, `if_tsresol` (including the
power-of-two resolutions) and `if_tsoffset` are used: the first _IDB_READ bytes are read and at
most _IDB_OPTIONS options looked at, the rest of the block is skipped unread; a section keeps at
most MAX_INTERFACES interfaces (the rest are counted, once, in a problem). The per-record loop is
our own `struct` code, on purpose — correctness first:

* scapy's pcap `_read_packet()` reads at most 4 × 65,535 bytes of a record and silently skips the
  rest, so records above 262,140 bytes would not arrive whole (loopback packets reach 65,549 bytes,
  and GSO/GRO captures go far beyond);
* a record cut by the end of the file comes back short with no sign, and a corrupt caplen makes it
  read through the rest of the file;
* scapy's pcapng `_read_block()` reads whatever length a block header claims (a corrupt length
  allocates gigabytes), ignores `if_tsoffset`, keeps interface ids across sections, and returns
  EOF for a truncated block, indistinguishable from a clean end;
* and it builds option dicts and namedtuples per packet, which is most of the cost on a hot path
  of millions of records.

Records with no captured bytes (caplen 0) carry nothing to analyse: they keep their numbers but
are not yielded, and runs of them (a zero-filled stretch of a file: millions of 16-byte all-zero
pcap records per MB of gzip) are skipped in bulk and reported in one problem.

Nothing readable (reading stopped on damage before any record) is a `CaptureError`; damage after
some records is a `capture-truncated` / `capture-unreadable` problem and the records before it are
yielded. A FIFO (a pipe, `<(zcat x.pcap.gz)`) is read as a stream; other non-regular files
(devices, sockets) are refused without being opened.

Records are yielded in capture order, never sorted: tcpdump on several CPUs writes records that
are not always in time order, and `record_no` must match Wireshark's frame numbers.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapReader

from analyzer.events import PacketRecord, Problem
from analyzer.protocol import ProblemKind
from analyzer.scapy_quiet import quiet_scapy

__all__ = ["MAX_BLOCK_BYTES", "MAX_INTERFACES", "MAX_RECORD_BYTES", "CaptureError", "CaptureReader"]

#: A record (or pcapng block) claiming more than this is corrupt: report it and stop, never allocate.
MAX_RECORD_BYTES = 256 * 1024 * 1024
MAX_BLOCK_BYTES = MAX_RECORD_BYTES + 64 * 1024   # room for the EPB header, padding and options
#: Interfaces one pcapng section may describe (real captures have a handful; the interface id of
#: a packet block is 32 bits, so without a cap a few KB of gzip grow the table by gigabytes).
MAX_INTERFACES = 65_536

_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),   # little endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", False),   # big endian, microseconds
    b"\x4d\x3c\xb2\xa1": ("<", True),    # little endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", True),    # big endian, nanoseconds
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"     # the Section Header Block type
_PCAPNG_BOMS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_KUZNETZOV_MAGICS = (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34")

# LINKTYPE_ values carry FCS-length bits above bit 26 in the pcap header (pcap-linktype(7)).
_LINKTYPE_MASK = 0x03FFFFFF

# pcapng block types (draft-ietf-opsawg-pcapng)
_BT_SHB = 0x0A0D0D0A
_BT_IDB = 0x00000001
_BT_PB = 0x00000002      # obsolete Packet Block
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
_BT_DSB = 0x0000000A     # Decryption Secrets Block (editcap --inject-secrets)
_SECRETS_TLS = 0x544C534B    # "TLSK": an NSS key log
#: the most key log bytes taken from a capture's Decryption Secrets Blocks (the rest is skipped)
MAX_SECRETS_BYTES = 64 << 20
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14
#: Of an Interface Description Block, at most this many bytes are read (its fixed 8 bytes and the
#: first options; if_name, if_description, if_filter… are short in real captures) and at most
#: _IDB_OPTIONS options looked at: the rest of the block is skipped unread.
_IDB_READ = 8 + (64 << 10)
_IDB_OPTIONS = 64

_NS = 1_000_000_000
#: datetime64[ns] holds int64 nanoseconds: a timestamp outside this range is corrupt.
_TS_MIN = -(1 << 63)
_TS_MAX = (1 << 63) - 1
#: Reads of a record or block larger than this go in pieces, so a corrupt length in a short
#: file (or a gzip stream) costs memory for the bytes really there, not for the length claimed.
_READ_PIECE = 1 << 20
_READ_BUFFER = 256 << 10
_SKIP_PIECE = 64 << 10
#: The path that means standard input.
STDIN = "-"
#: How long a FIFO with no writer yet is given for one to come before it reads as empty.
FIFO_WAIT_S = 2.0
#: A non-packet block (or an empty packet block) up to this size is read, and its exact copies
#: right after it skipped in bulk.
_SMALL_BLOCK = 256
_new_record = tuple.__new__     # PacketRecord(...) without the NamedTuple __new__ (hot path)
_NO_LINKTYPE = _LINKTYPE_MASK   # for the packets of a malformed IDB: no decoder will claim it

#: Characters that would break a one-line message or drive a terminal: C0/C1 controls, bidi controls.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _printable(match: re.Match[str]) -> str:
    c = match.group()
    return " " if c in "\r\n\t\v\f" else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"


class CaptureError(Exception):
    """A file that cannot be read as a capture: not a capture, empty, a directory, a device,
    permission denied, unknown format, nothing readable. The message is one clear human line
    (line breaks and control characters, in a file name too, are replaced)."""

    def __init__(self, message: str) -> None:
        super().__init__(_UNPRINTABLE.sub(_printable, str(message)).strip())


class _NotAFile(OSError):
    """Raised by the opener for a path that is neither a regular file, a FIFO nor a directory."""


_FILE_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_kind(mode: int, path: str) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "Is a directory", path)
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise _NotAFile(next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file"))


def _opener(path: str, flags: int) -> int:
    """Open a regular file or a FIFO without ever blocking, and refuse anything else unopened
    (opening a device can have side effects; a FIFO opened blocking waits for a writer forever)."""
    _check_kind(os.stat(path).st_mode, path)
    nonblock = getattr(os, "O_NONBLOCK", 0)        # POSIX; Windows has no FIFOs to wait on
    fd = os.open(path, flags | nonblock)
    try:
        _check_kind(os.fstat(fd).st_mode, path)     # what was opened, if the path changed since
        # a FIFO with no writer reads as empty (EOF) at once rather than waiting forever
        # (_wait_for_writer gives one a moment); one with a writer is read as a stream, blocking
        # like any pipe
        if nonblock:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _stdin() -> io.BufferedReader:
    """Standard input as the capture (the path STDIN, "-", as tcpdump -r - and tshark -r - take
    it): a pipe or a redirected file, read from a duplicate of fd 0; a terminal or any other
    device is refused unread (reading it would wait for typing)."""
    fd = os.dup(0)
    try:
        _check_kind(os.fstat(fd).st_mode, STDIN)
    except BaseException:
        os.close(fd)
        raise
    return _buffered(fd)


def _buffered(file: str | int, opener: Callable[[str, int], int] | None = None) -> io.BufferedReader:
    """open(file, "rb", buffering=_READ_BUFFER), typed as what that makes (typeshed says BinaryIO,
    which has no `read1`)."""
    f = open(file, "rb", buffering=_READ_BUFFER, opener=opener)  # noqa: SIM115 (closed in close())
    assert isinstance(f, io.BufferedReader)
    return f


def _wait_for_writer(fd: int, seconds: float = FIFO_WAIT_S) -> None:
    """A FIFO opened with no writer reads as empty at once: give a writer that is about to come
    (`mkfifo f; ws-analyzer summary f & cat x.pcap > f`) a moment. On Linux, poll() on such a
    FIFO waits until a writer has written something or come and gone, or the time is up."""
    try:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(int(seconds * 1000))
    except (ImportError, AttributeError, OSError):
        pass


class _Reads(io.RawIOBase):
    """A raw stream over a `read1`-like function (returns what it has, up to n bytes), with the
    bytes already read put back in front: a pipe cannot seek back, and a BufferedReader over
    `GzipFile.read` would lose the last buffer's worth of records of a truncated gzip stream."""

    def __init__(self, read1: Any, head: bytes = b"") -> None:
        self._read1 = read1
        self._head = head

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            data, self._head = self._head[:len(b)], self._head[len(b):]
        else:
            data = self._read1(len(b))
        n = len(data)
        b[:n] = data
        return n


def _describe_start(head: bytes) -> str:
    text = head[:8].decode("latin-1")
    if text and all((32 <= ord(c) < 127) or c in "\t\r\n" for c in text):
        return f"starts with {text!r}"
    return f"starts with bytes {head[:8].hex(' ')}"


#: an interface: (linktype, snaplen, multiplier, divisor, offset_ns)
_Iface = tuple[int, int, int, int, int]


def _interface(linktype: int, snaplen: int, tsresol: int, tsoffset_s: int) -> _Iface:
    """(linktype, snaplen, multiplier, divisor, offset_ns): ts_ns = ticks * mul // div + offset_ns,
    exact in integers for any resolution (10^-n or 2^-n)."""
    if tsresol <= 0:
        tsresol = 1_000_000
    if _NS % tsresol == 0:
        mul, div = _NS // tsresol, 1
    else:
        mul, div = _NS, tsresol
    return (linktype & _LINKTYPE_MASK, snaplen, mul, div, tsoffset_s * _NS)


class CaptureReader:
    """Stream the records of one capture file (pcap, pcapng, or either gzip-compressed).

    Args:
        path: the capture file (a regular file or a FIFO with a writer), or "-" (STDIN) for
            standard input (a file named "-" is "./-").
        first_record_no: the number given to the first record (to continue numbering across files).

    Raises:
        CaptureError: the file is missing, unreadable, empty, a directory or a device, or not a
            capture; also while iterating, when reading stops on damage before any record.

    Iterating yields `PacketRecord`s in capture order, each record whole. After at least one
    record, reading never raises on a damaged file: a file cut mid-record, a corrupt block or a
    broken gzip stream ends the iteration with a `Problem` appended to `problems` (everything
    before it has been yielded).
    """

    def __init__(self, path: str | os.PathLike[str], *, first_record_no: int = 1,
                 on_secrets: Callable[[bytes], object] | None = None) -> None:
        self.path: str = os.fspath(path)
        #: called with the NSS key log text of each pcapng Decryption Secrets Block as it is read
        self.on_secrets = on_secrets
        self._secrets_bytes = 0
        self.problems: list[Problem] = []
        self.records_read: int = 0
        self.size: int = 0
        #: the timestamp (ns) of the last record read, once iteration has ended (None: no record)
        self.last_ts_ns: int | None = None
        self._next_no = first_record_no
        self._raw: io.BufferedReader | None = None
        self._f: Any = None
        self._gzip = False
        self._fifo = False
        self._ng = False
        self._pcap: RawPcapReader | None = None
        self._started = False
        self._stopped = ""              # the damage that stopped reading ("" while none)
        self._empty = 0                 # records with caplen 0 (numbered, not yielded)
        self._empty_first = 0
        self._empty_last = 0
        self._ifaces_over = 0           # IDBs beyond MAX_INTERFACES
        name = "stdin" if self.path == STDIN else os.path.basename(self.path) or self.path
        self._name = name
        try:
            # a 256 KiB buffer: the records are read 16 bytes and a payload at a time
            raw = _stdin() if self.path == STDIN else _buffered(self.path, _opener)
        except FileNotFoundError:
            raise CaptureError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{name}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(f"{name}: permission denied") from None
        except _NotAFile as exc:
            raise CaptureError(f"{name}: is {exc}, not a capture file") from None
        except OSError as exc:
            raise CaptureError(f"{name}: cannot open ({exc.strerror or exc})") from None
        self._raw = raw
        try:
            self._open(raw, name)
        except CaptureError:
            self.close()
            raise
        except (OSError, EOFError, zlib.error, Scapy_Exception, struct.error) as exc:
            self.close()
            raise CaptureError(f"{name}: not a readable capture ({exc})") from None

    def _open(self, raw: io.BufferedReader, name: str) -> None:
        st = os.fstat(raw.fileno())
        self.size = st.st_size
        self._fifo = stat.S_ISFIFO(st.st_mode)
        if self._fifo:
            _wait_for_writer(raw.fileno())
        head = raw.read(4)
        if not head:
            if self._fifo:
                raise CaptureError(f"{name}: a pipe nothing was written to (no writer), not a capture")
            raise CaptureError(f"{name}: empty file, not a capture")
        f: Any = raw
        if head[:2] == _GZIP_MAGIC:
            if self._fifo:
                source: Any = _Reads(raw.read1, head)       # a pipe cannot seek back
            else:
                raw.seek(0)
                source = raw
            # GzipFile's own read() is Python code per call: the buffer in front makes the
            # 16-byte header reads C calls, and gives `peek` a quarter MiB to look at
            f = io.BufferedReader(_Reads(gzip.GzipFile(fileobj=source, mode="rb").read1), _READ_BUFFER)
            self._gzip = True
            try:
                head = f.read(4)
            except (OSError, EOFError, zlib.error) as exc:
                raise CaptureError(f"{name}: gzip-compressed but the gzip stream is corrupt ({exc})") \
                    from None
            if not head:
                raise CaptureError(f"{name}: gzip-compressed but empty, not a capture")
        self._f = f
        what = "gzip-compressed file holds no pcap or pcapng" if self._gzip else "not a pcap or pcapng file"
        if head in _PCAP_MAGICS:
            try:
                with quiet_scapy():
                    self._pcap = _make(RawPcapReader, self.path, f, head)
            except Scapy_Exception:
                raise CaptureError(f"{name}: pcap file header is cut short") from None
            endian, nano = _PCAP_MAGICS[head]
            self._rec_hdr = struct.Struct(endian + "IIII")
            self._pcap_u32 = endian + "u4"
            self._pcap_frac = 1 if nano else 1000
            self._pcap_linktype = self._pcap.linktype & _LINKTYPE_MASK
        elif head == _PCAPNG_MAGIC:
            self._ng = True
            damage = self._section_header(_read_exact(f.read, 4))
            if damage is not None:
                raise CaptureError(f"{name}: pcapng {damage[1]}")
        elif head in _KUZNETZOV_MAGICS:
            raise CaptureError(f"{name}: unsupported pcap variant (Kuznetzov 'modified' pcap)")
        else:
            raise CaptureError(f"{name}: {what} ({_describe_start(head + _safe_read(f, 4))})")

    def _ng_structs(self, endian: str) -> None:
        self._ng_endian = endian
        self._blk_hdr = struct.Struct(endian + "II")
        self._epb_hdr = struct.Struct(endian + "IIIII")
        self._u32 = struct.Struct(endian + "I")
        self._pb_hdr = struct.Struct(endian + "HHIIII")
        self._idb_hdr = struct.Struct(endian + "HHI")
        self._opt_hdr = struct.Struct(endian + "HH")
        self._ifaces: list[_Iface] = []
        self._iface_ids: dict[_Iface, _Iface] = {}

    # --- public -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[PacketRecord]:
        if self._started:
            raise RuntimeError("a CaptureReader can be iterated only once")
        self._started = True
        if self._f is None:
            return iter(())
        if self._pcap is not None:
            return self._iter_pcap()
        return self._iter_pcapng()

    @property
    def next_record_no(self) -> int:
        """The number the next record would get (after iteration: the first record of a file read
        next, as `mergecap -a` numbers them)."""
        return self._next_no

    def position(self) -> int:
        """Bytes of the on-disk file consumed so far (the compressed offset for a .gz)."""
        raw = self._raw
        if raw is None or raw.closed:
            return self.size
        try:
            return raw.tell()
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        f, raw = self._f, self._raw
        self._f = None
        self._raw = None
        for obj in (f, raw):
            if obj is not None:
                with contextlib.suppress(OSError, EOFError, zlib.error):
                    obj.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- problems -----------------------------------------------------------------------------

    def _problem(self, kind: ProblemKind, detail: str, ts_ns: int | None) -> None:
        last = self._next_no - 1 if self.records_read else None
        self.problems.append(Problem(kind, f"{self._name}: {detail}", last, ts_ns))

    def _stop(self, kind: ProblemKind, detail: str, ts_ns: int | None) -> None:
        """Reading stops on damage: a problem, remembered in case nothing was read before it."""
        self._stopped = detail
        self._problem(kind, detail, ts_ns)

    def _read_failed(self, exc: BaseException, ts_ns: int | None) -> None:
        if isinstance(exc, EOFError):   # gzip: "Compressed file ended before the end-of-stream marker"
            self._stop(ProblemKind.CAPTURE_TRUNCATED,
                       f"gzip stream ends early after {self.records_read} records ({exc})", ts_ns)
        else:
            self._stop(ProblemKind.CAPTURE_UNREADABLE,
                       f"read error after {self.records_read} records: {exc}", ts_ns)

    def _note_empty(self, first: int, count: int) -> None:
        if not self._empty:
            self._empty_first = first
        self._empty += count
        self._empty_last = first + count - 1

    def _finish(self, first_no: int, no: int) -> None:
        """End of the records: the counted defects become one problem each; nothing readable (no
        record numbered before reading stopped on damage) is a CaptureError."""
        if self._empty:
            self.problems.append(Problem(
                ProblemKind.CAPTURE_UNREADABLE,
                f"{self._name}: {self._empty} records with no captured bytes (caplen 0) skipped, "
                f"from record {self._empty_first} to record {self._empty_last}"
                + (" (a zero-filled stretch of a pcap file reads as such records)" if self._pcap else ""),
                self._empty_first, None))
        if self._ifaces_over:
            self.problems.append(Problem(
                ProblemKind.CAPTURE_UNREADABLE,
                f"{self._name}: {self._ifaces_over} interface description blocks beyond the limit of "
                f"{MAX_INTERFACES} per section ignored; packets naming them are skipped", None, None))
        if self._stopped and no == first_no:
            raise CaptureError(f"{self._name}: nothing readable: {self._stopped}")

    # --- pcap ---------------------------------------------------------------------------------

    def _iter_pcap(self) -> Iterator[PacketRecord]:
        f = self._f
        read = f.read
        unpack = self._rec_hdr.unpack
        frac = self._pcap_frac
        linktype = self._pcap_linktype
        first = no = self._next_no
        ts = None
        new_record = _new_record
        try:
            while True:
                hdr = read(16)
                if len(hdr) < 16:
                    if hdr:
                        self._next_no, self.records_read = no, no - first - self._empty
                        self._stop(ProblemKind.CAPTURE_TRUNCATED,
                                   f"file ends inside a record header ({len(hdr)} of 16 bytes) "
                                   f"{_after(no)}", ts)
                    break
                sec, frac_ts, caplen, wirelen = unpack(hdr)
                if caplen > _READ_PIECE:
                    if caplen > MAX_RECORD_BYTES:
                        self._next_no, self.records_read = no, no - first - self._empty
                        self._stop(ProblemKind.CAPTURE_UNREADABLE,
                                   f"record {no} header claims caplen={caplen} "
                                   f"(limit {MAX_RECORD_BYTES}): corrupt file, reading stopped", ts)
                        break
                    data = _read_exact(read, caplen)
                elif caplen:
                    data = read(caplen)
                else:
                    no = self._skip_empty(no)
                    continue
                if len(data) < caplen:
                    self._next_no, self.records_read = no, no - first - self._empty
                    self._stop(ProblemKind.CAPTURE_TRUNCATED,
                               f"file ends inside record {no}: expected={caplen} bytes, "
                               f"found={len(data)}", ts)
                    break
                ts = sec * _NS + frac_ts * frac
                record = new_record(PacketRecord, (no, ts, linktype, caplen, wirelen, data))
                no += 1
                yield record
        except (OSError, EOFError, zlib.error) as exc:
            self._next_no, self.records_read = no, no - first - self._empty
            self._read_failed(exc, ts)
        finally:
            # every record of a pcap file is numbered, and yielded unless it is empty
            self._next_no, self.records_read = no, no - first - self._empty
        self.last_ts_ns = ts
        self._finish(first, no)

    def _skip_empty(self, no: int) -> int:
        """Record `no`, just read, has caplen 0: skip it and every caplen-0 record right after it,
        looking at a buffer's worth of record headers at a time (numpy), not one by one.
        Returns the number of the next record."""
        import numpy as np

        f = self._f
        dtype = np.dtype(self._pcap_u32)
        count = 1
        while True:
            buf = f.peek(_READ_BUFFER)
            n = len(buf) >> 4
            if not n:
                break
            caplens = np.frombuffer(buf, dtype, n * 4)[2::4]
            nonzero = np.flatnonzero(caplens)
            k = int(nonzero[0]) if len(nonzero) else n
            if k:
                f.read(k << 4)
                count += k
            if k < n:
                break
        self._note_empty(no, count)
        return no + count

    # --- pcapng -------------------------------------------------------------------------------

    def _iter_pcapng(self) -> Iterator[PacketRecord]:
        f = self._f
        read = f.read
        first = no = self._next_no
        ts = None
        make = PacketRecord._make
        try:
            while True:
                hdr = read(8)
                if len(hdr) < 8:
                    if hdr:
                        self._next_no = no
                        self._stop(ProblemKind.CAPTURE_TRUNCATED,
                                   f"file ends inside a block header {_after(no)}", ts)
                    break
                btype, blen = self._blk_hdr.unpack(hdr)
                if btype == _BT_SHB:
                    damage = self._section_header(hdr[4:8])
                    if damage is not None:
                        self._next_no = no
                        self._stop(damage[0], f"{damage[1]} {_after(no)}; reading stopped", ts)
                        break
                    continue
                if blen < 12 or blen % 4 or blen > MAX_BLOCK_BYTES:
                    self._next_no = no
                    self._stop(ProblemKind.CAPTURE_UNREADABLE,
                               f"corrupt pcapng block {_after(no)}: type=0x{btype:08x}, "
                               f"length={blen}; reading stopped", ts)
                    break
                if btype != _BT_EPB and btype != _BT_PB and btype != _BT_SPB:
                    # not a packet: an IDB is read in part, anything else (NRB, ISB, DSB,
                    # custom…) skipped unread; not numbered
                    if not self._other_block(hdr, btype, blen, no, ts):
                        break
                    continue
                body = _read_exact(read, blen - 8)
                if len(body) < blen - 8:
                    self._next_no = no
                    self._stop(ProblemKind.CAPTURE_TRUNCATED,
                               f"file ends inside a pcapng block (type=0x{btype:08x}) "
                               f"{_after(no)}: expected={blen} bytes, found={len(body) + 8}", ts)
                    break
                if btype == _BT_SPB:
                    if not self._ifaces:
                        self._bad_interface(0, no, ts)
                        no += 1
                        continue
                    lt, snap, _mul, _div, _off = self._ifaces[0]
                    (wirelen,) = self._u32.unpack_from(body)
                    caplen = min(wirelen, blen - 16)
                    if snap:
                        caplen = min(caplen, snap)
                    if caplen <= 0:
                        self._note_empty(no, 1)
                        no += 1
                        continue
                    # An SPB has no timestamp: keep the previous record's so time never jumps to 1970.
                    record = make((no, ts or 0, lt, caplen, wirelen, body[4:4 + caplen]))
                else:
                    if blen < 32:
                        # shorter than its own fixed header: skipped (numbered, as a packet block)
                        self._record_problem(f"packet block of {blen} bytes is shorter than its "
                                             "32-byte header; record skipped", no, ts)
                        no += 1
                        continue
                    # enhanced and obsolete packet blocks differ only in their fixed header
                    if btype == _BT_EPB:
                        intid, hi, lo, caplen, wirelen = self._epb_hdr.unpack_from(body)
                    else:
                        intid, _drops, hi, lo, caplen, wirelen = self._pb_hdr.unpack_from(body)
                    if 20 + caplen > blen - 12:
                        self._next_no = no
                        self._stop(ProblemKind.CAPTURE_UNREADABLE,
                                   f"record {no}: packet block claims caplen={caplen} beyond its "
                                   f"block length {blen}; reading stopped", ts)
                        break
                    if not caplen:
                        copies = 1 + (self._skip_copies(hdr + body) if blen <= _SMALL_BLOCK else 0)
                        self._note_empty(no, copies)
                        no += copies
                        continue
                    try:
                        lt, _snap, mul, div, off = self._ifaces[intid]
                    except IndexError:
                        self._bad_interface(intid, no, ts)
                        no += 1
                        continue
                    ticks = (hi << 32) | lo
                    ts = self._checked_ts((ticks * mul if div == 1 else ticks * mul // div) + off, ts, no)
                    record = make((no, ts, lt, caplen, wirelen, body[20:20 + caplen]))
                no += 1
                self.records_read += 1
                yield record
        except (OSError, EOFError, zlib.error) as exc:
            self._next_no = no
            self._read_failed(exc, ts)
        self._next_no = no
        self.last_ts_ns = ts
        self._finish(first, no)

    def _other_block(self, hdr: bytes, btype: int, blen: int, no: int, ts: int | None) -> bool:
        """A block that is not a packet: an IDB's first _IDB_READ bytes are read and parsed, the
        rest of it (and of any other block) skipped unread; a small block's exact copies right
        after it are skipped in bulk. False when the file ends inside it."""
        f = self._f
        want = blen - 8
        parse = btype == _BT_IDB and len(self._ifaces) < MAX_INTERFACES
        secrets = btype == _BT_DSB and self._secrets_bytes + want <= MAX_SECRETS_BYTES
        take = (min(want, _IDB_READ) if parse else want if blen <= _SMALL_BLOCK or secrets else 0)
        body = _read_exact(f.read, take) if take else b""
        got = len(body) + (_skip(f, want - take) if len(body) == take else 0)
        if got < want:
            self._next_no = no
            self._stop(ProblemKind.CAPTURE_TRUNCATED,
                       f"file ends inside a pcapng block (type=0x{btype:08x}) {_after(no)}: "
                       f"expected={blen} bytes, found={got + 8}", ts)
            return False
        copies = self._skip_copies(hdr + body) if blen <= _SMALL_BLOCK else 0
        if secrets:
            self._secrets_block(body)
        if btype == _BT_IDB:
            if parse:
                # the block's last 4 bytes repeat its length: not options
                entry = self._add_interface(body, len(body) - 4 if take == want else len(body), no, ts)
                room = min(copies, MAX_INTERFACES - len(self._ifaces))
                self._ifaces.extend([entry] * room)
                self._ifaces_over += copies - room
            else:
                self._ifaces_over += 1 + copies
        return True

    def _secrets_block(self, body: bytes) -> None:
        """A Decryption Secrets Block: its TLS key log is handed to on_secrets (other secret
        types, WireGuard, SSH…, are not ours to use)."""
        if len(body) < 8:
            return
        kind, length = self._blk_hdr.unpack_from(body)
        if kind == _SECRETS_TLS and length <= len(body) - 8:
            self._secrets_bytes += length
            if self.on_secrets is not None:
                self.on_secrets(body[8:8 + length])

    def _skip_copies(self, block: bytes) -> int:
        """Skip the exact copies of `block` that follow it, a buffer at a time (one small block
        repeated millions of times is the cheapest bomb a gzip stream holds); returns how many."""
        f = self._f
        size = len(block)
        count = 0
        while True:
            buf = f.peek(_READ_BUFFER)
            if not buf.startswith(block):
                return count            # the usual case: one look at the next bytes
            n = len(buf) // size
            if buf.startswith(block * n):
                k = n
            else:
                lo, hi = 1, n           # block * lo is there, block * hi is not
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if buf.startswith(block * mid):
                        lo = mid
                    else:
                        hi = mid
                k = lo
            f.read(k * size)
            count += k
            if k < n:
                return count

    def _record_problem(self, detail: str, no: int, ts: int | None) -> None:
        self.problems.append(Problem(ProblemKind.CAPTURE_UNREADABLE, f"{self._name}: record {no}: {detail}",
                                     no, ts))

    def _checked_ts(self, ts: int, previous: int | None, no: int) -> int:
        """A timestamp outside datetime64[ns] (year 1677..2262) is corrupt: keep the previous one."""
        if _TS_MIN <= ts <= _TS_MAX:
            return ts
        kept = previous or 0
        self._record_problem(f"timestamp {ts} ns is out of range (corrupt); the previous record's "
                             f"time {kept} is used", no, kept)
        return kept

    def _bad_interface(self, intid: int, no: int, ts: int | None) -> None:
        self.problems.append(Problem(
            ProblemKind.CAPTURE_UNREADABLE,
            f"{self._name}: record {no} names interface {intid} but only "
            f"{len(self._ifaces)} are described; record skipped", no, ts))

    def _add_interface(self, body: bytes, end: int, no: int, ts: int | None) -> _Iface:
        """Link type, snap length, if_tsresol and if_tsoffset of an IDB (options up to `end`)."""
        if end < 8:
            self._problem(ProblemKind.CAPTURE_UNREADABLE,
                          f"malformed interface description block before record {no}", ts)
            entry = _interface(_NO_LINKTYPE, 0, 1_000_000, 0)
        else:
            linktype, _reserved, snaplen = self._idb_hdr.unpack_from(body)
            tsresol, tsoffset = 1_000_000, 0
            unpack = self._opt_hdr.unpack_from
            pos = 8
            for _ in range(_IDB_OPTIONS):
                if pos + 4 > end:
                    break
                code, length = unpack(body, pos)
                pos += 4
                if code == 0 or pos + length > end:
                    break
                if code == _OPT_IF_TSRESOL and length >= 1:
                    v = body[pos]
                    tsresol = (2 if v & 0x80 else 10) ** (v & 0x7F)
                elif code == _OPT_IF_TSOFFSET and length == 8:
                    (tsoffset,) = struct.unpack_from(self._ng_endian + "q", body, pos)
                pos += (length + 3) & ~3
            entry = _interface(linktype, snaplen, tsresol, tsoffset)
        # many interfaces are alike: the table holds one tuple for each kind
        entry = self._iface_ids.setdefault(entry, entry)
        self._ifaces.append(entry)
        return entry

    def _section_header(self, length: bytes) -> tuple[ProblemKind, str] | None:
        """Read the rest of a Section Header Block (its type and the 4 bytes of `length` are read):
        byte order, version, options skipped; interface ids start again. Returns the damage
        (kind, detail) when the header is corrupt or cut short."""
        f = self._f
        rest = _read_exact(f.read, 8)        # byte-order magic, major and minor version
        if len(length) < 4 or len(rest) < 8:
            return ProblemKind.CAPTURE_TRUNCATED, "file ends inside a section header block"
        endian = _PCAPNG_BOMS.get(rest[:4])
        if endian is None:
            return (ProblemKind.CAPTURE_UNREADABLE,
                    f"section header block has no byte-order magic (found {rest[:4].hex(' ')}): corrupt")
        (blen,) = struct.unpack(endian + "I", length)
        if blen < 28 or blen % 4 or blen > MAX_BLOCK_BYTES:
            return ProblemKind.CAPTURE_UNREADABLE, f"section header block claims {blen} bytes: corrupt"
        major, minor = struct.unpack(endian + "HH", rest[4:])
        if major != 1:
            return (ProblemKind.CAPTURE_UNREADABLE,
                    f"section header block of version {major}.{minor} (not 1.x)")
        if _skip(f, blen - 16) < blen - 16:
            return ProblemKind.CAPTURE_TRUNCATED, "file ends inside a section header block"
        self._ng_structs(endian)
        return None


def _after(no: int) -> str:
    """Where damage is, for the record about to be numbered `no`."""
    return f"after record {no - 1}" if no > 1 else "before any record"


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    """read(n), but a large n is read in pieces: never allocate more than is really there."""
    if n <= _READ_PIECE:
        return read(n)
    parts = []
    left = n
    while left > 0:
        piece = read(min(left, _READ_PIECE))
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


def _skip(f: Any, n: int) -> int:
    """Read past n bytes without keeping them (a gzip stream or a pipe cannot seek); returns how
    many there were."""
    left = n
    while left > 0:
        piece = f.read(min(left, _SKIP_PIECE))
        if not piece:
            break
        left -= len(piece)
    return n - left


def _make(cls: Any, path: str, f: Any, magic: bytes) -> Any:
    """Build a scapy raw reader on our already-open stream, bypassing its metaclass (which would
    reopen the file and guess the format again)."""
    obj = object.__new__(cls)
    obj.__init__(path, f, magic)
    return obj


def _safe_read(f: Any, n: int) -> bytes:
    try:
        return bytes(f.read(n))
    except (OSError, EOFError, zlib.error):
        return b""
