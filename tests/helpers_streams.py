"""Helpers for tests/test_streams.py: a Segment builder, event collectors, a minimal pcap decoder,
and the generator of tests/data/tcp_echo.pcap (run this file: `python tests/helpers_streams.py`).

The decoder here is deliberately independent of analyzer.packets, so the reassembler's end-to-end
test does not depend on another module.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator

from analyzer.events import (
    Segment,
    StreamClosed,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
    StreamOpened,
    StreamProblem,
)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MOD = 1 << 32

CLIENT_IP = bytes([10, 0, 0, 1])
SERVER_IP = bytes([10, 0, 0, 2])


class Wire:
    """Builds the segments of one TCP connection. Sequence arguments are relative offsets into
    each side's data (0 = the first data byte, i.e. ISN + 1); record numbers and timestamps
    count up by themselves."""

    def __init__(self, *, cisn: int = 1000, sisn: int = 700_000, client: bytes = CLIENT_IP,
                 server: bytes = SERVER_IP, cport: int = 51000, sport: int = 8080, ip_version: int = 4,
                 ts_ns: int = 1_700_000_000 * 10**9, rec: int = 0) -> None:
        self.cisn, self.sisn = cisn, sisn
        self.client, self.server, self.cport, self.sport = client, server, cport, sport
        self.ip_version = ip_version
        self.ts_ns = ts_ns
        self.rec = rec

    def _seg(self, from_client: bool, seq: int, ack: int, flags: int, payload: bytes,
             truncated: bool = False, ts_ns: int | None = None) -> Segment:
        self.rec += 1
        if ts_ns is None:
            self.ts_ns += 1000
            ts_ns = self.ts_ns
        if from_client:
            src, dst, sport, dport = self.client, self.server, self.cport, self.sport
        else:
            src, dst, sport, dport = self.server, self.client, self.sport, self.cport
        return Segment(self.rec, ts_ns, self.ip_version, src, dst, sport, dport, seq % MOD, ack % MOD,
                       flags, payload, truncated)

    def cseq(self, rel: int) -> int:
        return (self.cisn + 1 + rel) % MOD

    def sseq(self, rel: int) -> int:
        return (self.sisn + 1 + rel) % MOD

    def syn(self, payload: bytes = b"") -> Segment:
        return self._seg(True, self.cisn, 0, SYN, payload)

    def syn_ack(self, payload: bytes = b"") -> Segment:
        return self._seg(False, self.sisn, self.cseq(0), SYN | ACK, payload)

    def c(self, rel: int, data: bytes = b"", *, ack: int = 0, flags: int = ACK, **kw: object) -> Segment:
        """Client → server: data at client offset `rel`, acknowledging server offset `ack`."""
        return self._seg(True, self.cseq(rel), self.sseq(ack), flags, data, **kw)  # type: ignore[arg-type]

    def s(self, rel: int, data: bytes = b"", *, ack: int = 0, flags: int = ACK, **kw: object) -> Segment:
        """Server → client: data at server offset `rel`, acknowledging client offset `ack`."""
        return self._seg(False, self.sseq(rel), self.cseq(ack), flags, data, **kw)  # type: ignore[arg-type]

    def handshake(self) -> list[Segment]:
        return [self.syn(), self.syn_ack(), self.c(0)]


def data_of(events: Iterable[StreamEvent], conn_id: int, direction: int) -> bytes:
    """Every delivered byte of one direction, concatenated."""
    return b"".join(e.data for e in events
                    if type(e) is StreamData and e.conn_id == conn_id and e.direction == direction)


def of_type(events: Iterable[StreamEvent], kind: type) -> list:
    return [e for e in events if type(e) is kind]


def problems(events: Iterable[StreamEvent], kind: object | None = None) -> list[StreamProblem]:
    return [e for e in events if type(e) is StreamProblem and (kind is None or e.problem.kind == kind)]


def run(reassembler: object, segments: Iterable[Segment], finish: bool = True) -> list[StreamEvent]:
    """Feed everything (and finish), returning all events in order."""
    out: list[StreamEvent] = []
    for seg in segments:
        out.extend(reassembler.feed(seg))  # type: ignore[attr-defined]
    if finish:
        out.extend(reassembler.finish())  # type: ignore[attr-defined]
    return out


def check_stream_order(events: list[StreamEvent]) -> None:
    """Structural invariants every event sequence must satisfy."""
    opened: set[int] = set()
    closed: set[int] = set()
    ended: set[tuple[int, int]] = set()
    for e in events:
        if type(e) is StreamOpened:
            assert e.conn_id not in opened
            opened.add(e.conn_id)
            continue
        assert e.conn_id in opened, e
        assert e.conn_id not in closed, e
        if type(e) is StreamClosed:
            closed.add(e.conn_id)
        elif type(e) in (StreamData, StreamGap):
            assert (e.conn_id, e.direction) not in ended, e
            if type(e) is StreamData:
                assert e.data
            else:
                assert e.size > 0
        elif type(e) is StreamEnd:
            assert (e.conn_id, e.direction) not in ended, e
            ended.add((e.conn_id, e.direction))


# --- a minimal pcap → Segment decoder (Ethernet / IPv4 / TCP only) --------------------------------

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")


def read_pcap_segments(path: str) -> Iterator[Segment]:
    """Segments of a classic-pcap Ethernet capture, read whole (not cut at 65,535 bytes)."""
    from scapy.utils import RawPcapReader

    reader = RawPcapReader(path)
    try:
        rec = 0
        while True:
            try:
                data, meta = reader._read_packet(size=1 << 20)   # whole records
            except EOFError:
                break
            rec += 1
            ts_ns = meta.sec * 10**9 + meta.usec * 1000
            if len(data) < 14 + 20:
                continue
            _, _, ethertype = _ETH.unpack_from(data, 0)
            if ethertype != 0x0800:
                continue
            vihl, _, total, _, _, _, proto, _, src, dst = _IPV4.unpack_from(data, 14)
            if proto != 6:
                continue
            t = 14 + (vihl & 0x0F) * 4
            sport, dport, seq, ack, off, flags, _, _, _ = _TCP.unpack_from(data, t)
            start = t + (off >> 4) * 4
            end = 14 + total
            payload = bytes(data[start:end])
            yield Segment(rec, ts_ns, 4, src, dst, sport, dport, seq, ack, flags, payload,
                          end > len(data))
    finally:
        reader.close()


# --- the tcp_echo.pcap generator ------------------------------------------------------------------

def echo_messages() -> list[bytes]:
    """What the client sends, in order (the server echoes each back before the next is sent)."""
    rnd = random.Random(6455)
    return [
        b"hello, echo\n",
        bytes(range(256)) * 4,
        b"x" * 10_000,
        rnd.randbytes(300_000),
        b"bye\n",
    ]


async def _echo_session(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for msg in echo_messages():
            writer.write(msg)
            await writer.drain()
            echoed = await reader.readexactly(len(msg))
            assert echoed == msg
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)


def _free_server_port() -> int:
    """A free port below the ephemeral range, so the server's port looks like a server's."""
    for port in random.Random().sample(range(20000, 30000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def record_tcp_echo(path: str) -> None:
    """Record one loopback echo connection with tcpdump into `path` (needs capture rights)."""
    port = _free_server_port()
    proc = subprocess.Popen(
        ["tcpdump", "-i", "lo", "--immediate-mode", "-B", "262144", "-s", "0", "-w", path,
         f"tcp port {port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()             # "listening on lo, …": the capture is armed
        if b"listening" not in line:
            raise RuntimeError(f"tcpdump did not start: {line!r}")
        time.sleep(1)
        asyncio.run(_echo_session(port))
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stderr is not None:
            sys.stderr.write(proc.stderr.read().decode(errors="replace"))
            proc.stderr.close()


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data",
                                                             "tcp_echo.pcap")
    record_tcp_echo(out)
    print(out, os.path.getsize(out), "bytes")
