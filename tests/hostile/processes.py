"""Hostile shapes for the process side (issue 13 item 24): a capture that keeps a worker busy.

`busy` is one WebSocket connection whose server sends deflate bombs: small, cheap to write, slow
to analyse (about 1.2 s of CPU per scale unit), so that a test can interrupt a parallel analysis
while its worker process is surely running (the tests use INTERRUPT_SCALE: the issue's worker ran
~53 s; the benchmark's `summary` on one such capture measures only the analysis, no worker).
"""

from __future__ import annotations

import functools
import pathlib
import zlib
from collections.abc import Callable

from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

#: Deflate bombs per scale unit of `busy` (each ~16 KB on the wire, ~60 ms of CPU to inflate).
BOMBS_PER_SCALE = 20
#: The scale the interrupt tests use: ~12 s of CPU per capture, far more than they let it run.
INTERRUPT_SCALE = 10.0
_EXTENSION = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


@functools.cache
def _bomb_frame() -> bytes:
    """A compressed binary frame that inflates to 16 MiB of zeros (the default message limit)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(bytes(16 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return frame(0x2, data[:-4], rsv=4)


def busy(folder: pathlib.Path, scale: float, name: str = "busy.pcap") -> pathlib.Path:
    """One permessage-deflate connection whose server sends `scale` × 20 deflate bombs (0.33 MB of
    capture per unit, ~1.2 s of CPU), little memory (each message stops at the limit)."""
    conv = Conversation(client_port=50000, server_port=9000)
    conv.handshake()
    conv.send(0, upgrade_request(extra=_EXTENSION))
    conv.send(1, upgrade_response(extra=_EXTENSION))
    bomb = _bomb_frame()
    for _ in range(max(1, int(BOMBS_PER_SCALE * scale))):
        for k in range(0, len(bomb), 1400):
            conv.send(1, bomb[k:k + 1400])
    conv.fin(1)
    conv.fin(0)
    path = folder / name
    write_pcap(path, conv.packets)
    return path


SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "busy": busy,
}
