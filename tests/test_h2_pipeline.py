"""WebSockets over HTTP/2 (RFC 8441) on the connection layer: HTTP/2 recognised by the client's
preface (h2c prior knowledge, or inside TLS), each WebSocket stream one connections row with its
own conn_id and h2_stream_id on one tcp_id, frames and messages as over HTTP/1.1. The wire bytes
are made by python-hyper's h2 state machines (client and server), the frames inside by pcapgen."""

from __future__ import annotations

from pathlib import Path

import h2.config
import h2.connection
import h2.settings
import pytest

import analyzer
from tests.pcapgen import Conversation, close_payload, frame, write_pcap

MASK = b"\x0a\x0b\x0c\x0d"


class _Wire:
    """An HTTP/2 client and server talking: what each sends, in order, as (direction, bytes)."""

    def __init__(self, *, enable_connect: bool = True) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.flow: list[tuple[int, bytes]] = []
        self.client.initiate_connection()
        preface = self.client.data_to_send()
        self.server.initiate_connection()
        if enable_connect:
            self.server.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        settings = self.server.data_to_send()
        self.flow += [(1, settings), (0, preface)]      # the server's SETTINGS come first
        self.client.receive_data(settings)
        self.server.receive_data(preface)
        self._out(0)

    def _out(self, direction: int) -> None:
        """What `direction` has to send, then the answers, until both are quiet."""
        conns = (self.client, self.server)
        quiet = 0
        while quiet < 2:
            data = conns[direction].data_to_send()
            if data:
                self.flow.append((direction, data))
                conns[1 - direction].receive_data(data)
                quiet = 0
            else:
                quiet += 1
            direction = 1 - direction

    def connect(self, stream_id: int, path: str, *, protocol: str | None = None, status: int = 200) -> None:
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                   (":path", path), (":authority", "example.test"), ("sec-websocket-version", "13"),
                   ("origin", "http://example.test")]
        if protocol:
            headers.append(("sec-websocket-protocol", protocol))
        self.client.send_headers(stream_id, headers)
        self._out(0)
        answer = [(":status", str(status))] + ([("sec-websocket-protocol", protocol)] if protocol else [])
        self.server.send_headers(stream_id, answer, end_stream=status != 200)
        self._out(1)

    def get(self, stream_id: int, path: str) -> None:
        self.client.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                             (":authority", "example.test")], end_stream=True)
        self._out(0)
        self.server.send_headers(stream_id, [(":status", "200"), ("content-type", "text/plain")])
        self.server.send_data(stream_id, b"not a websocket", end_stream=True)
        self._out(1)

    def ws(self, direction: int, stream_id: int, data: bytes, end: bool = False) -> None:
        conn = self.client if direction == 0 else self.server
        conn.send_data(stream_id, data, end_stream=end)
        self._out(direction)


def _two_websockets() -> _Wire:
    w = _Wire()
    w.connect(1, "/chat?token=secret123", protocol="chat")
    w.get(3, "/index.html")
    w.connect(5, "/feed")
    for i in range(3):
        w.ws(0, 1, frame(1, f"chat {i}".encode(), mask=MASK))
        w.ws(0, 5, frame(1, f"feed {i}".encode(), mask=MASK))
        w.ws(1, 5, frame(2, bytes([i]) * 10))
        w.ws(1, 1, frame(1, f"CHAT {i}".encode()))
    w.ws(0, 1, frame(8, close_payload(1000), mask=MASK))
    w.ws(1, 1, frame(8, close_payload(1000)), end=True)
    w.ws(0, 1, b"", end=True)
    w.ws(1, 5, frame(8, close_payload(4001, "bye")))
    w.ws(0, 5, frame(8, close_payload(4001), mask=MASK), end=True)
    w.ws(1, 5, b"", end=True)
    return w


def _pcap(tmp_path: Path, flow: list[tuple[int, bytes]], segment: int | None = None) -> Path:
    tcp = Conversation(client_port=51000, server_port=8080)
    tcp.handshake()
    for direction, data in flow:
        step = segment or len(data)
        for i in range(0, len(data), step):
            tcp.send(direction, data[i:i + step])
    tcp.fin(0)
    tcp.fin(1)
    path = tmp_path / "h2c.pcap"
    write_pcap(path, tcp.packets)
    return path


@pytest.mark.parametrize("segment", [None, 1, 13])
def test_two_websockets_multiplexed_on_one_h2c_connection(tmp_path: Path, segment) -> None:
    a = analyzer.analyze(_pcap(tmp_path, _two_websockets().flow, segment))
    c = a.connections
    assert list(c.conn_id) == [1, 2] and list(c.tcp_id) == [1, 1]
    assert list(c.transport) == ["h2c", "h2c"] and list(c.h2_stream_id) == [1, 5]
    assert list(c.path) == ["/chat?token=<redacted>", "/feed"]
    assert c.subprotocol.iloc[0] == "chat" and c.subprotocol.isna().iloc[1]
    assert list(c.close_code) == [1000, 4001] and list(c.close_status) == ["clean", "clean"]
    assert list(c.close_initiator) == ["client", "server"]
    assert c.accept_valid.isna().all() and c.handshake_ok.all() and list(c.version) == [13, 13]
    m = a.messages
    assert list(m[m.conn_id == 1].preview) == [f"{w} {i}" for i in range(3) for w in ("chat", "CHAT")]
    assert list(m[m.conn_id == 2]["size"]) == [6, 10] * 3
    assert a.problems.empty
    s = a.summary()
    assert s["websocket_connections"] == 2 and s["connections_by_transport"] == {"h2c": 2}
    assert "over h2c 2" in str(s)


def test_a_refused_connect_is_a_failed_handshake_with_a_problem(tmp_path: Path) -> None:
    w = _Wire()
    w.connect(1, "/nope", status=403)
    a = analyzer.analyze(_pcap(tmp_path, w.flow))
    c = a.connections.iloc[0]
    assert (c.transport, c.h2_stream_id, c.http_status, bool(c.handshake_ok)) == ("h2c", 1, 403, False)
    assert c.close_status == "handshake-failed"
    assert list(a.problems.kind) == ["h2-connect-refused"]


def test_plain_http2_without_websocket_is_not_listed(tmp_path: Path) -> None:
    w = _Wire()
    w.get(1, "/a")
    w.get(3, "/b")
    a = analyzer.analyze(_pcap(tmp_path, w.flow))
    assert a.connections.empty and a.problems.empty


def test_websocket_over_http2_inside_tls(tmp_path: Path) -> None:
    """ALPN h2: the plaintext is HTTP/2, the server's SETTINGS first; transport "h2"."""
    from tests import tls_helpers
    tls = tls_helpers.tls13(alpn=b"h2")
    for direction, data in _two_websockets().flow:
        tls.app(direction, data)
    path = _pcap(tmp_path, tls.flow)
    keys = tmp_path / "keys.log"
    keys.write_text(tls.keylog)
    a = analyzer.analyze(path, keylog=keys)
    c = a.connections
    assert list(c.transport) == ["h2", "h2"] and list(c.h2_stream_id) == [1, 5]
    assert list(c.alpn) == ["h2", "h2"] and c.decrypted.all()
    assert len(a.messages) == 12 and a.problems.empty


def test_websocket_on_http2_reached_by_an_h2c_upgrade(tmp_path: Path) -> None:
    """HTTP/1.1 `Upgrade: h2c` (RFC 7540 §3.2), answered 101; the upgraded GET is stream 1 and
    a WebSocket opens on stream 3 by extended CONNECT."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    settings = client.initiate_upgrade_connection()
    server.initiate_upgrade_connection(settings)
    server.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    request = (b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    switched = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    w = _Wire.__new__(_Wire)
    w.client, w.server, w.flow = client, server, [(0, request)]
    first = server.data_to_send()
    w.flow.append((1, switched + first))
    client.receive_data(first)
    w._out(0)
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"hello over h2c", end_stream=True)
    w._out(1)
    w.connect(3, "/ws")
    w.ws(0, 3, frame(1, b"after the upgrade", mask=MASK))
    w.ws(1, 3, frame(1, b"AFTER THE UPGRADE"))
    w.ws(0, 3, frame(8, close_payload(1000), mask=MASK))
    w.ws(1, 3, frame(8, close_payload(1000)), end=True)
    w.ws(0, 3, b"", end=True)
    a = analyzer.analyze(_pcap(tmp_path, w.flow, 5))
    c = a.connections
    assert list(c.transport) == ["h2c"] and list(c.h2_stream_id) == [3] and list(c.close_status) == ["clean"]
    assert list(a.messages.preview) == ["after the upgrade", "AFTER THE UPGRADE"]
    assert a.problems.empty
