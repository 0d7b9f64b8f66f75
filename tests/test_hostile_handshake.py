"""Hostile handshakes of issue 13: pipelined requests past the budget (item 9), credentials in
subprotocols (item 11) and request targets (item 12), the RFC 6455 §4.1 verdict on a wrong
Sec-WebSocket-Accept (item 20). The captures come from tests/hostile/handshake.py."""

from __future__ import annotations

import gc
import tracemalloc

from analyzer.events import HandshakeDone, NotWebSocket, Problem
from analyzer.frames import PayloadBudget
from analyzer.handshake import HandshakeParser
from analyzer.protocol import ProblemKind
from tests.hostile.handshake import (
    PIPELINED,
    REQUEST_BYTES,
    WRONG_ACCEPT,
    WRONG_ACCEPT_RESPONSE,
    pipelined_request,
)
from tests.pcapgen import SAMPLE_KEY, frame, upgrade_request, upgrade_response

MB = 1 << 20
MASK = b"\x11\x22\x33\x44"


def kinds(events: list) -> list[ProblemKind]:
    return [e.kind for e in events if isinstance(e, Problem)]


# --- item 9: pipelined requests count against the budget and are bounded ----------------------

def test_pipelined_63kb_requests_are_not_all_held() -> None:
    """The issue's connection: 64 pipelined 63 KB requests, then an upgrade request, no answer.
    Each parsed request used to be kept whole (64 x 63 KB per connection, outside the budget); now
    at most 16 wait, without their headers, and the rest waits raw up to max_hold, then a problem."""
    budget = PayloadBudget(64 * MB)
    parser = HandshakeParser(budget=budget)
    events: list = []
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(PIPELINED):
            events += parser.feed(0, pipelined_request(i), 1 + i, 1000 + i)
            # Everything the parser holds is in the budget: the raw bytes and the parsed requests.
            assert budget.held <= parser.max_hold + REQUEST_BYTES + 16 * 256
        events += parser.feed(0, upgrade_request(), 100, 2000)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < parser.max_hold + 12 * REQUEST_BYTES, peak     # the old parser: 6.2 MB
    assert kinds(events) == [ProblemKind.HTTP_PIPELINE_LIMIT]
    assert isinstance(events[-1], NotWebSocket)
    assert budget.held == 0
    assert parser.feed(1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 101, 3000) == []


def test_parsed_requests_waiting_for_responses_are_charged_to_the_budget() -> None:
    budget = PayloadBudget(64 * MB)
    parser = HandshakeParser(budget=budget)
    for i in range(10):
        assert parser.feed(0, b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i, 1 + i, 1000 + i) == []
    held = budget.held
    assert held >= 10 * 64, held                  # no raw bytes left: the parsed requests are held
    assert parser.feed(1, b"HTTP/1.1 204 No Content\r\n\r\n" * 10, 20, 2000) == []
    assert budget.held == 0


def test_a_full_budget_refuses_parsed_requests_too() -> None:
    """A budget too small for the parsed requests ends the parse: they are not held outside it."""
    budget = PayloadBudget(1000)
    parser = HandshakeParser(budget=budget)
    events = parser.feed(0, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 15, 1, 1000)
    assert isinstance(events[-1], NotWebSocket) and "shared budget" in events[-1].reason
    assert budget.held == 0


def test_pipelining_past_the_limit_waits_for_responses_and_loses_nothing() -> None:
    """40 small pipelined requests then an upgrade: parsing pauses at 16 waiting requests and
    resumes as responses come; the upgrade is found, its frames follow."""
    client = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(40))
    client += upgrade_request(path="/ws")
    server = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 40 + upgrade_response() + frame(1, b"hi")
    for step in (len(server), 7):
        budget = PayloadBudget(64 * MB)
        parser = HandshakeParser(budget=budget)
        events = parser.feed(0, client, 1, 1000)
        assert events == [] and 16 * 256 <= budget.held <= len(client) + 16 * 256
        after = b""
        for i in range(0, len(server), step):
            if any(isinstance(e, HandshakeDone) for e in events):
                after += server[i:i + step]           # the caller's frame decoder gets these
            else:
                events += parser.feed(1, server[i:i + step], 2 + i, 2000 + i)
        (done,) = [e for e in events if isinstance(e, HandshakeDone)]
        assert (done.handshake.ok, done.handshake.path) == (True, "/ws")
        assert kinds(events) == []
        assert done.trailing[1] + after == frame(1, b"hi")
        assert budget.held == 0


# --- item 20: the handshake verdict follows RFC 6455 §4.1 ------------------------------------------

def test_wrong_accept_byte_by_byte_fails_the_handshake_but_frames_follow() -> None:
    client = upgrade_request(key=SAMPLE_KEY) + frame(1, b"client text", mask=MASK)
    server = WRONG_ACCEPT_RESPONSE + frame(1, b"server text")
    parser = HandshakeParser()
    events: list = []
    for i in range(len(client)):
        events += parser.feed(0, client[i:i + 1], 1 + i, 1000 + i)
    for i in range(len(server)):
        events += parser.feed(1, server[i:i + 1], 500 + i, 5000 + i)
        if any(isinstance(e, HandshakeDone) for e in events):
            rest = server[i + 1:]
            break
    (done,) = [e for e in events if isinstance(e, HandshakeDone)]
    hs = done.handshake
    assert (hs.ok, hs.upgraded, hs.accept_valid, hs.http_status) == (False, True, False, 101)
    assert "Sec-WebSocket-Accept mismatch" in (hs.failure_reason or "")
    assert kinds(events) == [ProblemKind.ACCEPT_KEY_MISMATCH]
    (problem,) = [e for e in events if isinstance(e, Problem)]
    assert problem.detail.endswith(f"found={WRONG_ACCEPT}")
    assert not any(isinstance(e, NotWebSocket) for e in events)   # the caller decodes the frames
    assert done.trailing[1] + rest == frame(1, b"server text")
