"""Write a hostile capture of about 1 GB (to /tmp; never committed) to measure memory and time:

    python tests/fuzz/make_hostile.py /tmp/hostile.pcap          # ~1 GB
    python tests/fuzz/make_hostile.py /tmp/small.pcap --scale 0.05
    /usr/bin/time -v python -c "import analyzer; a=analyzer.analyze('/tmp/hostile.pcap'); \
        print(len(a.frames), len(a.problems))"

Everything is interleaved packet by packet, so all the attacks are in flight at once:

* half-open: 1,000,000 SYNs from distinct clients, never answered (~70 MB);
* out-of-order: 2,000 WebSocket connections that lose 100 bytes right after the handshake and then
  send 100 segments of 1,400 bytes each (~300 MB held back behind holes that never fill);
* huge frames: one 300 MB binary frame streamed in 64 KB segments, and one frame claiming
  2^63-1 bytes followed by 10 MB;
* deflate bombs: 100 permessage-deflate connections, each sending a ~1 MB message that inflates
  to ~1 GB;
* partial frames: 150 connections each sending 1.2 MB of an 8 MB frame and then nothing (~180 MB
  of frames that never complete, more than the shared payload budget).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import zlib
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.pcapgen import SAMPLE_ACCEPT, SAMPLE_KEY, upgrade_request, upgrade_response  # noqa: E402

SYN, ACK, PSH = 0x02, 0x10, 0x08
_ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
MSS = 64000


def packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes = b"") -> bytes:
    """Ethernet + IPv4 + TCP, checksums left 0 (the analyzer does not verify them)."""
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    ip = _IP.pack(0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, src, dst)
    return _ETH + ip + tcp + payload


def addr(n: int) -> bytes:
    return struct.pack("!I", 0x0A000000 + (n & 0xFFFFFF))


SERVER = b"\xc0\xa8\x00\x01"


class Conn:
    """One client-server TCP connection; `send` yields its packets."""

    def __init__(self, n: int, port: int = 80) -> None:
        self.c, self.cp = addr(n), 1024 + n % 60000
        self.s, self.sp = SERVER, port
        self.seq = [1000, 5000]

    def pkt(self, d: int, flags: int, payload: bytes = b"", skip: int = 0) -> bytes:
        if d == 0:
            src, dst, sp, dp = self.c, self.s, self.cp, self.sp
        else:
            src, dst, sp, dp = self.s, self.c, self.sp, self.cp
        p = packet(src, dst, sp, dp, self.seq[d] + skip, self.seq[1 - d], flags, payload)
        self.seq[d] += skip + len(payload) + (1 if flags & SYN else 0)
        return p

    def open(self, extra: str = "") -> Iterator[bytes]:
        yield self.pkt(0, SYN)
        yield self.pkt(1, SYN | ACK)
        yield self.pkt(0, ACK)
        yield self.pkt(0, PSH | ACK, upgrade_request(key=SAMPLE_KEY, extra=extra))
        yield self.pkt(1, PSH | ACK, upgrade_response(accept=SAMPLE_ACCEPT, extra=extra))

    def send(self, d: int, data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), MSS):
            yield self.pkt(d, PSH | ACK, data[i:i + MSS])


def frame_header(opcode: int, length: int, rsv: int = 0) -> bytes:
    b0 = bytes([0x80 | rsv << 4 | opcode])
    if length < 126:
        return b0 + bytes([length])
    if length < 65536:
        return b0 + b"\x7e" + struct.pack("!H", length)
    return b0 + b"\x7f" + struct.pack("!Q", length)


def half_open(count: int, base: int) -> Iterator[bytes]:
    for i in range(count):
        n = base + i
        yield packet(addr(n), SERVER, 1024 + n % 60000, 443, n * 7919, 0, SYN)


def out_of_order(flows: int, segments: int, base: int) -> Iterator[bytes]:
    conns = [Conn(base + i, 8080) for i in range(flows)]
    for c in conns:
        yield from c.open()
    body = b"o" * 1400
    for k in range(segments):
        for c in conns:
            yield c.pkt(1, PSH | ACK, body, skip=100 if k == 0 else 0)


def huge_frames(size: int, base: int) -> Iterator[bytes]:
    c = Conn(base, 8081)
    yield from c.open()
    yield c.pkt(1, PSH | ACK, frame_header(2, size))
    chunk = b"h" * MSS
    sent = 0
    while sent < size:
        n = min(MSS, size - sent)
        yield c.pkt(1, PSH | ACK, chunk[:n])
        sent += n
    c2 = Conn(base + 1, 8081)
    yield from c2.open()
    yield c2.pkt(1, PSH | ACK, frame_header(2, (1 << 63) - 1))
    for _ in range(size // 30 // MSS):
        yield c2.pkt(1, PSH | ACK, chunk)


def bomb_block() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)


def bombs(count: int, mib: int, base: int) -> Iterator[bytes]:
    block = bomb_block()
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    for i in range(count):
        c = Conn(base + i, 8082)
        yield from c.open(ext)
        message = block * mib
        yield from c.send(1, frame_header(2, len(message), rsv=4) + message)


def partial_frames(count: int, sent: int, base: int) -> Iterator[bytes]:
    conns = [Conn(base + i, 8083) for i in range(count)]
    for c in conns:
        yield from c.open()
        yield c.pkt(1, PSH | ACK, frame_header(2, 8 << 20))
    chunk = b"p" * MSS
    for _ in range(sent // MSS):
        for c in conns:
            yield c.pkt(1, PSH | ACK, chunk)


def write(path: str, scale: float) -> tuple[int, int]:
    def n(x: float) -> int:
        return max(1, int(x * scale))

    sources = [
        half_open(n(1_000_000), 1_000_000),
        out_of_order(n(2000), 100, 100_000),
        huge_frames(n(300 << 20), 200_000),
        bombs(n(100), 1000, 300_000),
        partial_frames(n(150), 1_200_000, 400_000),
    ]
    packets = 0
    ts = 1_700_000_000 * 1_000_000
    rec = struct.Struct("<IIII")
    with open(path, "wb", buffering=1 << 20) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        while sources:
            for src in list(sources):
                for _ in range(8):                 # a few packets of each source in turn
                    p = next(src, None)
                    if p is None:
                        sources.remove(src)
                        break
                    f.write(rec.pack(ts // 1_000_000, ts % 1_000_000, len(p), len(p)))
                    f.write(p)
                    packets += 1
                    ts += 1
        size = f.tell()
    return packets, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="/tmp/hostile.pcap")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every count and size")
    args = ap.parse_args()
    packets, size = write(args.path, args.scale)
    print(f"{args.path}: {packets} packets, {size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
