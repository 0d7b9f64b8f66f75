"""Which exceptions the handshake parser turns into problems and which it lets through.

Bad input becomes Problem events of the kind it deserves (http-malformed for a bad header line,
a bad chunked body or an invalid hixie-76 key). A bug of ours, made here by patching a helper to
raise, propagates out of feed/gap/finish (the connection layer reports it as internal-error,
issue 14 item 5) and never reads as http-malformed; the parser is then finished and holds no
budget. The last tests reach the all-blank branches of the blank-line skipping with input.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import analyzer.handshake as handshake
from analyzer.budget import PayloadBudget
from analyzer.events import HandshakeDone, HandshakeEvent, NotWebSocket, Problem
from analyzer.handshake import HandshakeParser
from analyzer.protocol import ProblemKind

# RFC 6455 §1.2 / §4.2.2: the sample key and its accept value.
UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
# draft-hixie-thewebsocketprotocol-76 with a Key1 that has digits but no spaces (invalid).
HIXIE76_BAD_KEY = (b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key1: 4@146546xW%0l15\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
                   b"Upgrade: WebSocket\r\nOrigin: http://example.com\r\n\r\n^n:ds[4U")
HIXIE76_RESP = (b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
                b"Connection: Upgrade\r\n\r\n8jKS'y:G*Co,Wxa-")
FRAME_C = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"        # RFC 6455 §5.7 masked "Hello"


def feed_all(parser: HandshakeParser, client: bytes, server: bytes) -> list[HandshakeEvent]:
    return parser.feed(0, client, 1, 1000) + parser.feed(1, server, 2, 2000)


def problems(events: list[HandshakeEvent]) -> list[tuple[ProblemKind, str]]:
    return [(e.kind, e.detail) for e in events if isinstance(e, Problem)]


# --- bad input: problems of the right kind -------------------------------------------------------

@pytest.mark.parametrize(("client", "server", "detail"), [
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"",
     "request headers: bad header line 'no colon here'"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"",
     "request body: chunked body: bad chunk-size line b'zz\\r'"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\n",
     "response body: chunked body: chunk data not followed by CRLF"),
    (b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", b"",
     "request: conflicting Content-Length '1, 2'"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
     "response: bad Content-Length '-1'"),
])
def test_malformed_input_is_http_malformed(client: bytes, server: bytes, detail: str) -> None:
    events = feed_all(HandshakeParser(), client, server)
    assert problems(events) == [(ProblemKind.HTTP_MALFORMED, detail)]
    assert isinstance(events[-1], NotWebSocket)


def test_invalid_hixie76_key_is_http_malformed_and_the_handshake_goes_on() -> None:
    events = feed_all(HandshakeParser(), HIXIE76_BAD_KEY, HIXIE76_RESP)
    assert problems(events) == [(ProblemKind.HTTP_MALFORMED,
                                 "invalid hixie-76 key '4@146546xW%0l15': 10 digits, 0 spaces")]
    (done,) = [e for e in events if isinstance(e, HandshakeDone)]
    assert (done.handshake.upgraded, done.handshake.accept_valid) == (True, None)


# --- bugs of ours: they propagate ---------------------------------------------------------------

def _boom(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("boom")


def _value_error(*_args: object, **_kwargs: object) -> None:
    raise ValueError("a bug, not bad input")


# (helper patched to fail, what it raises, the calls that reach it; the last one must raise)
CASES: list[tuple[str, Callable[..., None], type[Exception],
                  Callable[[HandshakeParser], object]]] = [
    ("_parse_fields", _boom, RuntimeError, lambda p: p.feed(0, UPGRADE, 1, 1)),
    ("_looks_like", _boom, RuntimeError, lambda p: p.feed(0, UPGRADE, 1, 1)),
    # the catch of a hixie-76 key's ValueError is that narrow: a ValueError elsewhere is a bug
    ("accept_key", _value_error, ValueError, lambda p: feed_all(p, UPGRADE, SWITCH)),
    ("classify", _boom, RuntimeError, lambda p: (p.feed(0, UPGRADE, 1, 1), p.gap(1))),
    ("redact_target", _boom, RuntimeError, lambda p: (p.feed(0, UPGRADE, 1, 1), p.finish())),
]


@pytest.mark.parametrize(("helper", "fail", "raised", "drive"), CASES, ids=[c[0] for c in CASES])
def test_internal_failure_propagates_and_releases_the_parser(
        monkeypatch: pytest.MonkeyPatch, helper: str, fail: Callable[..., None],
        raised: type[Exception], drive: Callable[[HandshakeParser], object]) -> None:
    budget = PayloadBudget(1 << 20)
    parser = HandshakeParser(budget=budget)
    monkeypatch.setattr(handshake, helper, fail)
    with pytest.raises(raised):
        drive(parser)
    # finished, no event half-made, the budget share given back
    assert budget.held == 0
    monkeypatch.undo()
    assert parser.feed(0, UPGRADE, 3, 3) == [] and parser.feed(1, SWITCH, 4, 4) == []
    assert parser.gap(0) == [] and parser.finish() == []


def test_internal_failure_after_buffering_gives_back_what_it_held(
        monkeypatch: pytest.MonkeyPatch) -> None:
    budget = PayloadBudget(1 << 20)
    parser = HandshakeParser(budget=budget)
    assert parser.feed(0, UPGRADE[:40], 1, 1) == []
    assert budget.held == 40
    monkeypatch.setattr(handshake, "_parse_fields", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        parser.feed(0, UPGRADE[40:], 2, 2)
    assert budget.held == 0


# --- blank lines before a message (RFC 7230 §3.5), all-blank buffers included ---------------------

@pytest.mark.parametrize(("server", "reason"), [
    (b"\r\n\r\n\n", "no response"),                     # blank lines only: no answer begun
    (b"\r\n\r\nHTTP/1.1 101", "stream ended before the handshake completed"),
])
def test_server_blank_lines_before_finish(server: bytes, reason: str) -> None:
    parser = HandshakeParser()
    assert feed_all(parser, UPGRADE, server) == []
    events = parser.finish()
    detail = "GET /chat: upgrade request without response" if reason == "no response" else reason
    assert problems(events) == [(ProblemKind.HANDSHAKE_NO_RESPONSE, detail)]
    (done,) = [e for e in events if isinstance(e, HandshakeDone)]
    assert (done.handshake.http_status, done.handshake.failure_reason) == (None, reason)


@pytest.mark.parametrize("piece", [1, 2, 7, 1000])
def test_blank_lines_between_keepalive_messages(piece: int) -> None:
    client = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" + b"\r\n\r\n" + UPGRADE + FRAME_C
    server = b"HTTP/1.1 204 No Content\r\n\r\n" + b"\r\n\n" + SWITCH
    parser = HandshakeParser()
    events: list[HandshakeEvent] = []
    # the client's blank lines arrive alone, while its side has nothing else buffered
    for i in range(0, len(client), piece):
        events += parser.feed(0, client[i:i + piece], 1, 1)
    for i in range(0, len(server), piece):
        events += parser.feed(1, server[i:i + piece], 2, 2)
    (done,) = events
    assert isinstance(done, HandshakeDone) and done.handshake.ok
    assert done.trailing == (FRAME_C, b"")
