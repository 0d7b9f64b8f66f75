"""HTTP/2 conversations made by python-hyper's `h2` (a real client and a real server state
machine), recorded as the bytes each side sent, for tests/test_h2.py; and the feeding of such
recordings into analyzer.h2.H2Session in pieces."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import h2.config
import h2.connection
import h2.settings

from analyzer.h2 import H2Data, H2Out, H2Session

CLIENT, SERVER = 0, 1
Chunk = tuple[int, bytes]                   # direction, bytes as sent

CONNECT_HEADERS = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                   (":path", "/chat?token=x"), (":authority", "example.com"),
                   ("sec-websocket-version", "13"), ("sec-websocket-protocol", "chat, superchat"),
                   ("origin", "https://example.com"), ("user-agent", "h2-test/1"),
                   ("cookie", "session=s3cret")]
GET_HEADERS = [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
               (":authority", "example.com"), ("user-agent", "h2-test/1"), ("cookie", "session=s3cret")]


def connect_headers(path: str = "/chat?token=x", **extra: str) -> list[tuple[str, str]]:
    headers = [(k, path if k == ":path" else v) for k, v in CONNECT_HEADERS]
    return headers + [(k.replace("_", "-"), v) for k, v in extra.items()]


class Wire:
    """A client and a server H2Connection joined back to back; `chunks` records, in order, every
    flight of bytes one of them sent (each a packet of the capture, record_no = its index + 1)."""

    def __init__(self, *, enable_connect: bool = True, validate: bool = True) -> None:
        cfg = {"header_encoding": None, "validate_outbound_headers": validate,
               "validate_inbound_headers": validate}
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, **cfg))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, **cfg))
        self.chunks: list[Chunk] = []
        self.client.initiate_connection()
        self.server.initiate_connection()
        if enable_connect:
            self.server.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        self.pump()

    def pump(self) -> None:
        """Deliver what each side has to send until both are quiet."""
        while True:
            moved = False
            for direction, sender, receiver in ((CLIENT, self.client, self.server),
                                                (SERVER, self.server, self.client)):
                data = sender.data_to_send()
                if data:
                    self.chunks.append((direction, data))
                    receiver.receive_data(data)
                    moved = True
            if not moved:
                return

    def raw(self, direction: int, data: bytes) -> None:
        """Bytes put on the wire as they are (not given to the peer's state machine)."""
        self.chunks.append((direction, data))


def feed_all(chunks: Sequence[Chunk], *, pieces: Iterable[int] | None = None, client_dir: int = CLIENT,
             gaps: Sequence[int] = ()) -> list[H2Out]:
    """Feed recorded chunks into a new H2Session (each chunk cut into pieces of the sizes drawn
    from `pieces`, cycled; whole when None), then finish it. Chunk i is record i + 1 at i µs;
    a gap is reported before the chunks whose indices are in `gaps` (their bytes are not fed)."""
    session = H2Session(client_dir)
    out: list[H2Out] = []
    sizes = list(pieces) if pieces is not None else []
    k = 0
    for i, (direction, data) in enumerate(chunks):
        wire_dir = direction if client_dir == CLIENT else 1 - direction
        if i in gaps:
            out += session.gap(wire_dir, i + 1, i * 1000)
            continue
        pos = 0
        while pos < len(data):
            size = sizes[k % len(sizes)] if sizes else len(data)
            k += 1
            out += session.feed(wire_dir, data[pos:pos + size], i + 1, i * 1000)
            pos += size
    out += session.finish(len(chunks) + 1, len(chunks) * 1000)
    return out


def random_pieces(seed: int, total: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice((1, 2, 3, 7, 9, 10, 50, 1000, 20000)) for _ in range(max(1, total // 4))]


def normalized(events: Sequence[H2Out]) -> list[object]:
    """Events with consecutive H2Data of one stream, direction and record joined (how a feed is
    cut changes only where H2Data are split)."""
    out: list[object] = []
    for ev in events:
        if (isinstance(ev, H2Data) and out and isinstance(out[-1], H2Data)
                and out[-1][:2] == ev[:2] and out[-1].record_no == ev.record_no):
            out[-1] = out[-1]._replace(data=out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def data_of(events: Iterable[H2Out], stream_id: int, direction: int) -> bytes:
    return b"".join(ev.data for ev in events
                    if isinstance(ev, H2Data) and ev.stream_id == stream_id and ev.direction == direction)
