"""Byte-exact pcap / pcapng writers and link-layer frame builders for the capture and packet tests.

Written by hand with struct (not scapy's writers) so the tests control what scapy cannot write:
big-endian and nanosecond pcap, several pcapng interfaces with different link types and
if_tsresol/if_tsoffset, obsolete and simple packet blocks, corrupt lengths.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


def pcap_header(linktype: int, *, endian: str = "<", nano: bool = False, snaplen: int = 262144) -> bytes:
    magic = PCAP_MAGIC_NS if nano else PCAP_MAGIC_US
    return struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(sec: int, frac: int, data: bytes, *, wirelen: int | None = None, endian: str = "<",
                caplen: int | None = None) -> bytes:
    caplen = len(data) if caplen is None else caplen
    wirelen = len(data) if wirelen is None else wirelen
    return struct.pack(endian + "IIII", sec, frac, caplen, wirelen) + data


def pcap_file(linktype: int, records: Iterable[tuple[int, int, bytes] | tuple[int, int, bytes, int]], *,
              endian: str = "<", nano: bool = False) -> bytes:
    """records: (sec, usec-or-nsec, data[, wirelen])."""
    out = [pcap_header(linktype, endian=endian, nano=nano)]
    for rec in records:
        sec, frac, data = rec[0], rec[1], rec[2]
        wirelen = rec[3] if len(rec) > 3 else None  # type: ignore[misc]
        out.append(pcap_record(sec, frac, data, wirelen=wirelen, endian=endian))
    return b"".join(out)


# --- pcapng ---------------------------------------------------------------------------------

def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def ng_options(opts: Sequence[tuple[int, bytes]], endian: str = "<") -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack(endian + "HH", code, len(v)) + _pad4(v) for code, v in opts)
    return out + struct.pack(endian + "HH", 0, 0)


def ng_block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body = _pad4(body)
    blen = len(body) + 12
    return struct.pack(endian + "II", btype, blen) + body + struct.pack(endian + "I", blen)


def ng_shb(endian: str = "<") -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return ng_block(0x0A0D0D0A, body, endian)


def ng_idb(linktype: int, *, snaplen: int = 0, tsresol: int | None = None, tsoffset: int | None = None,
           name: bytes | None = None, endian: str = "<") -> bytes:
    opts: list[tuple[int, bytes]] = []
    if name is not None:
        opts.append((2, name))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(endian + "q", tsoffset)))
    return ng_block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + ng_options(opts, endian), endian)


def ng_epb(intid: int, ticks: int, data: bytes, *, wirelen: int | None = None, endian: str = "<",
           comment: bytes | None = None) -> bytes:
    wirelen = len(data) if wirelen is None else wirelen
    body = struct.pack(endian + "IIIII", intid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wirelen)
    body += _pad4(data)
    if comment is not None:
        body += ng_options([(1, comment)], endian)
    return ng_block(6, body, endian)


def ng_spb(data: bytes, *, wirelen: int | None = None, endian: str = "<") -> bytes:
    wirelen = len(data) if wirelen is None else wirelen
    return ng_block(3, struct.pack(endian + "I", wirelen) + data, endian)


def ng_pb(intid: int, ticks: int, data: bytes, *, endian: str = "<") -> bytes:
    body = struct.pack(endian + "HHIIII", intid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return ng_block(2, body + data, endian)


def ng_isb(intid: int, ticks: int, endian: str = "<") -> bytes:
    """Interface Statistics Block: not a packet, must not be numbered."""
    return ng_block(5, struct.pack(endian + "III", intid, ticks >> 32, ticks & 0xFFFFFFFF), endian)


def ng_nrb(endian: str = "<") -> bytes:
    """Name Resolution Block with one IPv4 record (not a packet)."""
    rec = struct.pack(endian + "HH", 1, 4 + 10) + _pad4(b"\x7f\x00\x00\x01localhost\x00")
    return ng_block(4, rec + struct.pack(endian + "HH", 0, 0), endian)


# --- link-layer frames ----------------------------------------------------------------------

def ether(payload: bytes, ethertype: int = 0x0800, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Ethernet II; vlans = [(tpid, vid), …] outermost first (0x88a8 / 0x8100 / 0x9100)."""
    out = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb"
    for tpid, vid in vlans:
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", ethertype) + payload


def sll(payload: bytes, proto: int = 0x0800, pkttype: int = 0) -> bytes:
    return struct.pack("!HHH8sH", pkttype, 1, 6, b"\x00\x11\x22\x33\x44\x55\x00\x00", proto) + payload


def sll2(payload: bytes, proto: int = 0x0800, ifindex: int = 1) -> bytes:
    addr = b"\x00\x11\x22\x33\x44\x55\x00\x00"
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 1, 0, 6, addr) + payload


def null_hdr(payload: bytes, af: int, endian: str = "<") -> bytes:
    return struct.pack(endian + "I", af) + payload


def ipv4(payload: bytes, src: bytes = b"\x0a\x00\x00\x01", dst: bytes = b"\x0a\x00\x00\x02", *,
         proto: int = 6, ident: int = 1, flags_frag: int = 0x4000, options: bytes = b"",
         total_len: int | None = None, ihl: int | None = None) -> bytes:
    options = _pad4(options)
    ihl = (20 + len(options)) // 4 if ihl is None else ihl
    total = 20 + len(options) + len(payload) if total_len is None else total_len
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident, flags_frag, 64, proto, 0, src, dst)
    return hdr + options + payload


def ipv6(payload: bytes, src: bytes = b"\xfe\x80" + b"\x00" * 13 + b"\x01",
         dst: bytes = b"\xfe\x80" + b"\x00" * 13 + b"\x02", *, nh: int = 6, plen: int | None = None) -> bytes:
    plen = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, plen, nh, 64, src, dst) + payload


def tcp(payload: bytes = b"", sport: int = 40000, dport: int = 80, seq: int = 1000, ack: int = 2000,
        flags: int = 0x18, options: bytes = b"", doff: int | None = None) -> bytes:
    options = _pad4(options)
    doff = (20 + len(options)) // 4 if doff is None else doff
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0)
    return hdr + options + payload
