"""Hostile shapes of the "capture" area (issue 13, items 2, 7, 21, 22): reading capture files.

- gzip-zeros (item 2): a pcap file header followed by zeros (16-byte records with caplen 0),
  gzipped, with one WebSocket conversation before the zeros and another after them. Scale 1.0:
  2 MiB of zeros (131,072 empty records, ~2 KB of gzip); scale 32: 64 MiB (~65 KB of gzip, the
  issue's first size; 26 s before the fix).
- pcapng-empty-packets (item 2, the same in pcapng): enhanced packet blocks with caplen 0,
  gzipped. Scale 1.0: 65,536 blocks (2 MiB).
- idb-options (item 2): one pcapng Interface Description Block whose if_tsresol (nanoseconds) is
  followed by megabytes of empty if_description options, then a WebSocket conversation stamped in
  nanoseconds, gzipped. Scale 1.0: 4 MiB of options; scale 32: the issue's 128 MiB (124 KB of
  gzip, 94 s before the fix).
- tiny-blocks (item 2, the cheapest bomb in pcapng): one 12-byte block of an unknown type repeated
  (200,000 at scale 1.0, 2.4 MB; at scale 10, 24 MB in 47 KB of gzip), between two WebSocket
  conversations, gzipped.
- many-interfaces (item 7): MAX_INTERFACES + 4,464 IDBs (70,000 at scale 1.0; scale 15, 30, 60:
  the issue's ~1M, 2M, 4M), then a WebSocket conversation on interface 0 and one packet naming
  the last interface, gzipped.
- gzip-runts, gzip-malformed-ipv4, gzip-bad-tcp-offset, gzip-udp, gzip-arp (item 2, tiny
  records): one tiny record repeated (a 10-byte runt, IPv4 with IHL 1, TCP with data offset 2, a
  43-byte UDP packet, an ARP packet) between two WebSocket conversations, gzipped; the first three
  are a problem each, the last two plain non-TCP traffic. Scale 1.0: 200,000 records; scale 10:
  2M records in 127 KB (runts) to 476 KB of gzip. Measured at scale 10 (`summary`, user+sys CPU,
  ~1.5 s of start-up included; 2 shared cores, noisy), cadd953 -> now: runts 12.8 -> 6.0 s,
  malformed-ipv4 15.5 -> 9.2 s, bad-tcp-offset 20.6 -> 7.6 s, udp 9.7 -> 7.8 s, arp 7.3 -> 5.8 s;
  peak RSS ~150 MB either way (a record past the problem cap builds no Problem and no detail).
- first-record-caplen-2g, truncated-pcapng (item 21): nothing readable after a good file header;
  bad-section-header (item 22): a pcapng whose section header has no byte-order magic. These three
  are a few hundred bytes whatever the scale.
"""

from __future__ import annotations

import gzip
import pathlib
import struct
from collections.abc import Callable
from functools import partial

from tests.helpers.pcapgen_link import (
    ether,
    ipv4,
    ng_block,
    ng_epb,
    ng_idb,
    ng_options,
    ng_shb,
    pcap_header,
    pcap_record,
    tcp,
)
from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response

#: number of WebSocket text frames in each conversation the shapes carry
FRAMES = 5


def conversation(client_port: int = 50000, start: float = 1_700_000_000.0) -> list[tuple[float, bytes]]:
    """A whole WebSocket connection: handshake, FRAMES server text frames, FIN both ways."""
    conv = Conversation(client_port=client_port, t=start)
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    for i in range(FRAMES):
        conv.send(1, frame(1, f"hello {i}".encode()))
    conv.fin(0)
    conv.fin(1)
    return conv.packets


def _pcap_records(packets: list[tuple[float, bytes]]) -> bytes:
    return b"".join(pcap_record(int(ts), round(ts % 1 * 1e6), pkt) for ts, pkt in packets)


def _epbs(packets: list[tuple[float, bytes]], *, per_second: int = 10**6, intid: int = 0) -> bytes:
    return b"".join(ng_epb(intid, round(ts * per_second), pkt) for ts, pkt in packets)


def _repeat(f: gzip.GzipFile, block: bytes, count: int) -> None:
    """Write `count` copies of `block`, a few MB at a time."""
    per_write = max(1, (4 << 20) // len(block))
    while count:
        n = min(count, per_write)
        f.write(block * n)
        count -= n


def gzip_zeros(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "gzip-zeros.pcap.gz"
    zeros = max(16, int(scale * (2 << 20)) // 16 * 16)
    chunk = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(pcap_header(1) + _pcap_records(conversation(50000)))
        left = zeros
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.write(_pcap_records(conversation(50001, start=1_700_000_100.0)))
    return path


def pcapng_empty_packets(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "pcapng-empty-packets.pcapng.gz"
    empty = ng_epb(0, 1, b"")
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(ng_shb() + ng_idb(1) + _epbs(conversation(50000)))
        _repeat(f, empty, max(1, int(scale * 65_536)))
        f.write(_epbs(conversation(50001, start=1_700_000_100.0)))
    return path


def idb_options(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "idb-options.pcapng.gz"
    filler = max(1, int(scale * (4 << 20)) // 4)
    empty_description = struct.pack("<HH", 3, 0)
    options = ng_options([(9, bytes([9]))])[:-4]            # if_tsresol 10^-9, no end of options yet
    body_len = 8 + len(options) + 4 * filler + 4
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(ng_shb())
        f.write(struct.pack("<II", 1, 12 + body_len) + struct.pack("<HHI", 1, 0, 0) + options)
        left = filler
        while left:
            n = min(left, 1 << 18)
            f.write(empty_description * n)
            left -= n
        f.write(struct.pack("<HH", 0, 0) + struct.pack("<I", 12 + body_len))
        f.write(_epbs(conversation(50000), per_second=10**9))
    return path


def tiny_blocks(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "tiny-blocks.pcapng.gz"
    block = ng_block(0x0BAD, b"")
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(ng_shb() + ng_idb(1) + _epbs(conversation(50000)))
        _repeat(f, block, max(1, int(scale * 200_000)))
        f.write(_epbs(conversation(50001, start=1_700_000_100.0)))
    return path


#: records of each tiny-record shape at scale 1.0 (scale 10: 2M records, 127 to 476 KB of gzip)
TINY_RECORDS = 200_000

#: The tiny-record shapes: one record (the Ethernet frame) repeated, each a different defect or
#: non-TCP packet that the packet decoder must go past cheaply.
TINY_FRAMES: dict[str, bytes] = {
    "gzip-runts": b"\x00" * 10,                                          # runt: no whole Ethernet header
    "gzip-malformed-ipv4": ether(ipv4(tcp(), ihl=1)),                   # IHL 4 bytes: malformed
    "gzip-bad-tcp-offset": ether(ipv4(tcp(doff=2))),                    # TCP data offset 8: malformed
    "gzip-udp": ether(ipv4(b"\x00" * 8 + b"x", proto=17)),              # plain non-TCP: no problem
    "gzip-arp": ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20), ethertype=0x0806),
}


def tiny_records(name: str, directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """A WebSocket conversation, TINY_RECORDS x scale copies of the shape's tiny record, another
    conversation, as a gzipped pcap (identical records: ~1,000 to 1 in gzip)."""
    path = directory / f"{name}.pcap.gz"
    record = pcap_record(1_700_000_050, 0, TINY_FRAMES[name])
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(pcap_header(1) + _pcap_records(conversation(50000)))
        _repeat(f, record, max(1, int(scale * TINY_RECORDS)))
        f.write(_pcap_records(conversation(50001, start=1_700_000_100.0)))
    return path


#: interface blocks beyond the cap at scale 1.0
OVER_CAP = 70_000 - 65_536


def many_interfaces(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    from analyzer import capture

    path = directory / "many-interfaces.pcapng.gz"
    cap = getattr(capture, "MAX_INTERFACES", 65_536)
    count = max(cap + 1, int(scale * (cap + OVER_CAP)))
    idb = ng_idb(1)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(ng_shb())
        _repeat(f, idb, count)
        f.write(_epbs(conversation(50000)))
        f.write(ng_epb(count - 1, 1, b"\x00" * 60))           # names an interface past the cap
    return path


def first_record_caplen_2g(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "caplen-2g.pcap"
    path.write_bytes(pcap_header(1) + struct.pack("<IIII", 1, 0, 2**31 - 1, 2**31 - 1) + b"\x00" * 200)
    return path


def truncated_pcapng(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "truncated.pcapng"
    whole = ng_shb() + ng_idb(1) + _epbs(conversation(50000)[:1])
    path.write_bytes(whole[:-40])                               # cut inside the first packet block
    return path


def bad_section_header(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    path = directory / "bad-shb.pcapng"
    shb = bytearray(ng_shb())
    shb[8:12] = b"\x01\x02\x03\x04"                             # no byte-order magic
    path.write_bytes(bytes(shb) + ng_idb(1) + _epbs(conversation(50000)))
    return path


SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "gzip-zeros": gzip_zeros,
    "pcapng-empty-packets": pcapng_empty_packets,
    "idb-options": idb_options,
    "tiny-blocks": tiny_blocks,
    "many-interfaces": many_interfaces,
    "first-record-caplen-2g": first_record_caplen_2g,
    "truncated-pcapng": truncated_pcapng,
    "bad-section-header": bad_section_header,
    **{name: partial(tiny_records, name) for name in TINY_FRAMES},
}

__all__ = ["FRAMES", "OVER_CAP", "SHAPES", "TINY_FRAMES", "TINY_RECORDS", "conversation"]
