"""A small capture built byte by byte for the format tests (Community ID, list columns, Zeek,
EVE, HAR): one WebSocket connection that negotiates a subprotocol and offers two extensions (one
with a quoted comma), sends text, binary, ping/pong and a close handshake, with a Cookie and
Authorization header that no output may show and a User-Agent holding a tab and a backslash;
and one upgrade the server refuses with 404.
"""

from __future__ import annotations

import os

from tests.pcapgen import Conversation, close_payload, frame, upgrade_request, upgrade_response, write_pcap

SECRET = "hunter2-secret"
USER_AGENT = "probe/1.0\t(x\\y)"
OFFERED = "chat.v2, chat.v1"
EXTENSIONS = 'permessage-foo; a=1, x-ext; p="1,2"'
MASK = b"\x11\x22\x33\x44"
TEXT = "héllo, world"
BINARY = bytes([0, 1, 2, 0xFF, 0xFE])


def build(directory: str | os.PathLike[str]) -> str:
    """Write the capture into `directory` and return its path."""
    ok = Conversation(client="192.0.2.10", server="198.51.100.20", client_port=50123, server_port=8080,
                      t=1_700_000_000.0)
    ok.handshake()
    ok.send(0, upgrade_request("/chat?room=a%20b&x=1", extra=(
        f"Sec-WebSocket-Protocol: {OFFERED}\r\nSec-WebSocket-Extensions: {EXTENSIONS}\r\n"
        f"User-Agent: {USER_AGENT}\r\nCookie: session={SECRET}\r\n"
        f"Authorization: Bearer {SECRET}\r\n")))
    ok.send(1, upgrade_response(extra="Sec-WebSocket-Protocol: chat.v1\r\nServer: sample/2\r\n"))
    ok.send(0, frame(1, TEXT.encode(), mask=MASK))
    ok.send(1, frame(2, BINARY))
    ok.send(0, frame(9, b"p", mask=MASK))
    ok.send(1, frame(10, b"p"))
    ok.send(0, frame(8, close_payload(1000, "bye"), mask=MASK))
    ok.send(1, frame(8, close_payload(1000, "bye")))
    ok.fin(1)
    ok.fin(0)

    refused = Conversation(client="192.0.2.10", server="198.51.100.20", client_port=50124, server_port=8080,
                           t=1_700_000_001.0)
    refused.handshake()
    refused.send(0, upgrade_request("/nope"))
    refused.send(1, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    refused.fin(1)
    refused.fin(0)

    path = os.path.join(os.fspath(directory), "formats_sample.pcap")
    write_pcap(path, ok.packets + refused.packets)
    return path
