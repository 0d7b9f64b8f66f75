"""Hostile shapes of the "streams" area (issue 13, items 1, 3 and 18): the TCP reassembler.

- ooo-many-flows (item 1): many TCP connections, each opened with a short client line (so
  none is a half-open flow, which Rule 7 lets go of), missing the server's first 100 bytes and
  then sending 3 segments of 100 bytes that wait behind the hole, interleaved
  connection by connection, so every flow is buffering at once. Scale 1.0: 1,800 flows; scale 50:
  the issue's 90,000 flows x 3 segments (~70 MB), past the total out-of-order cap
  (64 MB / 256 bytes per chunk = 262,144 chunks).
- overlap-conflict, overlap-identical (item 3): one connection whose first byte after the
  handshake is lost, so everything after it waits in the out-of-order buffer; then, per group, a
  1,400-byte range sent as 700 one-byte slivers (every other byte) and then retransmitted whole
  100 times over the slivers. In the conflict shape the retransmissions' bytes differ from the
  slivers', in the identical shape they are the same. Scale s: s groups (scale 1.0 ~ 0.2 MB,
  scale 5 ~ 1 MB).
- time-jump (item 18): two WebSocket connections sending 50 server text frames each, interleaved;
  after the 25th frame of each, one unrelated SYN stamped two hours ahead. Scale s: 2*s
  connections.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

from tests.pcapgen import (
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    SYN,
    Conversation,
    PcapStream,
    frame,
    upgrade_request,
    upgrade_response,
)

#: bytes lost right after each connection's handshake (ooo-many-flows)
OOO_HOLE = 100
#: out-of-order segments per flow and their size (ooo-many-flows)
OOO_SEGMENTS = 3
OOO_SEGMENT = 100
OOO_HELLO = b"hello\n"
#: flows at scale 1.0 (the issue's 90,000 is scale 50)
OOO_FLOWS = 1800

#: bytes per retransmitted segment, and how often each is retransmitted (overlap shapes)
OVERLAP_SEGMENT = 1400
OVERLAP_REPEATS = 100

#: frames per connection and where the outlier comes (time-jump)
JUMP_FRAMES = 50
JUMP_AHEAD_S = 2 * 3600.0
JUMP_TEXT = b"tick %03d"


def _tcp(n: int, t: float, server_port: int = 8080) -> Conversation:
    """Connection number `n` (distinct client address and port), TCP handshake done."""
    conv = Conversation(client=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                        client_port=1024 + n % 60000, server="192.168.0.1", server_port=server_port,
                        t=t, step=0.000001)
    conv.handshake()
    return conv


def _websocket(n: int, t: float, server_port: int = 8080) -> Conversation:
    """Connection number `n`, TCP handshake and WebSocket upgrade done."""
    conv = _tcp(n, t, server_port)
    conv.send(0, upgrade_request(key=SAMPLE_KEY))
    conv.send(1, upgrade_response(accept=SAMPLE_ACCEPT))
    return conv


def ooo_flows(scale: float) -> int:
    return max(1, round(OOO_FLOWS * scale))


def ooo_many_flows(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 1: ooo_flows(scale) connections, all buffering out-of-order data at once."""
    path = directory / f"ooo-many-flows-{scale:g}.pcap"
    n = ooo_flows(scale)
    t = 1_700_000_000.0
    convs = []
    with PcapStream(path) as f:
        for i in range(n):
            conv = _tcp(i, t)
            conv.send(0, OOO_HELLO)
            t = conv.t
            f.flush(conv)
            convs.append(conv)
        body = b"o" * OOO_SEGMENT
        for k in range(OOO_SEGMENTS):
            for conv in convs:
                if k == 0:
                    conv.seq[1] += OOO_HOLE                # the lost bytes: never sent
                conv.t = t
                conv.send(1, body)
                t = conv.t
                f.flush(conv)
    return path


def overlap_groups(scale: float) -> int:
    return max(1, round(scale))


def _overlaps(f: PcapStream, scale: float, differ: bool) -> None:
    conv = _websocket(1, 1_700_000_000.0)
    conv.seq[1] += 1                                      # one byte lost: everything after waits
    base = conv.seq[1]
    for k in range(overlap_groups(scale)):
        start = base + k * OVERLAP_SEGMENT
        whole = bytes([0x61 + k % 26]) * OVERLAP_SEGMENT
        sliver = b"#" if differ else whole[:1]
        for s in range(0, OVERLAP_SEGMENT, 2):
            conv._emit(1, 0x18, sliver, seq=start + s)
        for _ in range(OVERLAP_REPEATS):                  # the retransmissions over the slivers
            conv._emit(1, 0x18, whole, seq=start)
        f.flush(conv)


def overlap_conflict(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 3: retransmissions whose bytes differ from the slivers they overlap."""
    path = directory / f"overlap-conflict-{scale:g}.pcap"
    with PcapStream(path) as f:
        _overlaps(f, scale, differ=True)
    return path


def overlap_identical(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 3: retransmissions that repeat the slivers they overlap byte for byte."""
    path = directory / f"overlap-identical-{scale:g}.pcap"
    with PcapStream(path) as f:
        _overlaps(f, scale, differ=False)
    return path


def jump_connections(scale: float) -> int:
    return max(2, round(2 * scale))


def jump_frames(k: int) -> Iterator[bytes]:
    for i in range(JUMP_FRAMES):
        yield frame(1, JUMP_TEXT % (k * JUMP_FRAMES + i))


def time_jump(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 18: interleaved connections and, halfway through, one SYN stamped two hours ahead."""
    path = directory / f"time-jump-{scale:g}.pcap"
    n = jump_connections(scale)
    t = 1_700_000_000.0
    with PcapStream(path) as f:
        convs = []
        for k in range(n):
            conv = _websocket(k, t, server_port=9000)
            t = conv.t
            f.flush(conv)
            convs.append((conv, jump_frames(k)))
        for i in range(JUMP_FRAMES):
            if i == JUMP_FRAMES // 2:
                stray = Conversation(client="172.16.0.9", client_port=40000, server="192.168.0.1",
                                     server_port=22, t=t + JUMP_AHEAD_S)
                stray._emit(0, SYN)
                f.flush(stray)
            for conv, frames in convs:
                conv.t = t = t + 0.01
                conv.send(1, next(frames))
                f.flush(conv)
    return path

# one process holds every buffering flow (with two, each holds half: the old cost grew with them)
ooo_many_flows.command = ["summary", "{capture}", "--jobs", "1"]  # type: ignore[attr-defined]


SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "ooo-many-flows": ooo_many_flows,
    "overlap-conflict": overlap_conflict,
    "overlap-identical": overlap_identical,
    "time-jump": time_jump,
}

__all__ = ["SHAPES"]
