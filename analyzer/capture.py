"""Capture files → PacketRecord: pcap (both byte orders, µs and ns), pcapng and gzip of either.

This module owns opening a capture, telling a capture from anything else (with one clear error line),
and streaming its records whole, in capture order, with exact integer-nanosecond timestamps. It
does not look inside the packets (that is packets.py).

Scapy's raw readers (`scapy.utils.RawPcapReader` / `RawPcapNgReader`) parse the file header, the
pcapng Section Header Block and every Interface Description Block (link type, snap length,
`if_tsresol` including the power-of-two resolutions, options). The per-record loop is our own
`struct` code, on purpose — correctness first:

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

Records are yielded in capture order, never sorted: tcpdump on several CPUs writes records that
are not always in time order, and `record_no` must match Wireshark's frame numbers.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from analyzer.events import PacketRecord, Problem
from analyzer.protocol import ProblemKind

__all__ = ["MAX_BLOCK_BYTES", "MAX_RECORD_BYTES", "CaptureError", "CaptureReader"]

#: A record (or pcapng block) claiming more than this is corrupt: report it and stop, never allocate.
MAX_RECORD_BYTES = 256 * 1024 * 1024
MAX_BLOCK_BYTES = MAX_RECORD_BYTES + 64 * 1024   # room for the EPB header, padding and options

_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),   # little endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", False),   # big endian, microseconds
    b"\x4d\x3c\xb2\xa1": ("<", True),    # little endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", True),    # big endian, nanoseconds
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"     # the Section Header Block type
_KUZNETZOV_MAGICS = (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34")

# LINKTYPE_ values carry FCS-length bits above bit 26 in the pcap header (pcap-linktype(7)).
_LINKTYPE_MASK = 0x03FFFFFF

# pcapng block types (draft-ietf-opsawg-pcapng)
_BT_SHB = 0x0A0D0D0A
_BT_IDB = 0x00000001
_BT_PB = 0x00000002      # obsolete Packet Block
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
_OPT_IF_TSOFFSET = 14

_NS = 1_000_000_000
#: datetime64[ns] holds int64 nanoseconds: a timestamp outside this range is corrupt.
_TS_MIN = -(1 << 63)
_TS_MAX = (1 << 63) - 1
#: Reads of a record or block larger than this go in pieces, so a corrupt length in a short
#: file (or a gzip stream) costs memory for the bytes really there, not for the length claimed.
_READ_PIECE = 1 << 20
_READ_BUFFER = 256 << 10
_new_record = tuple.__new__     # PacketRecord(...) without the NamedTuple __new__ (hot path)
_NO_LINKTYPE = _LINKTYPE_MASK   # for the packets of a malformed IDB: no decoder will claim it


class CaptureError(Exception):
    """A file that cannot be read as a capture: not a capture, empty, a directory, permission denied,
    unknown format. The message is one clear human line."""


def _describe_start(head: bytes) -> str:
    text = head[:8].decode("latin-1")
    if text and all((32 <= ord(c) < 127) or c in "\t\r\n" for c in text):
        return f"starts with {text!r}"
    return f"starts with bytes {head[:8].hex(' ')}"


def _interface(linktype: int, snaplen: int, tsresol: int, tsoffset_s: int) -> tuple[int, int, int, int, int]:
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
        path: the capture file.
        first_record_no: the number given to the first record (to continue numbering across files).

    Raises:
        CaptureError: the file is missing, unreadable, empty, a directory, or not a capture.

    Iterating yields `PacketRecord`s in capture order, each record whole. Reading never raises on
    a damaged file: a file cut mid-record, a corrupt block or a broken gzip stream ends the iteration
    with a `Problem` appended to `problems` (everything before it has been yielded).
    """

    def __init__(self, path: str | os.PathLike[str], *, first_record_no: int = 1) -> None:
        self.path: str = os.fspath(path)
        self.problems: list[Problem] = []
        self.records_read: int = 0
        self.size: int = 0
        self._next_no = first_record_no
        self._raw: IO[bytes] | None = None
        self._f: Any = None
        self._gzip = False
        self._ng: RawPcapNgReader | None = None
        self._pcap: RawPcapReader | None = None
        self._started = False
        name = os.path.basename(self.path) or self.path
        try:
            # a 256 KiB buffer: the records are read 16 bytes and a payload at a time
            raw = open(self.path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 (closed in close())
        except FileNotFoundError:
            raise CaptureError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{name}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(f"{name}: permission denied") from None
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

    def _open(self, raw: IO[bytes], name: str) -> None:
        st = os.fstat(raw.fileno())
        self.size = st.st_size
        if os.path.isdir(self.path):       # some platforms open directories read-only
            raise CaptureError(f"{name}: is a directory, not a capture file")
        head = raw.read(4)
        if not head:
            raise CaptureError(f"{name}: empty file, not a capture")
        f: Any = raw
        if head[:2] == _GZIP_MAGIC:
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw, mode="rb")
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
                self._pcap = _make(RawPcapReader, self.path, f, head)
            except Scapy_Exception:
                raise CaptureError(f"{name}: pcap file header is cut short") from None
            endian, nano = _PCAP_MAGICS[head]
            self._rec_hdr = struct.Struct(endian + "IIII")
            self._pcap_frac = 1 if nano else 1000
            self._pcap_linktype = self._pcap.linktype & _LINKTYPE_MASK
        elif head == _PCAPNG_MAGIC:
            # Bound the SHB length before scapy reads it (it reads whatever the header claims).
            peek = f.peek(8)[:8] if hasattr(f, "peek") else b""
            if len(peek) == 8:
                bom = peek[4:8]
                endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                blen = struct.unpack(endian + "I", peek[:4])[0]
                if bom in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d") and blen > MAX_BLOCK_BYTES:
                    raise CaptureError(f"{name}: pcapng section header claims {blen} bytes: corrupt")
            try:
                self._ng = _make(RawPcapNgReader, self.path, f, head)
            except (Scapy_Exception, EOFError):
                raise CaptureError(f"{name}: pcapng section header block is malformed") from None
            self._ng_endian = self._ng.endian
            self._ng_structs(self._ng_endian)
        elif head in _KUZNETZOV_MAGICS:
            raise CaptureError(f"{name}: unsupported pcap variant (Kuznetzov 'modified' pcap)")
        else:
            raise CaptureError(f"{name}: {what} ({_describe_start(head + _safe_read(f, 4))})")

    def _ng_structs(self, endian: str) -> None:
        self._blk_hdr = struct.Struct(endian + "II")
        self._epb_hdr = struct.Struct(endian + "IIIII")
        self._u32 = struct.Struct(endian + "I")
        self._pb_hdr = struct.Struct(endian + "HHIIII")
        self._ifaces: list[tuple[int, int, int, int, int]] = []

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
        self.problems.append(Problem(kind, f"{os.path.basename(self.path)}: {detail}", last, ts_ns))

    def _read_failed(self, exc: BaseException, ts_ns: int | None) -> None:
        if isinstance(exc, EOFError):   # gzip: "Compressed file ended before the end-of-stream marker"
            self._problem(ProblemKind.CAPTURE_TRUNCATED,
                          f"gzip stream ends early after {self.records_read} records ({exc})", ts_ns)
        else:
            self._problem(ProblemKind.CAPTURE_UNREADABLE,
                          f"read error after {self.records_read} records: {exc}", ts_ns)

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
                        self._next_no, self.records_read = no, no - first
                        self._problem(ProblemKind.CAPTURE_TRUNCATED,
                                      f"file ends inside a record header ({len(hdr)} of 16 bytes) "
                                      f"after record {no - 1}", ts)
                    break
                sec, frac_ts, caplen, wirelen = unpack(hdr)
                if caplen > _READ_PIECE:
                    if caplen > MAX_RECORD_BYTES:
                        self._next_no, self.records_read = no, no - first
                        self._problem(ProblemKind.CAPTURE_UNREADABLE,
                                      f"record {no} header claims caplen={caplen} "
                                      f"(limit {MAX_RECORD_BYTES}): corrupt file, reading stopped", ts)
                        break
                    data = _read_exact(read, caplen)
                else:
                    data = read(caplen)
                if len(data) < caplen:
                    self._next_no, self.records_read = no, no - first
                    self._problem(ProblemKind.CAPTURE_TRUNCATED,
                                  f"file ends inside record {no}: expected={caplen} bytes, "
                                  f"found={len(data)}", ts)
                    break
                ts = sec * _NS + frac_ts * frac
                record = new_record(PacketRecord, (no, ts, linktype, caplen, wirelen, data))
                no += 1
                yield record
        except (OSError, EOFError, zlib.error) as exc:
            self._next_no, self.records_read = no, no - first
            self._read_failed(exc, ts)
        finally:
            # every record of a pcap file is numbered and yielded: the count follows the numbers
            self._next_no, self.records_read = no, no - first

    # --- pcapng -------------------------------------------------------------------------------

    def _iter_pcapng(self) -> Iterator[PacketRecord]:
        ng = self._ng
        assert ng is not None
        for linktype, snaplen, opts in ng.interfaces:   # IDBs scapy already read (none, usually)
            self._ifaces.append(_interface(linktype, snaplen, opts.get("tsresol", 1_000_000), 0))
        f = self._f
        read = f.read
        no = self._next_no
        ts = None
        make = PacketRecord._make
        try:
            while True:
                hdr = read(8)
                if len(hdr) < 8:
                    if hdr:
                        self._next_no = no
                        self._problem(ProblemKind.CAPTURE_TRUNCATED,
                                      f"file ends inside a block header after record {no - 1}", ts)
                    break
                btype, blen = self._blk_hdr.unpack(hdr)
                if btype == _BT_SHB:
                    if not self._new_section(hdr, ts, no):
                        break
                    continue
                if blen < 12 or blen % 4 or blen > MAX_BLOCK_BYTES:
                    self._next_no = no
                    self._problem(ProblemKind.CAPTURE_UNREADABLE,
                                  f"corrupt pcapng block after record {no - 1}: type=0x{btype:08x}, "
                                  f"length={blen}; reading stopped", ts)
                    break
                body = _read_exact(read, blen - 8)
                if len(body) < blen - 8:
                    self._next_no = no
                    self._problem(ProblemKind.CAPTURE_TRUNCATED,
                                  f"file ends inside a pcapng block (type=0x{btype:08x}) "
                                  f"after record {no - 1}: expected={blen} bytes, found={len(body) + 8}", ts)
                    break
                if btype in (_BT_EPB, _BT_PB) and blen < 32:
                    # shorter than its own fixed header: skipped (numbered, as a packet block)
                    self._record_problem(f"packet block of {blen} bytes is shorter than its "
                                         "32-byte header; record skipped", no, ts)
                    no += 1
                    continue
                if btype in (_BT_EPB, _BT_PB):
                    # enhanced and obsolete packet blocks differ only in their fixed header
                    if btype == _BT_EPB:
                        intid, hi, lo, caplen, wirelen = self._epb_hdr.unpack_from(body)
                    else:
                        intid, _drops, hi, lo, caplen, wirelen = self._pb_hdr.unpack_from(body)
                    if 20 + caplen > blen - 12:
                        self._next_no = no
                        self._problem(ProblemKind.CAPTURE_UNREADABLE,
                                      f"record {no}: packet block claims caplen={caplen} beyond its "
                                      f"block length {blen}; reading stopped", ts)
                        break
                    try:
                        lt, _snap, mul, div, off = self._ifaces[intid]
                    except IndexError:
                        self._bad_interface(intid, no, ts)
                        no += 1
                        continue
                    ticks = (hi << 32) | lo
                    ts = self._checked_ts((ticks * mul if div == 1 else ticks * mul // div) + off, ts, no)
                    record = make((no, ts, lt, caplen, wirelen, body[20:20 + caplen]))
                elif btype == _BT_SPB:
                    if not self._ifaces:
                        self._bad_interface(0, no, ts)
                        no += 1
                        continue
                    lt, snap, _mul, _div, _off = self._ifaces[0]
                    (wirelen,) = self._u32.unpack_from(body)
                    caplen = min(wirelen, blen - 16)
                    if snap:
                        caplen = min(caplen, snap)
                    # An SPB has no timestamp: keep the previous record's so time never jumps to 1970.
                    record = make((no, ts or 0, lt, caplen, wirelen, body[4:4 + caplen]))
                elif btype == _BT_IDB:
                    self._add_interface(body[:-4], no, ts)
                    continue
                else:
                    continue            # NRB, ISB, DSB, custom…: not packets, not numbered
                no += 1
                self.records_read += 1
                yield record
        except (OSError, EOFError, zlib.error) as exc:
            self._next_no = no
            self._read_failed(exc, ts)
        self._next_no = no

    def _record_problem(self, detail: str, no: int, ts: int | None) -> None:
        self.problems.append(Problem(ProblemKind.CAPTURE_UNREADABLE,
                                     f"{os.path.basename(self.path)}: record {no}: {detail}", no, ts))

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
            f"{os.path.basename(self.path)}: record {no} names interface {intid} but only "
            f"{len(self._ifaces)} are described; record skipped", no, ts))

    def _add_interface(self, body: bytes, no: int, ts: int | None) -> None:
        ng = self._ng
        assert ng is not None
        try:
            ng._read_block_idb(body, 0)          # scapy parses link type, snaplen and if_tsresol
            linktype, snaplen, opts = ng.interfaces[-1]
            raw_opts = ng._read_options(body[8:])
        except (EOFError, struct.error, Scapy_Exception):
            self._problem(ProblemKind.CAPTURE_UNREADABLE,
                          f"malformed interface description block before record {no}", ts)
            linktype, snaplen, opts, raw_opts = _NO_LINKTYPE, 0, {}, {}
        tsoffset = 0
        value = raw_opts.get(_OPT_IF_TSOFFSET)
        if isinstance(value, bytes) and len(value) == 8:
            (tsoffset,) = struct.unpack(self._ng_endian + "q", value)
        self._ifaces.append(_interface(linktype, snaplen, opts.get("tsresol", 1_000_000), tsoffset))

    def _new_section(self, hdr: bytes, ts: int | None, no: int) -> bool:
        """A Section Header Block after the first: new byte order, interface ids start again."""
        ng = self._ng
        assert ng is not None
        rest = self._f.read(4)
        if len(rest) < 4:
            self._problem(ProblemKind.CAPTURE_TRUNCATED,
                          f"file ends inside a section header after record {no - 1}", ts)
            return False
        if rest == b"\x4d\x3c\x2b\x1a":
            endian = "<"
        elif rest == b"\x1a\x2b\x3c\x4d":
            endian = ">"
        else:
            self._problem(ProblemKind.CAPTURE_UNREADABLE,
                          f"corrupt section header after record {no - 1}; reading stopped", ts)
            return False
        (blen,) = struct.unpack(endian + "I", hdr[4:8])
        if blen < 28 or blen % 4 or blen > MAX_BLOCK_BYTES:
            self._problem(ProblemKind.CAPTURE_UNREADABLE,
                          f"corrupt section header (length={blen}) after record {no - 1}; "
                          "reading stopped", ts)
            return False
        body = _read_exact(self._f.read, blen - 12)
        if len(body) < blen - 12:
            self._problem(ProblemKind.CAPTURE_TRUNCATED,
                          f"file ends inside a section header after record {no - 1}", ts)
            return False
        ng.endian = endian
        ng.interfaces = []
        self._ng_endian = endian
        self._ng_structs(endian)
        return True


def _read_exact(read: Any, n: int) -> bytes:
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
