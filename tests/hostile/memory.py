"""Hostile shapes of the "memory" area (issue 13, items 5, 6 and 8): captures whose tables or kept
payloads grow far faster than the file.

- tiny-frames: back-to-back 2-byte server frames (empty text messages, each a one-frame message,
  so both the frames and the messages table grow), ~700 per TCP segment, on a few connections.
  Scale 1.0 ≈ 0.1 MB of capture (~50,000 frames); the issue's 2, 4, 8 MB are scales 20, 40, 80.
- problem-flood: many connections, each with 1,100 unmasked client frames and 1,100 masked server
  frames (a problem row each: past the 1,000-per-kind-per-connection cap on every connection).
  Scale 1.0: 40 connections (~88,000 problems); scale 25 ≈ the issue's 25 KB .gz.
- deflate-bombs: permessage-deflate messages of zeros, each inflating to more than
  max_message_bytes (16 MiB by default); with payloads=True each used to be kept whole.
  Scale 1.0: 4 bombs; scale 16: the issue's 64 bombs in ~1.1 MB.
"""

from __future__ import annotations

import gzip
import pathlib
import zlib
from collections.abc import Callable

from tests.pcapgen import (
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    Conversation,
    frame,
    upgrade_request,
    upgrade_response,
    write_pcap,
)

SEGMENT = 1400                  # TCP payload bytes per packet
EMPTY_TEXT = b"\x81\x00"        # a whole, empty, unmasked text frame: the smallest message there is
MB = 1 << 20


def _opened(port: int, extra: str = "") -> Conversation:
    conv = Conversation(client_port=port)
    conv.handshake()
    conv.send(0, upgrade_request(key=SAMPLE_KEY, extra=extra))
    conv.send(1, upgrade_response(accept=SAMPLE_ACCEPT, extra=extra))
    return conv


def _send(conv: Conversation, direction: int, data: bytes) -> None:
    for i in range(0, len(data), SEGMENT):
        conv.send(direction, data[i:i + SEGMENT])


def tiny_frames_frames(scale: float) -> int:
    """How many 2-byte frames tiny_frames writes at this scale."""
    return int(50_000 * scale) // 4 * 4


def tiny_frames(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Four connections of back-to-back 2-byte frames (one-frame empty text messages)."""
    per_conn = tiny_frames_frames(scale) // 4
    packets = []
    for port in range(50000, 50004):
        conv = _opened(port)
        _send(conv, 1, EMPTY_TEXT * per_conn)
        conv.fin(0)
        conv.fin(1)
        packets += conv.packets
    packets.sort(key=lambda p: p[0])
    path = directory / f"tiny-frames-{scale:g}.pcap.gz"
    raw = directory / f"tiny-frames-{scale:g}.pcap"
    write_pcap(raw, packets)
    path.write_bytes(gzip.compress(raw.read_bytes(), 9))
    raw.unlink()
    return path


FLOOD_PER_KIND = 1100           # problems of each kind per connection (the per-connection cap is 1,000)


def problem_flood_connections(scale: float) -> int:
    return max(1, int(40 * scale))


def problem_flood(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Many connections, each past the per-connection cap of two problem kinds."""
    client = frame(1, b"") * FLOOD_PER_KIND                      # unmasked client frames
    server = frame(1, b"", mask=b"\x01\x02\x03\x04") * FLOOD_PER_KIND  # masked server frames
    packets = []
    for i in range(problem_flood_connections(scale)):
        conv = _opened(10000 + i)
        conv.t += i * 0.0001
        _send(conv, 0, client)
        _send(conv, 1, server)
        conv.fin(0)
        conv.fin(1)
        packets += conv.packets
    packets.sort(key=lambda p: p[0])
    raw = directory / f"problem-flood-{scale:g}.pcap"
    write_pcap(raw, packets)
    path = directory / f"problem-flood-{scale:g}.pcap.gz"
    path.write_bytes(gzip.compress(raw.read_bytes(), 9))
    raw.unlink()
    return path


def bomb_payload(inflated: int = 17 * MB) -> bytes:
    """A permessage-deflate message body (raw DEFLATE, sync-flushed, tail removed) of zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = comp.compress(bytes(inflated)) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def deflate_bombs_count(scale: float) -> int:
    return max(1, int(4 * scale))


def deflate_bombs(directory: pathlib.Path, scale: float = 1.0, *, inflated: int = 17 * MB) -> pathlib.Path:
    """One permessage-deflate connection whose server sends bombs (each one message, one frame)
    and then one ordinary text message."""
    ext = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
    conv = _opened(50000, ext)
    bomb = frame(2, bomb_payload(inflated), rsv=4)
    for _ in range(deflate_bombs_count(scale)):
        _send(conv, 1, bomb)
    conv.send(1, frame(1, b"after the bombs"))
    conv.fin(0)
    conv.fin(1)
    path = directory / f"deflate-bombs-{scale:g}.pcap"
    write_pcap(path, conv.packets)
    return path


# the benchmark keeps the payloads (what the bombs attack) and writes them where they compress
deflate_bombs.command = ["export", "{capture}", "--payloads", "--format", "parquet",  # type: ignore[attr-defined]
                         "-o", "{out}"]

SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "tiny-frames": tiny_frames,
    "problem-flood": problem_flood,
    "deflate-bombs": deflate_bombs,
}
