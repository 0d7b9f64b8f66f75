"""Write small pcap files of TCP conversations, byte by byte, for pipeline tests.

`Conversation` keeps the sequence numbers of both sides so a test only says who sends what:
    conv = Conversation(client_port=50000, server_port=9000)
    conv.handshake(); conv.send(0, b"GET / ...")  # 0 = client, 1 = server
    write_pcap(path, conv.packets)
"""

from __future__ import annotations

import base64
import gzip
import os
import struct
from dataclasses import dataclass, field
from typing import IO

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_ipv4_packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
                    payload: bytes = b"") -> bytes:
    """An Ethernet + IPv4 + TCP packet."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                      65535, 0, 0) + payload
    srcb, dstb = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, srcb, dstb)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
    return eth + ip + tcp


@dataclass
class Conversation:
    client: str = "10.0.0.1"
    server: str = "10.0.0.2"
    client_port: int = 50000
    server_port: int = 9000
    seq: list[int] = field(default_factory=lambda: [1000, 5000])
    t: float = 1_700_000_000.0
    step: float = 0.001
    packets: list[tuple[float, bytes]] = field(default_factory=list)

    def _emit(self, direction: int, flags: int, payload: bytes = b"", seq: int | None = None) -> None:
        src, dst = (self.client, self.server) if direction == 0 else (self.server, self.client)
        sport, dport = ((self.client_port, self.server_port) if direction == 0
                        else (self.server_port, self.client_port))
        s = self.seq[direction] if seq is None else seq
        pkt = tcp_ipv4_packet(src, dst, sport, dport, s, self.seq[1 - direction], flags, payload)
        self.packets.append((self.t, pkt))
        self.t += self.step

    def handshake(self) -> None:
        self._emit(0, SYN)
        self.seq[0] += 1
        self._emit(1, SYN | ACK)
        self.seq[1] += 1
        self._emit(0, ACK)

    def send(self, direction: int, payload: bytes) -> None:
        self._emit(direction, PSH | ACK, payload)
        self.seq[direction] += len(payload)

    def fin(self, direction: int) -> None:
        self._emit(direction, FIN | ACK)
        self.seq[direction] += 1

    def rst(self, direction: int) -> None:
        self._emit(direction, RST | ACK)


def _records(packets: list[tuple[float, bytes]]) -> bytes:
    out = []
    for ts, pkt in packets:
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)) + pkt)
    return b"".join(out)


def write_pcap(path: str | os.PathLike[str], packets: list[tuple[float, bytes]], linktype: int = 1) -> None:
    with PcapStream(path, linktype) as f:
        f.write_packets(packets)


class PcapStream:
    """A pcap file written a conversation at a time (gzipped when its name ends in .gz), so that a
    large generated capture never holds all its packets:
        with PcapStream(path) as out:
            ...; out.flush(conv)      # writes conv.packets and empties the list
    """

    def __init__(self, path: str | os.PathLike[str], linktype: int = 1) -> None:
        gzipped = os.fspath(path).endswith(".gz")
        # closed by __exit__
        self._file: IO[bytes] = gzip.open(path, "wb", compresslevel=6) if gzipped else open(path, "wb")  # noqa: SIM115
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))

    def write_packets(self, packets: list[tuple[float, bytes]]) -> None:
        self._file.write(_records(packets))

    def flush(self, conv: Conversation) -> None:
        self.write_packets(conv.packets)
        conv.packets.clear()

    def __enter__(self) -> PcapStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


# --- WebSocket bytes ---------------------------------------------------------------------------

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade_request(path: str = "/chat", key: str = SAMPLE_KEY, extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nOrigin: http://example.com\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def upgrade_response(accept: str = SAMPLE_ACCEPT, extra: str = "") -> bytes:
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n").encode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None, rsv: int = 0) -> bytes:
    """One RFC 6455 frame; `mask` is the 4-byte masking key (client frames)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def random_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()
