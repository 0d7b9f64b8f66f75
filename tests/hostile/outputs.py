"""Hostile captures for the outputs (export, report, CLI, stats): issue 13 items 5, 14, 15, 23.

Each shape writes one pcap with `tests.pcapgen` and returns its path; scale 1.0 is what the
regression tests use, larger scales are for the benchmark.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

from tests.pcapgen import Conversation, close_payload, frame, upgrade_request, upgrade_response, write_pcap

MASK = b"\x11\x22\x33\x44"

#: close reasons and text previews that split an unquoted CSV row and start a formula after the CR
CSV_SPLITTERS = ("bye\r=1+1", "ok\r=cmd|' /C calc'!A0", "a\n@SUM(A1)", "x\r\n+2")

#: captured text that would drive a terminal or reorder what is shown around it
CONTROL_TEXT = "ctl\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\x85\x9b31m\x1b[2J"


def _open(conv: Conversation) -> None:
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())


def csv_splitters(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """One connection per CSV_SPLITTERS entry: a client text message of it, then a close with it as
    the reason from the client, echoed by the server (3 frames each)."""
    conv = Conversation()
    copies = max(1, round(scale))
    for i in range(copies):
        for j, text in enumerate(CSV_SPLITTERS):
            conv.client_port = 40000 + (i * len(CSV_SPLITTERS) + j) % 20000
            _open(conv)
            conv.send(0, frame(1, text.encode(), mask=MASK))
            conv.send(0, frame(8, close_payload(1000, text), mask=MASK))
            conv.send(1, frame(8, close_payload(1000, text)))
            conv.fin(0)
            conv.fin(1)
    path = directory / "csv-splitters.pcap"
    write_pcap(path, conv.packets)
    return path


def control_chars(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """One connection whose subprotocol, text message and close reason carry CONTROL_TEXT."""
    conv = Conversation()
    proto = f"Sec-WebSocket-Protocol: {CONTROL_TEXT.replace(chr(27), '')}\r\n"
    conv.handshake()
    conv.send(0, upgrade_request(extra=proto))
    conv.send(1, upgrade_response(extra=proto))
    for _ in range(max(1, round(scale))):
        conv.send(0, frame(1, CONTROL_TEXT.encode(), mask=MASK))
    conv.send(0, frame(8, close_payload(1000, CONTROL_TEXT), mask=MASK))
    conv.send(1, frame(8, close_payload(1000, CONTROL_TEXT)))
    path = directory / "control-chars.pcap"
    write_pcap(path, conv.packets)
    return path


def two_quick_messages(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Two server messages 57 µs apart: no message rate can be measured from that."""
    conv = Conversation()
    _open(conv)
    conv.step = 57e-6
    conv.send(1, frame(1, b"one"))
    conv.send(1, frame(1, b"two"))
    path = directory / "two-quick-messages.pcap"
    write_pcap(path, conv.packets)
    return path


def tiny_frames(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Server frames of 2 bytes each (empty text messages), 1,400 per packet: 20k frames at scale 1
    (about 40 KB of capture; scale 100 gives 2M frames, ~4 MB, the issue's "2-byte frames")."""
    conv = Conversation()
    _open(conv)
    per_packet = 1400
    total = int(20_000 * scale)
    chunk = frame(1, b"") * per_packet
    for _ in range(total // per_packet):
        conv.send(1, chunk)
    rest = total % per_packet
    if rest:
        conv.send(1, frame(1, b"") * rest)
    path = directory / "report-tiny-frames.pcap"
    write_pcap(path, conv.packets)
    return path


# what the benchmark runs on each (tests/hostile/__init__.py): the command whose output is attacked
csv_splitters.command = ["export", "{capture}", "-o", "{out}"]  # type: ignore[attr-defined]
control_chars.command = ["frames", "{capture}"]  # type: ignore[attr-defined]
tiny_frames.command = ["report", "{capture}", "-o", "{out}"]  # type: ignore[attr-defined]

SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "csv-splitters": csv_splitters,
    "control-chars": control_chars,
    "two-quick-messages": two_quick_messages,
    "report-tiny-frames": tiny_frames,
}

__all__ = ["CONTROL_TEXT", "CSV_SPLITTERS", "SHAPES"]

if __name__ == "__main__":  # pragma: no cover - `python -m tests.hostile.outputs NAME DIR SCALE`
    import sys

    name, out, scale = sys.argv[1], pathlib.Path(sys.argv[2]), float(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    print(SHAPES[name](out, scale))
