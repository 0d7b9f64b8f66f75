"""analyzer.h2 against a real RFC 8441 server: hypercorn 0.18 serving an ASGI app over h2c (prior
knowledge) on a loopback socket, a client made with the `h2` library that records every byte it
sends and receives; the recording fed into H2Session gives the client's WebSocket frames and the
server's answers, byte for byte as the client saw them, decoded by analyzer's own frame decoder."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from analyzer.events import Frame
from analyzer.frames import FrameDecoder
from analyzer.h2 import H2Problem, H2StreamEnd, H2WebSocket
from tests.h2_helpers import CLIENT, SERVER, connect_headers, data_of, feed_all, normalized
from tests.pcapgen import close_payload, frame

hypercorn = pytest.importorskip("hypercorn")
from hypercorn.asyncio import serve  # noqa: E402
from hypercorn.config import Config  # noqa: E402

MASK = b"\x0a\x0b\x0c\x0d"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo WebSocket (subprotocol "chat" when offered); any HTTP request gets a short page."""
    if scope["type"] == "websocket":
        await receive()                                       # websocket.connect
        await send({"type": "websocket.accept",
                    "subprotocol": "chat" if "chat" in scope["subprotocols"] else None})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
                return
            await send({"type": "websocket.send", "text": f"echo {event.get('text')}"})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"plain page " * 10})


@pytest.fixture
def server_port() -> Iterator[int]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(serve(app, config, shutdown_trigger=stop.wait),), daemon=True)
    thread.start()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    yield port
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)


class RecordingClient:
    """An h2 client on a real socket; `chunks` holds what it sent and received, in order."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                         header_encoding=None))
        self.chunks: list[tuple[int, bytes]] = []
        self.received: dict[int, bytes] = {}
        self.responses: dict[int, list[tuple[bytes, bytes]]] = {}
        self.ended: set[int] = set()
        self.connect_enabled = False
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.chunks.append((CLIENT, data))
            self.sock.sendall(data)

    def read_until(self, done: Any) -> None:
        while not done():
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.chunks.append((SERVER, data))
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self.connect_enabled |= 8 in ev.changed_settings and ev.changed_settings[8].new_value == 1
                elif isinstance(ev, h2.events.ResponseReceived):
                    self.responses[ev.stream_id] = list(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.received[ev.stream_id] = self.received.get(ev.stream_id, b"") + ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    self.ended.add(ev.stream_id)
            self.flush()


def server_frames(data: bytes) -> list[Frame]:
    return [f for f in FrameDecoder(from_client=False).feed(data, 1, 0) if isinstance(f, Frame)]


def test_hypercorn_h2c_websockets(server_port: int) -> None:
    client = RecordingClient(server_port)
    client.read_until(lambda: client.connect_enabled)
    for sid in (1, 3):
        client.conn.send_headers(sid, connect_headers(f"/ws/{sid}?token=abc{sid}"))
    client.conn.send_headers(5, [(":method", "GET"), (":scheme", "http"), (":path", "/page"),
                                 (":authority", "example.com")], end_stream=True)
    client.flush()
    client.read_until(lambda: {1, 3} <= client.responses.keys() and 5 in client.ended)
    sent: dict[int, bytes] = {1: b"", 3: b""}
    for i in range(3):
        for sid in (1, 3):
            f = frame(0x1, f"message {i} on {sid}".encode(), mask=MASK)
            client.conn.send_data(sid, f)
            sent[sid] += f
        client.flush()
    client.read_until(lambda: all(client.received.get(s, b"").count(b"echo") == 3 for s in (1, 3)))
    closing = {1: frame(0x8, close_payload(1000, "done"), mask=MASK),
               3: frame(0x1, b"close please", mask=MASK)}
    for sid, f in closing.items():
        client.conn.send_data(sid, f, end_stream=sid == 1)
        sent[sid] += f
    client.flush()
    client.read_until(lambda: all(b"\x88" in client.received[s] for s in (1, 3)))
    client.sock.close()

    events = feed_all(client.chunks)
    whole = normalized(events)
    assert normalized(feed_all(client.chunks, pieces=[1, 5, 700])) == whole
    assert [ev for ev in events if isinstance(ev, H2Problem)] == []
    ws = {ev.stream_id: ev.handshake for ev in events if isinstance(ev, H2WebSocket)}
    assert sorted(ws) == [1, 3]
    for sid, hs in ws.items():
        assert (hs.http_status, hs.ok, hs.upgraded, hs.subprotocol) == (200, True, True, "chat")
        assert hs.path == f"/ws/{sid}?token=<redacted>"
        assert hs.server == "hypercorn-h2"
        assert data_of(events, sid, CLIENT) == sent[sid]
        assert data_of(events, sid, SERVER) == client.received[sid]
    texts = {sid: [f.payload for f in server_frames(data_of(events, sid, SERVER))] for sid in (1, 3)}
    assert texts[1][:3] == [f"echo message {i} on 1".encode() for i in range(3)]
    assert texts[1][3][:2] == close_payload(1000)                 # the server's close answers ours
    assert texts[3] == [*(f"echo message {i} on 3".encode() for i in range(3)), close_payload(4001, "asked")]
    client_frames = FrameDecoder(from_client=True).feed(data_of(events, 3, CLIENT), 1, 0)
    assert [f.payload for f in client_frames if isinstance(f, Frame)][-1] == b"close please"
    # END_STREAM: the client's with its close frame on stream 1, the server's as the client saw them
    assert {(ev.stream_id, ev.direction) for ev in events if isinstance(ev, H2StreamEnd)} == {
        (1, CLIENT), *((sid, SERVER) for sid in client.ended & {1, 3})}
