"""Hostile captures for the session (connection state machine, frame decoders): issue 13 items
10, 13, 19 and 20 (its session side).

Each shape writes one pcap with `tests.pcapgen` and returns its path; scale 1.0 is what the
regression tests use, larger scales are for the benchmark (`benchmarks/hostile.py`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from tests.pcapgen import (
    Conversation,
    PcapStream,
    close_payload,
    frame,
    upgrade_request,
    upgrade_response,
    write_pcap,
)

MASK = b"\x11\x22\x33\x44"

#: short connections at scale 1.0 (the issue's 80,000 is scale 400)
SHORT_CONNECTIONS = 200

#: the cookie value a 302 sets on the decode-as port (item 13): it must reach no table
COOKIE_VALUE = "s3cr3t-session-7f4a9c"
DECODE_AS_PORT = 8080

#: declared and captured payload lengths of the frames cut by the end of the capture (item 19)
CUT_DECLARED = 300
CUT_CAPTURED = 100


def short_connections(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 10: SHORT_CONNECTIONS * scale connections one after another, each a TCP handshake, an
    upgrade, one text message each way, a clean close and both FINs: every session closes long
    before the capture ends, so what the analysis keeps of them is what leaks."""
    path = directory / "short-connections.pcap"
    n = max(1, round(SHORT_CONNECTIONS * scale))
    t = 1_700_000_000.0
    with PcapStream(path) as f:
        for i in range(n):
            conv = Conversation(client=f"10.{1 + (i >> 16) % 250}.{(i >> 8) & 0xFF}.{i & 0xFF}",
                                client_port=1024 + i % 60000, server_port=9000, t=t, step=0.0001)
            conv.handshake()
            conv.send(0, upgrade_request())
            conv.send(1, upgrade_response())
            conv.send(0, frame(1, b"hello %d" % i, mask=MASK))
            conv.send(1, frame(1, b"world %d" % i))
            conv.send(0, frame(8, close_payload(1000), mask=MASK))
            conv.send(1, frame(8, close_payload(1000)))
            conv.fin(0)
            conv.fin(1)
            t = conv.t
            f.flush(conv)
    return path


short_connections.command = ["summary", "{capture}", "--jobs", "1"]  # type: ignore[attr-defined]


def _send(conv: Conversation, direction: int, data: bytes, segment: int | None) -> None:
    step = segment or len(data)
    for i in range(0, len(data), step):
        conv.send(direction, data[i:i + step])


def _http_exchange(conv: Conversation, i: int, segment: int | None) -> None:
    _send(conv, 0, f"GET /login?n={i} HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n".encode(),
          segment)
    _send(conv, 1, (f"HTTP/1.1 302 Found\r\nLocation: /home\r\n"
                    f"Set-Cookie: session={COOKIE_VALUE}; Path=/; HttpOnly\r\nContent-Length: 0\r\n\r\n"
                    ).encode(), segment)


def http_on_decode_as_port(directory: pathlib.Path, scale: float = 1.0,
                           segment: int | None = None) -> pathlib.Path:
    """Item 13: plain HTTP (a GET without Upgrade, a 302 with Set-Cookie) on the port given with
    --port: one connection with its TCP handshake, one picked up mid-stream that starts with the
    response, and one picked up mid-stream that starts with the request (scale repeats these
    three); then one picked up inside a response body, whose client then sends a request with a
    Cookie and gets a 302 with Set-Cookie.
    `segment`: cut every message into TCP segments of this many bytes (1: byte by byte)."""
    conv = Conversation(server_port=DECODE_AS_PORT)
    for i in range(max(1, round(scale))):
        conv.client_port = 41000 + 3 * i
        conv.handshake()
        _http_exchange(conv, i, segment)
        conv.fin(0)
        conv.fin(1)
        # mid-stream, the response first (the capture began after the request)
        conv.client_port += 1
        _send(conv, 1, (f"HTTP/1.1 302 Found\r\nSet-Cookie: session={COOKIE_VALUE}\r\n"
                        "Content-Length: 0\r\n\r\n").encode(), segment)
        _http_exchange(conv, i, segment)
        # mid-stream, a request first
        conv.client_port += 1
        _http_exchange(conv, i, segment)
    # mid-stream inside a response body (not HTTP: frames begin), then a request with a cookie
    # and its response: the connection turns out to be HTTP
    conv.client_port = 40999
    _send(conv, 1, b"<html><body>the end of a page</body></html>\n", segment)
    _send(conv, 0, f"GET /next HTTP/1.1\r\nHost: shop.example\r\nCookie: session={COOKIE_VALUE}\r\n\r\n"
          .encode(), segment)
    _send(conv, 1, (f"HTTP/1.1 302 Found\r\nSet-Cookie: session={COOKIE_VALUE}\r\n"
                    "Content-Length: 0\r\n\r\n").encode(), segment)
    path = directory / f"http-on-decode-as-port{segment or ''}.pcap"
    write_pcap(path, conv.packets)
    return path


http_on_decode_as_port.command = ["frames", "{capture}", "--port", str(DECODE_AS_PORT)]  # type: ignore[attr-defined]


def cut_mid_frame(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 19: RFC 6455 connections whose capture ends inside a frame's payload: the client in a
    masked binary frame, the server in an unmasked text frame (each CUT_DECLARED bytes declared,
    CUT_CAPTURED captured) after one whole message each; scale repeats the connection."""
    conv = Conversation()
    for i in range(max(1, round(scale))):
        conv.client_port = 42000 + i
        conv.handshake()
        conv.send(0, upgrade_request())
        conv.send(1, upgrade_response())
        conv.send(0, frame(1, b"whole", mask=MASK))
        conv.send(1, frame(1, b"whole too"))
        conv.send(0, frame(2, bytes(range(256)) + bytes(CUT_DECLARED - 256), mask=MASK)[:8 + CUT_CAPTURED])
        conv.send(1, frame(1, b"x" * CUT_DECLARED)[:4 + CUT_CAPTURED])
    path = directory / "cut-mid-frame.pcap"
    write_pcap(path, conv.packets)
    return path


def _hixie76_request() -> bytes:
    return (b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\n"
            b"Upgrade: WebSocket\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
            b"Origin: http://example.com\r\n\r\n^n:ds[4U")


def _hixie76_response() -> bytes:
    return (b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Origin: http://example.com\r\nSec-WebSocket-Location: ws://example.com/demo\r\n"
            b"Sec-WebSocket-Protocol: sample\r\n\r\n8jKS'y:G*Co,Wxa-")


def cut_mid_frame_hixie(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 19, hixie-76 (the draft's own example handshake): the client's capture ends inside a
    0x00…0xFF text frame, the server's inside a length-prefixed 0x80 frame declaring CUT_DECLARED
    bytes; scale repeats the connection."""
    conv = Conversation()
    for i in range(max(1, round(scale))):
        conv.client_port = 43000 + i
        conv.handshake()
        conv.send(0, _hixie76_request())
        conv.send(1, _hixie76_response())
        conv.send(0, b"\x00whole\xff")
        conv.send(1, b"\x00whole too\xff")
        conv.send(0, b"\x00" + b"t" * CUT_CAPTURED)
        conv.send(1, b"\x80" + bytes([0x80 | CUT_DECLARED >> 7, CUT_DECLARED & 0x7F]) + b"b" * CUT_CAPTURED)
    path = directory / "cut-mid-frame-hixie.pcap"
    write_pcap(path, conv.packets)
    return path


def wrong_accept(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 20: an RFC 6455 upgrade answered 101 with a wrong Sec-WebSocket-Accept, then a message
    each way and a clean close; and a hixie-76 upgrade whose 16-byte answer is wrong, then a
    message each way and the closing frames; scale repeats the pair."""
    conv = Conversation()
    for i in range(max(1, round(scale))):
        conv.client_port = 44000 + 2 * i
        conv.handshake()
        conv.send(0, upgrade_request())
        conv.send(1, upgrade_response(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
        conv.send(0, frame(1, b"client after a wrong accept", mask=MASK))
        conv.send(1, frame(1, b"server after a wrong accept"))
        conv.send(0, frame(8, close_payload(1000), mask=MASK))
        conv.send(1, frame(8, close_payload(1000)))
        conv.fin(0)
        conv.fin(1)
        conv.client_port += 1
        conv.handshake()
        conv.send(0, _hixie76_request())
        conv.send(1, _hixie76_response()[:-16] + b"0123456789abcdef")
        conv.send(0, b"\x00client after a wrong answer\xff")
        conv.send(1, b"\x00server after a wrong answer\xff")
        conv.send(0, b"\xff\x00")
        conv.send(1, b"\xff\x00")
        conv.fin(0)
        conv.fin(1)
    path = directory / "wrong-accept.pcap"
    write_pcap(path, conv.packets)
    return path


SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "short-connections": short_connections,
    "http-on-decode-as-port": http_on_decode_as_port,
    "cut-mid-frame": cut_mid_frame,
    "cut-mid-frame-hixie": cut_mid_frame_hixie,
    "wrong-accept": wrong_accept,
}
