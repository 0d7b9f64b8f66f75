"""Tests for analyzer/handshake.py: draft vectors, split invariance, real captures, failures, fuzz."""

from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.events import DeflateParams, HandshakeDone, NotWebSocket, Problem
from analyzer.handshake import (
    HandshakeParser,
    accept_key,
    classify,
    deflate_params,
    hixie76_answer,
    parse_extensions,
)
from analyzer.protocol import ProblemKind

DATA = Path(__file__).parent / "data" / "handshakes"

# --- the drafts' own byte layouts ---------------------------------------------------------------

# draft-hixie-thewebsocketprotocol-75 §1.2 (WebSocket-Origin / WebSocket-Location, no keys).
HIXIE75_REQ = (b"GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
               b"Host: example.com\r\nOrigin: http://example.com\r\nWebSocket-Protocol: sample\r\n\r\n")
HIXIE75_RESP = (b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
                b"Connection: Upgrade\r\nWebSocket-Origin: http://example.com\r\n"
                b"WebSocket-Location: ws://example.com/demo\r\nWebSocket-Protocol: sample\r\n\r\n")

# draft-hixie-thewebsocketprotocol-76 §1.3: key3 "^n:ds[4U", answer "8jKS'y:G*Co,Wxa-".
HIXIE76_HEAD = (b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\nSec-WebSocket-Protocol: sample\r\n"
                b"Upgrade: WebSocket\r\nSec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
                b"Origin: http://example.com\r\n")
HIXIE76_REQ = HIXIE76_HEAD + b"\r\n^n:ds[4U"
HIXIE76_RESP = (b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n"
                b"Sec-WebSocket-Location: ws://example.com/demo\r\nSec-WebSocket-Protocol: sample\r\n"
                b"\r\n8jKS'y:G*Co,Wxa-")

# draft-ietf-hybi-thewebsocketprotocol-00 (= hixie-76) §5.2 worked keys: answer "fQJ,fN/4F4!~K~MH".
HYBI00_REQ = (b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key1: 18x 6]8vM;54 *(5:  {   U1]8  z [  8\r\n"
              b"Sec-WebSocket-Key2: 1_ tx7X d  <  nw  334J702) 7]o}` 0\r\n"
              b"Upgrade: WebSocket\r\nOrigin: http://example.com\r\n\r\nTm[K T2u")
HYBI00_RESP = (b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Origin: http://example.com\r\n"
               b"Sec-WebSocket-Location: ws://example.com/demo\r\n\r\nfQJ,fN/4F4!~K~MH")


def hybi_req(version: int, origin_field: str = "Sec-WebSocket-Origin") -> bytes:
    """The request of draft-ietf-hybi-thewebsocketprotocol-04..17 §1.2 for one version number."""
    return (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + f"{origin_field}: http://example.com\r\n".encode()
            + b"Sec-WebSocket-Protocol: chat, superchat\r\n"
            + f"Sec-WebSocket-Version: {version}\r\n\r\n".encode())


HYBI_RESP = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
# hybi-04 §1.3 adds the server nonce (the draft prints Accept "me89jWimTRKTWwrS3aRrL53YZSo=",
# which is not base64(SHA-1(key + GUID)); libwebsockets and the later drafts compute it as below).
HYBI04_RESP = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
               b"Sec-WebSocket-Nonce: AQIDBAUGBwgJCgsMDQ4PEC==\r\nSec-WebSocket-Protocol: chat\r\n\r\n")

# RFC 6455 §1.2, byte for byte.
RFC6455_REQ = hybi_req(13, "Origin")

HIXIE_FRAMES_C, HIXIE_FRAMES_S = b"\x00hi\xff", b"\x00Hello\xff\xff\x00"
HYBI_FRAMES_C = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"     # RFC 6455 §5.7 masked "Hello"
HYBI_FRAMES_S = b"\x81\x05\x48\x65\x6c\x6c\x6f\x89\x00"             # "Hello" + ping
HYBI04_FRAMES_S = b"\x84\x05Hello"                                  # hybi-04..06 text opcode 4

# name, client bytes, server bytes, version, draft, accept_valid, subprotocol, frames (c, s)
VECTORS = [
    ("hixie-75", HIXIE75_REQ, HIXIE75_RESP, -1, "hixie-75", None, "sample",
     HIXIE_FRAMES_C, HIXIE_FRAMES_S),
    ("hixie-76", HIXIE76_REQ, HIXIE76_RESP, 0, "hixie-76", True, "sample",
     HIXIE_FRAMES_C, HIXIE_FRAMES_S),
    ("hybi-00", HYBI00_REQ, HYBI00_RESP, 0, "hixie-76", True, None, HIXIE_FRAMES_C, HIXIE_FRAMES_S),
    ("hybi-02", HIXIE76_HEAD + b"Sec-WebSocket-Draft: 2\r\n\r\n^n:ds[4U", HIXIE76_RESP, 0, "hybi-02",
     True, "sample", HIXIE_FRAMES_C, b"\x80\x05Hello"),
    ("hybi-03", HIXIE76_HEAD + b"Sec-WebSocket-Draft: 3\r\n\r\n^n:ds[4U", HIXIE76_RESP, 0, "hybi-03",
     True, "sample", HIXIE_FRAMES_C, b"\x80\x05Hello"),
    ("hybi-04", hybi_req(4), HYBI04_RESP, 4, "hybi-04", True, "chat", HYBI_FRAMES_C,
     HYBI04_FRAMES_S),
    ("hybi-05", hybi_req(5), HYBI_RESP, 5, "hybi-05", True, "chat", HYBI_FRAMES_C, HYBI04_FRAMES_S),
    ("hybi-06", hybi_req(6), HYBI_RESP, 6, "hybi-06", True, "chat", HYBI_FRAMES_C, HYBI04_FRAMES_S),
    ("hybi-07", hybi_req(7), HYBI_RESP, 7, "hybi-07", True, "chat", HYBI_FRAMES_C, HYBI_FRAMES_S),
    ("hybi-08", hybi_req(8), HYBI_RESP, 8, "hybi-08", True, "chat", HYBI_FRAMES_C, HYBI_FRAMES_S),
    ("rfc6455", RFC6455_REQ, HYBI_RESP, 13, "rfc6455", True, "chat", HYBI_FRAMES_C, HYBI_FRAMES_S),
    ("unknown-9", hybi_req(9, "Origin"), HYBI_RESP, 9, "unknown", True, "chat", HYBI_FRAMES_C,
     HYBI_FRAMES_S),
]


# --- a caller model: what the pipeline does with the events ---------------------------------------

class Run:
    """Feeds a parser like the pipeline: after HandshakeDone(upgraded=True) bytes go to the frames."""

    def __init__(self, **kwargs: int) -> None:
        self.parser = HandshakeParser(**kwargs)
        self.events: list = []
        self.after: list[bytearray] = [bytearray(), bytearray()]
        self.done = False

    def feed(self, direction: int, data: bytes, record_no: int = 1, ts_ns: int = 1000) -> None:
        if self.done:
            self.after[direction] += data
            return
        for event in self.parser.feed(direction, data, record_no, ts_ns):
            self.events.append(event)
            if isinstance(event, HandshakeDone) and event.handshake.upgraded:
                self.done = True

    def finish(self) -> None:
        if not self.done:
            self.events += self.parser.finish()

    @property
    def handshakes(self) -> list[HandshakeDone]:
        return [e for e in self.events if isinstance(e, HandshakeDone)]

    @property
    def kinds(self) -> list[ProblemKind]:
        return [e.kind for e in self.events if isinstance(e, Problem)]

    def frames(self, direction: int) -> bytes:
        """The bytes the frame decoder of this direction gets: trailing + what came later."""
        done = [h for h in self.handshakes if h.handshake.upgraded]
        assert done, self.events
        return done[0].trailing[direction] + bytes(self.after[direction])

    def summary(self) -> tuple:
        """Everything but the trailing split, which depends on how the bytes were cut."""
        out = []
        for e in self.events:
            if isinstance(e, HandshakeDone):
                out.append(("done", e.handshake, e.client_direction))
            elif isinstance(e, Problem):
                out.append(("problem", e.kind, e.detail))
            else:
                out.append(("not-ws", e.reason))
        return tuple(out)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def run(client: list[bytes], server: list[bytes], *, client_dir: int = 0, **kw: int) -> Run:
    """Client pieces first (record 1), then server pieces (record 2)."""
    r = Run(**kw)
    for p in client:
        r.feed(client_dir, p, 1, 1000)
    for p in server:
        r.feed(1 - client_dir, p, 2, 2000)
    return r


# --- vectors --------------------------------------------------------------------------------------

def test_accept_key_rfc6455_example() -> None:
    # RFC 6455 §1.3: dGhlIHNhbXBsZSBub25jZQ== → s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert accept_key(b" dGhlIHNhbXBsZSBub25jZQ== ") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_hixie76_answer_examples() -> None:
    assert hixie76_answer("4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", b"^n:ds[4U") == b"8jKS'y:G*Co,Wxa-"
    assert hixie76_answer("18x 6]8vM;54 *(5:  {   U1]8  z [  8", "1_ tx7X d  <  nw  334J702) 7]o}` 0",
                          b"Tm[K T2u") == b"fQJ,fN/4F4!~K~MH"


@pytest.mark.parametrize("key1", [
    "12345",                     # no space
    "no digits here",            # no digit
    "1 2 3",                     # 123 is not a multiple of 2 spaces
    "9999999999 9",              # 99999999999 / 1 does not fit 32 bits
])
def test_hixie76_answer_rejects_bad_keys(key1: str) -> None:
    with pytest.raises(ValueError):
        hixie76_answer(key1, "12998 5 Y3 1  .P00", b"^n:ds[4U")


def test_hixie76_answer_needs_8_byte_key3() -> None:
    assert len(hixie76_answer("1 2", "3 4", b"12345678")) == 16
    with pytest.raises(ValueError):
        hixie76_answer("1 2", "3 4", b"short")


def test_hixie76_invalid_key_in_a_handshake_is_a_problem_not_a_crash() -> None:
    req = HIXIE76_REQ.replace(b"4 @1  46546xW%0l 1 5", b"nospaces123")
    r = run([req], [HIXIE76_RESP])
    hs = r.handshakes[0].handshake
    assert (hs.draft, hs.ok, hs.accept_valid) == ("hixie-76", True, None)
    assert r.kinds == [ProblemKind.HTTP_MALFORMED]


@pytest.mark.parametrize("vec", VECTORS, ids=[v[0] for v in VECTORS])
def test_draft_vector_whole(vec: tuple) -> None:
    _name, creq, sresp, version, draft, accept_valid, subprotocol, cframes, sframes = vec
    r = run([creq + cframes], [sresp + sframes])
    assert len(r.handshakes) == 1, r.events
    done = r.handshakes[0]
    hs = done.handshake
    assert (hs.version, hs.draft, hs.ok, hs.upgraded, hs.http_status) == (version, draft, True, True, 101)
    assert hs.accept_valid is accept_valid
    assert hs.subprotocol == subprotocol
    assert done.client_direction == 0
    assert done.trailing == (cframes, sframes)
    assert r.kinds == []
    assert hs.failure_reason is None
    assert hs.request_record_no == 1 and hs.response_record_no == 2
    assert hs.request_ts_ns == 1000 and hs.response_ts_ns == 2000


@pytest.mark.parametrize("vec", VECTORS, ids=[v[0] for v in VECTORS])
def test_draft_vector_split_invariance(vec: tuple) -> None:
    """Every cut point of each direction, and one byte at a time: same events, same frames."""
    _, creq, sresp, *_, cframes, sframes = vec
    client, server = creq + cframes, sresp + sframes
    ref = run([client], [server])
    expect = ref.summary()
    for k in range(1, len(client)):
        r = run(pieces(client, [k]), [server])
        assert r.summary() == expect, k
        assert (r.frames(0), r.frames(1)) == (cframes, sframes), k
    for k in range(1, len(server)):
        r = run([client], pieces(server, [k]))
        assert r.summary() == expect, k
        assert (r.frames(0), r.frames(1)) == (cframes, sframes), k
    r = run(pieces(client, list(range(len(client)))), pieces(server, list(range(len(server)))))
    assert r.summary() == expect
    assert (r.frames(0), r.frames(1)) == (cframes, sframes)


@pytest.mark.parametrize("vec", VECTORS, ids=[v[0] for v in VECTORS])
def test_roles_reversed(vec: tuple) -> None:
    """The reassembler guessed the roles backwards: the request arrives on direction 1."""
    _, creq, sresp, version, draft, *_, cframes, sframes = vec
    r = run([creq + cframes], [sresp + sframes], client_dir=1)
    (done,) = r.handshakes
    assert done.client_direction == 1
    assert (done.handshake.version, done.handshake.draft) == (version, draft)
    assert done.trailing == (sframes, cframes)


def test_hixie76_response_before_key3_completes() -> None:
    """The answer can only be checked once key3 is in: the order of arrival does not matter."""
    r = Run()
    r.feed(0, HIXIE76_REQ[:-3])
    r.feed(1, HIXIE76_RESP + b"\x00x\xff")
    assert r.handshakes == []
    r.feed(0, HIXIE76_REQ[-3:])
    (done,) = r.handshakes
    assert done.handshake.accept_valid is True
    assert done.trailing == (b"", b"\x00x\xff")


def test_hybi04_draft_printed_accept_is_flagged() -> None:
    resp = HYBI04_RESP.replace(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"me89jWimTRKTWwrS3aRrL53YZSo=")
    r = run([hybi_req(4)], [resp])
    hs = r.handshakes[0].handshake
    assert (hs.version, hs.draft, hs.ok, hs.upgraded, hs.accept_valid) == (4, "hybi-04", False, True, False)
    assert r.kinds == [ProblemKind.ACCEPT_KEY_MISMATCH]


# --- classify / extensions ----------------------------------------------------------------------

def test_classify_table() -> None:
    assert classify({"Sec-WebSocket-Version": "13"}) == (13, "rfc6455")
    assert classify({"sec-websocket-version": "8"}) == (8, "hybi-08")
    assert classify({"sec-websocket-version": "25"}) == (25, "unknown")
    assert classify({"sec-websocket-version": "x"}) == (-1, "unknown")
    assert classify({"Sec-WebSocket-Key1": "a", "Sec-WebSocket-Key2": "b"}) == (0, "hixie-76")
    assert classify({"Sec-WebSocket-Key1": "a", "Sec-WebSocket-Key2": "b",
                     "Sec-WebSocket-Draft": "1"}) == (0, "hybi-01")
    assert classify({"Sec-WebSocket-Key": "k"}, {"Sec-WebSocket-Nonce": "n"}) == (4, "hybi-04")
    assert classify({"Sec-WebSocket-Key": "k"}) == (-1, "unknown")
    assert classify({"Upgrade": "WebSocket"}) == (-1, "hixie-75")


def test_parse_extensions_and_deflate() -> None:
    assert parse_extensions('permessage-deflate; client_max_window_bits, x-foo; a="1,2"') == [
        ("permessage-deflate", {"client_max_window_bits": None}), ("x-foo", {"a": "1,2"})]
    assert deflate_params("permessage-deflate; server_no_context_takeover; "
                          "client_max_window_bits=10; server_max_window_bits=\"12\"") == DeflateParams(
        "permessage-deflate", server_no_context_takeover=True, client_no_context_takeover=False,
        server_max_window_bits=12, client_max_window_bits=10)
    assert deflate_params("permessage-deflate; client_max_window_bits") == DeflateParams(
        "permessage-deflate")
    assert deflate_params("permessage-deflate; client_no_context_takeover; server_max_window_bits=99"
                          ) == DeflateParams("permessage-deflate", client_no_context_takeover=True)
    assert deflate_params("x-webkit-deflate-frame; no_context_takeover; max_window_bits=9") == \
        DeflateParams("x-webkit-deflate-frame", client_no_context_takeover=True, client_max_window_bits=9)
    assert deflate_params("deflate-frame") == DeflateParams("deflate-frame")
    assert deflate_params("x-custom") is None
    assert deflate_params(None) is None


# --- negotiation fields -------------------------------------------------------------------------

def rfc_request(*extra: str, key: str = "dGhlIHNhbXBsZSBub25jZQ==", target: str = "/chat") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: server.example.com", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def rfc_response(*extra: str, status: str = "101 Switching Protocols",
                 accept: str | None = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", upgrade: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if accept is not None:
        lines.append(f"Sec-WebSocket-Accept: {accept}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_negotiation_fields_and_repeats_folding_bare_lf() -> None:
    req = rfc_request("Sec-WebSocket-Protocol: chat", "sec-websocket-protocol: superchat",
                      "Sec-WebSocket-Extensions: permessage-deflate;",
                      "  client_max_window_bits",                  # obs-fold
                      "Sec-WebSocket-Extensions: x-webkit-deflate-frame",
                      "Origin: http://example.com", "User-Agent: test-agent/1.0",
                      "Cookie: session=SECRET-COOKIE", "Authorization: Bearer SECRET-TOKEN")
    req = req.replace(b"\r\n", b"\n")                             # bare LF line endings
    resp = rfc_response("Sec-WebSocket-Protocol: superchat", "Server: demo/2",
                        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                        "client_max_window_bits=12", "Set-Cookie: id=SECRET-SET")
    r = run([req], [resp])
    hs = r.handshakes[0].handshake
    assert hs.subprotocols_offered == ("chat", "superchat")
    assert hs.subprotocol == "superchat"
    assert hs.extensions_offered == "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame"
    assert hs.extensions == "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"
    assert hs.deflate == DeflateParams("permessage-deflate", server_no_context_takeover=True,
                                       client_max_window_bits=12)
    assert (hs.host, hs.path, hs.origin) == ("server.example.com", "/chat", "http://example.com")
    assert (hs.user_agent, hs.server, hs.cookies_present) == ("test-agent/1.0", "demo/2", True)
    assert r.kinds == []
    # Cookie and authorization values are never kept, in events or in the parser's state.
    blob = repr(r.events) + repr(vars(r.parser)) + repr(r.parser._pending)
    assert "SECRET" not in blob


def test_origin_from_sec_websocket_origin_and_no_cookies() -> None:
    r = run([hybi_req(8)], [HYBI_RESP])
    hs = r.handshakes[0].handshake
    assert hs.origin == "http://example.com"
    assert hs.cookies_present is False


# --- failures -----------------------------------------------------------------------------------

def test_403_then_no_more() -> None:
    body = b"Forbidden\n"
    resp = (b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 10\r\n\r\n" + body)
    r = run([rfc_request()], [resp])
    (done,) = r.handshakes
    hs = done.handshake
    assert (hs.ok, hs.http_status, hs.accept_valid) == (False, 403, None)
    assert hs.failure_reason == "HTTP 403 Forbidden"
    assert r.kinds == [ProblemKind.HANDSHAKE_FAILED]
    assert isinstance(r.events[-1], NotWebSocket)


def test_404_keepalive_then_second_upgrade_succeeds() -> None:
    """After a failed handshake the connection may carry another request: keep parsing."""
    first = rfc_request(target="/nope")
    resp404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
    second = rfc_request(key="x3JJHMbDL1EzLkh9GBhXDw==")
    resp101 = rfc_response(accept="HSmrc0sMlYUkAGmm5OPpG2HaGWk=")
    r = run([first + second + b"\x81\x80abcd"], [resp404 + resp101 + b"\x81\x00"])
    failed, ok = r.handshakes
    assert (failed.handshake.ok, failed.handshake.http_status, failed.handshake.path) == (False, 404, "/nope")
    assert (ok.handshake.ok, ok.handshake.accept_valid, ok.handshake.path) == (True, True, "/chat")
    assert ok.trailing == (b"\x81\x80abcd", b"\x81\x00")
    assert r.kinds == [ProblemKind.HANDSHAKE_FAILED]


def test_426_with_version_list() -> None:
    resp = (b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13, 8, 7\r\n"
            b"Content-Length: 0\r\n\r\n")
    r = run([hybi_req(9)], [resp])
    hs = r.handshakes[0].handshake
    assert (hs.ok, hs.http_status, hs.versions_supported) == (False, 426, (13, 8, 7))
    assert hs.failure_reason == "HTTP 426 Upgrade Required (server supports versions 13, 8, 7)"
    assert (hs.version, hs.draft) == (9, "unknown")
    assert r.kinds == [ProblemKind.HANDSHAKE_FAILED]


def test_400_with_repeated_version_fields() -> None:
    resp = (b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8, 7\r\n"
            b"Content-Length: 0\r\n\r\n")
    r = run([hybi_req(9)], [resp])
    assert r.handshakes[0].handshake.versions_supported == (13, 8, 7)


def test_wrong_accept() -> None:
    r = run([rfc_request()], [rfc_response(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA=") + b"\x81\x00"])
    (done,) = r.handshakes
    hs = done.handshake
    assert (hs.ok, hs.upgraded, hs.accept_valid) == (False, True, False)
    assert "Sec-WebSocket-Accept mismatch" in (hs.failure_reason or "")
    (problem,) = [e for e in r.events if isinstance(e, Problem)]
    assert problem.kind == ProblemKind.ACCEPT_KEY_MISMATCH
    assert problem.detail == "expected=s3pPLMBiTxaQ9kYGzzhZRbK+xOo=, found=AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    assert done.trailing == (b"", b"\x81\x00")


def test_problems_come_before_handshake_done() -> None:
    """A caller may stop reading the list at HandshakeDone / NotWebSocket: nothing is lost."""
    for client, server in [
        ([rfc_request("Sec-WebSocket-Protocol: chat")], [rfc_response(accept="bad=")]),
        ([rfc_request()], [b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]),
        ([rfc_request()], [b"HTTP/1.1 1O1 Switching\r\n\r\n"]),
    ]:
        r = run(client, server)
        order = [type(e) for e in r.events]
        first_done = order.index(HandshakeDone)
        assert Problem in order[:first_done] and Problem not in order[first_done:], order
    r = run([rfc_request()], [])
    r.finish()
    assert [type(e) for e in r.events] == [Problem, HandshakeDone]


def test_missing_accept() -> None:
    r = run([rfc_request()], [rfc_response(accept=None)])
    assert r.handshakes[0].handshake.accept_valid is False
    assert r.kinds == [ProblemKind.ACCEPT_KEY_MISMATCH]


def test_hixie76_wrong_answer() -> None:
    r = run([HIXIE76_REQ], [HIXIE76_RESP[:-16] + b"0123456789abcdef"])
    hs = r.handshakes[0].handshake
    assert (hs.ok, hs.upgraded, hs.accept_valid) == (False, True, False)
    assert r.kinds == [ProblemKind.ACCEPT_KEY_MISMATCH]


def test_no_response() -> None:
    r = run([rfc_request()], [])
    assert r.handshakes == []
    r.finish()
    (done,) = r.handshakes
    hs = done.handshake
    assert (hs.ok, hs.http_status, hs.failure_reason, hs.accept_valid) == (False, None, "no response", None)
    assert r.kinds == [ProblemKind.HANDSHAKE_NO_RESPONSE]
    assert r.parser.finish() == []


def test_truncated_response_at_finish() -> None:
    r = run([rfc_request()], [b"HTTP/1.1 101 Switching"])
    r.finish()
    assert r.handshakes[0].handshake.ok is False
    assert r.kinds == [ProblemKind.HANDSHAKE_NO_RESPONSE]


def test_subprotocol_not_selected_fails_but_stays_upgraded() -> None:
    r = run([rfc_request("Sec-WebSocket-Protocol: chat, superchat")], [rfc_response()])
    hs = r.handshakes[0].handshake
    assert (hs.ok, hs.upgraded, hs.subprotocol, hs.subprotocols_offered) == (
        False, True, None, ("chat", "superchat"))
    assert "no subprotocol selected" in (hs.failure_reason or "")
    assert r.kinds == [ProblemKind.SUBPROTOCOL_NOT_SELECTED]


def test_subprotocol_and_extension_not_offered() -> None:
    r = run([rfc_request("Sec-WebSocket-Protocol: chat")],
            [rfc_response("Sec-WebSocket-Protocol: mqtt", "Sec-WebSocket-Extensions: permessage-deflate")])
    hs = r.handshakes[0].handshake
    assert (hs.ok, hs.upgraded, hs.subprotocol) == (False, True, "mqtt")
    assert r.kinds == [ProblemKind.SUBPROTOCOL_NOT_OFFERED, ProblemKind.EXTENSION_NOT_OFFERED]


def test_101_without_upgrade_headers() -> None:
    r = run([rfc_request()], [rfc_response(upgrade=False)])
    hs = r.handshakes[0].handshake
    assert (hs.ok, hs.upgraded, hs.http_status) == (False, False, 101)
    assert "without Upgrade: websocket" in (hs.failure_reason or "")
    assert r.kinds == [ProblemKind.HANDSHAKE_FAILED]
    assert isinstance(r.events[-1], NotWebSocket)


# --- keep-alive and plain HTTP ------------------------------------------------------------------

def test_keepalive_requests_before_upgrade() -> None:
    client = (b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n"
              b"POST /form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"4;ext=1\r\nWiki\r\n0\r\nX-Trailer: 1\r\n\r\n"
              b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\n"
              b"GET /cached HTTP/1.1\r\nHost: h\r\n\r\n"
              + rfc_request() + HYBI_FRAMES_C)
    server = (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHTTP/1.1 101"     # body looks like HTTP
              b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"               # HEAD: no body
              b"HTTP/1.1 304 Not Modified\r\nContent-Length: 77\r\n\r\n"       # 304: no body
              + rfc_response() + HYBI_FRAMES_S)
    ref = run([client], [server])
    (done,) = ref.handshakes
    assert done.handshake.ok and done.handshake.accept_valid
    assert done.trailing == (HYBI_FRAMES_C, HYBI_FRAMES_S)
    assert ref.kinds == []
    # Split invariance over the whole keep-alive exchange, one byte at a time.
    r = run(pieces(client, list(range(len(client)))), pieces(server, list(range(len(server)))))
    assert r.summary() == ref.summary()
    assert (r.frames(0), r.frames(1)) == (HYBI_FRAMES_C, HYBI_FRAMES_S)


def test_interleaved_pipelined_exchange() -> None:
    r = Run()
    r.feed(0, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    r.feed(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    r.feed(0, rfc_request())
    r.feed(1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb" + rfc_response())
    assert r.handshakes[0].handshake.ok


def test_plain_http_with_connection_close() -> None:
    r = run([b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"],
            [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    assert [type(e) for e in r.events] == [NotWebSocket]


def test_plain_http10_and_read_until_close() -> None:
    r = run([b"GET / HTTP/1.0\r\n\r\n"], [b"HTTP/1.0 200 OK\r\n\r\n<html>"])
    assert [type(e) for e in r.events] == [NotWebSocket]
    r = run([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"], [b"HTTP/1.1 200 OK\r\n\r\n<html>"])
    assert [type(e) for e in r.events] == [NotWebSocket]


def test_plain_keepalive_then_binary_gives_up() -> None:
    r = run([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n\x16\x03\x01"], [b"HTTP/1.1 204 No Content\r\n\r\n"])
    assert [type(e) for e in r.events] == [NotWebSocket]


def test_plain_keepalive_stays_open_then_finish() -> None:
    r = run([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"], [b"HTTP/1.1 204 No Content\r\n\r\n"])
    assert r.events == []
    r.finish()
    assert [type(e) for e in r.events] == [NotWebSocket]


# --- detection of non-HTTP ----------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"\x16\x03\x01\x02\x00", b"\x00\x01", b"{\"jsonrpc\"", b"GET\t/",
                                  b"A" * 30, b"SSH-2.0-OpenSSH_9.2\r\n"])
def test_not_http_client_is_detected_quickly(data: bytes) -> None:
    p = HandshakeParser()
    events = []
    for i in range(len(data)):                     # the verdict comes without buffering much
        events += p.feed(0, data[i:i + 1], 1, 1)
        if events:
            break
    assert [type(e) for e in events] == [NotWebSocket]
    assert i < 26


def test_server_speaks_first_waits_for_client() -> None:
    p = HandshakeParser()
    assert p.feed(1, b"220 smtp.example.com ESMTP\r\n", 1, 1) == []
    assert [type(e) for e in p.feed(0, b"EHLO x\r\n", 2, 2)] == [NotWebSocket]
    # A WebSocket client whose server direction came first with its 101: still found.
    r = Run()
    r.feed(1, rfc_response())
    assert r.events == []
    r.feed(0, rfc_request())
    assert r.handshakes[0].handshake.ok


def test_response_first_on_direction_zero_means_roles_swapped() -> None:
    r = Run()
    r.feed(0, rfc_response() + b"\x81\x00")
    r.feed(1, rfc_request())
    (done,) = r.handshakes
    assert done.client_direction == 1
    assert done.trailing == (b"\x81\x00", b"")


def test_malformed_request_line_and_header() -> None:
    r = run([b"GET /x HTTP/1.1 extra\r\n"], [])
    assert r.kinds == [ProblemKind.HTTP_MALFORMED] and isinstance(r.events[-1], NotWebSocket)
    r = run([b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"], [])
    assert r.kinds == [ProblemKind.HTTP_MALFORMED]


def test_malformed_response_to_upgrade_fails_handshake() -> None:
    r = run([rfc_request()], [b"HTTP/1.1 1O1 Switching\r\n\r\n"])
    assert r.handshakes[0].handshake.ok is False
    assert r.kinds == [ProblemKind.HANDSHAKE_FAILED, ProblemKind.HTTP_MALFORMED]
    assert isinstance(r.events[-1], NotWebSocket)


# --- bounds and linearity -----------------------------------------------------------------------

def test_header_block_over_limit() -> None:
    p = HandshakeParser(max_header_bytes=4096)
    events = p.feed(0, b"GET / HTTP/1.1\r\n", 1, 1)
    chunk = b"X-Filler: " + b"a" * 90 + b"\r\n"
    fed = 0
    while not events and fed < 100_000:
        events = p.feed(0, chunk, 1, 1)
        fed += len(chunk)
    assert fed <= 4096 + len(chunk)
    assert [type(e) for e in events] == [Problem, NotWebSocket]
    assert events[0].kind == ProblemKind.HTTP_MALFORMED
    assert p.feed(0, b"more", 1, 1) == [] and p.finish() == []


def test_too_many_header_fields() -> None:
    req = b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 300 + b"\r\n"
    r = run([req], [])
    assert r.kinds == [ProblemKind.HTTP_MALFORMED]


def test_start_line_over_limit() -> None:
    r = run([b"GET /" + b"a" * 10_000], [])
    assert r.kinds == [ProblemKind.HTTP_MALFORMED]


def test_bad_chunk_size_line() -> None:
    r = run([b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], [])
    assert r.kinds == [ProblemKind.HTTP_MALFORMED]


def test_one_byte_feeding_is_linear() -> None:
    """A 200 KB header block fed one byte at a time: linear (quadratic rescans take minutes)."""
    head = b"GET / HTTP/1.1\r\n" + (b"X-A: " + b"b" * 95 + b"\r\n") * 2000
    p = HandshakeParser(max_header_bytes=1 << 20)
    t0 = time.perf_counter()
    for i in range(len(head)):
        assert p.feed(0, head[i:i + 1], 1, 1) == []
    assert time.perf_counter() - t0 < 10
    assert p._sides[0].scan >= len(head) - 2          # the search resumes where it stopped


def test_gap_with_and_without_request() -> None:
    r = run([rfc_request()], [])
    r.events += r.parser.gap(1)
    assert r.handshakes[0].handshake.ok is False
    assert "tcp gap" in (r.handshakes[0].handshake.failure_reason or "")
    assert isinstance(r.events[-1], NotWebSocket)
    p = HandshakeParser()
    assert [type(e) for e in p.gap(0)] == [NotWebSocket]
    assert p.feed(0, rfc_request(), 1, 1) == []


def test_after_success_parser_is_finished() -> None:
    r = run([rfc_request()], [rfc_response()])
    assert r.handshakes[0].handshake.ok
    assert r.parser.feed(0, b"GET / HTTP/1.1\r\n\r\n", 3, 3) == []
    assert r.parser.finish() == [] and r.parser.gap(0) == []


# --- real handshakes recorded on loopback (tests/data/handshakes/make_handshakes.py) --------------

_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBB")


def tcp_payloads(path: Path) -> list[tuple[int, bytes, int]]:
    """(direction, payload, record_no) per data segment of the first TCP connection in a pcap;
    direction 0 is the SYN sender. Enough decoding for these loopback files (Ethernet/IPv4)."""
    from scapy.utils import RawPcapReader

    out: list[tuple[int, bytes, int]] = []
    client: tuple[int, int] | None = None
    next_seq: dict[int, int] = {}
    with RawPcapReader(str(path)) as reader:
        for record_no, (pkt, _meta) in enumerate(reader, 1):
            _, _, ethertype = _ETH.unpack_from(pkt, 0)
            assert ethertype == 0x0800
            vihl, _, total, _, _, _, proto, _, _, _ = _IP4.unpack_from(pkt, 14)
            assert proto == 6
            ihl = (vihl & 0x0F) * 4
            tcp = 14 + ihl
            sport, dport, seq, _, off, flags = _TCP.unpack_from(pkt, tcp)
            payload = pkt[tcp + (off >> 4) * 4:14 + total]
            if flags & 0x02 and not flags & 0x10:
                client = (sport, dport)
            direction = 0 if (sport, dport) == client else 1
            if payload:
                expected = next_seq.get(direction, seq)
                assert seq == expected, "loopback capture with a retransmission or a hole"
                next_seq[direction] = seq + len(payload)
                out.append((direction, bytes(payload), record_no))
    return out


def replay(path: Path) -> Run:
    r = Run()
    for direction, payload, record_no in tcp_payloads(path):
        r.feed(direction, payload, record_no, record_no * 1000)
    r.finish()
    return r


REAL = [
    ("websockets_9123.pcap", "chat", ("chat", "superchat"),
     DeflateParams("permessage-deflate", server_max_window_bits=12, client_max_window_bits=12),
     "websockets/"),
    ("aiohttp_9124.pcap", "v2.json", ("v2.json", "v1.json"), None, "aiohttp/"),
    ("wsproto_9125.pcap", "mqtt", ("mqtt",), DeflateParams("permessage-deflate"), None),
]


@pytest.mark.parametrize("name,subprotocol,offered,deflate,server", REAL, ids=[x[0] for x in REAL])
def test_real_handshake(name: str, subprotocol: str, offered: tuple, deflate: DeflateParams | None,
                        server: str | None) -> None:
    r = replay(DATA / name)
    (done,) = r.handshakes
    hs = done.handshake
    assert (hs.version, hs.draft, hs.ok, hs.accept_valid, hs.http_status) == (13, "rfc6455", True, True, 101)
    assert hs.subprotocol == subprotocol and hs.subprotocols_offered == offered
    assert hs.deflate == deflate
    assert (hs.extensions is not None) == (deflate is not None)
    assert done.client_direction == 0
    assert server is None or server in (hs.server or "")
    assert hs.request_record_no is not None and hs.response_record_no > hs.request_record_no
    assert r.kinds == []
    # The frame decoders get whole frames: masked text from the client, unmasked from the server.
    client, srv = r.frames(0), r.frames(1)
    assert client[0] & 0x0F == 1 and client[1] & 0x80
    assert srv[0] & 0x0F == 1 and not srv[1] & 0x80
    assert bool(client[0] & 0x40) == (deflate is not None)       # RSV1: compressed message


def test_real_websockets_handshake_on_nonstandard_port() -> None:
    pkts = tcp_payloads(DATA / "websockets_9123.pcap")
    assert b"Host: 127.0.0.1:9123" in pkts[0][1]
    hs = replay(DATA / "websockets_9123.pcap").handshakes[0].handshake
    assert hs.host == "127.0.0.1:9123" and hs.path == "/chat"
    assert hs.extensions_offered == "permessage-deflate; client_max_window_bits"


def test_real_websockets_403() -> None:
    r = replay(DATA / "websockets_403_9126.pcap")
    (done,) = r.handshakes
    hs = done.handshake
    assert (hs.ok, hs.http_status, hs.version, hs.path) == (False, 403, 13, "/private")
    assert r.kinds == [ProblemKind.HANDSHAKE_FAILED]
    assert isinstance(r.events[-1], NotWebSocket)


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", [x[0] for x in REAL])
def test_payload_helper_agrees_with_tshark(name: str) -> None:
    """Cross-check of the test's own decoder: tshark's follow-stream bytes per direction."""
    out = subprocess.run(["tshark", "-r", str(DATA / name), "-q", "-z", "follow,tcp,raw,0"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    tshark_dirs = [bytearray(), bytearray()]
    body = out.split("Node 1:", 1)[1].split("\n", 1)[1]
    for line in body.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        tshark_dirs[1 if line.startswith("\t") else 0] += bytes.fromhex(line.strip())
    ours = [bytearray(), bytearray()]
    for direction, payload, _ in tcp_payloads(DATA / name):
        ours[direction] += payload
    assert ours == tshark_dirs


# --- never raise --------------------------------------------------------------------------------

def _feed_cut(data_c: bytes, data_s: bytes, cuts_c: list[int], cuts_s: list[int], order: list[bool]) -> None:
    p = HandshakeParser(max_header_bytes=2048)
    pc, ps = pieces(data_c, cuts_c), pieces(data_s, cuts_s)
    events = []
    for take_client in order + [True] * len(pc) + [False] * len(ps):
        src, d = (pc, 0) if take_client else (ps, 1)
        if src:
            events += p.feed(d, src.pop(0), 1, 1)
    events += p.gap(0) if order and order[0] else p.finish()
    assert all(isinstance(e, (HandshakeDone, NotWebSocket, Problem)) for e in events)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8),
       st.lists(st.integers(0, 300), max_size=8), st.lists(st.booleans(), max_size=16))
def test_random_bytes_never_raise(c: bytes, s: bytes, cuts_c: list[int], cuts_s: list[int],
                                  order: list[bool]) -> None:
    _feed_cut(c, s, cuts_c, cuts_s, order)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VECTORS), st.data())
def test_mutated_handshakes_never_raise(vec: tuple, data: st.DataObject) -> None:
    """Valid handshakes with bytes flipped, cut or inserted: only events come out."""
    _, creq, sresp, *_ = vec
    def mutate(b: bytes) -> bytes:
        buf = bytearray(b)
        for _ in range(data.draw(st.integers(0, 4))):
            if not buf:
                break
            i = data.draw(st.integers(0, len(buf) - 1))
            op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            if op == "flip":
                buf[i] = data.draw(st.integers(0, 255))
            elif op == "cut":
                del buf[i:i + data.draw(st.integers(1, 20))]
            else:
                buf[i:i] = data.draw(st.sampled_from([b"\r\n", b"\n", b":", b" ", b"\x00", b"\r\n\r\n",
                                                      b"Content-Length: 5\r\n", b"0\r\n"]))
        return bytes(buf)
    c, s = mutate(creq), mutate(sresp)
    _feed_cut(c, s, data.draw(st.lists(st.integers(0, len(c)), max_size=6)),
              data.draw(st.lists(st.integers(0, len(s)), max_size=6)),
              data.draw(st.lists(st.booleans(), max_size=12)))
