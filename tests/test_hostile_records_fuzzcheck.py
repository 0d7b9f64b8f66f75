"""The handshake fuzz invariant (tests/fuzz/targets.py `_check_handshake_events`) after issue 13
item 20: `Handshake.upgraded` (frames follow) is what finishes the parser, `ok` is the RFC 6455
§4.1 verdict. The check must catch events after an upgraded handshake whatever its verdict, and a
verdict that does not agree with the upgrade and the failure reason."""

from __future__ import annotations

import dataclasses

import pytest

from analyzer.events import Handshake, HandshakeDone, NotWebSocket, Problem
from analyzer.handshake import HandshakeParser
from analyzer.protocol import ProblemKind
from tests.fuzz.targets import _check_handshake_events, run_handshake
from tests.pcapgen import frame, upgrade_request, upgrade_response

FRAME = frame(1, b"hello")
LATE = Problem(ProblemKind.HTTP_MALFORMED, "an event after the end")


def handshake_events(response: bytes) -> tuple[list, list[bytearray]]:
    """What the parser says for an upgrade request and `response` + one frame."""
    parser = HandshakeParser()
    fed = [bytearray(upgrade_request()), bytearray(response + FRAME)]
    events = parser.feed(0, bytes(fed[0]), 1, 1) + parser.feed(1, bytes(fed[1]), 2, 2)
    return events, fed


def test_an_upgraded_handshake_with_a_wrong_accept_finishes_the_parser() -> None:
    events, fed = handshake_events(upgrade_response(accept="d3JvbmcgYWNjZXB0IGtleSEhISE="))
    done = [ev for ev in events if type(ev) is HandshakeDone]
    assert len(done) == 1
    hs = done[0].handshake
    assert (hs.upgraded, hs.ok, hs.accept_valid) == (True, False, False)
    assert done[0].trailing[1] == FRAME
    assert _check_handshake_events(events, fed) is True
    with pytest.raises(AssertionError, match="after the parser finished"):
        _check_handshake_events([*events, LATE], fed)
    # the whole target, in pieces, with the frame after the handshake
    run_handshake(bytes(fed[0]), bytes(fed[1]), max_header_bytes=65536, budget_bytes=1 << 30,
                  steps=[(0, 7, False), (1, 5, False), (1, 40, False), (0, 1000, False)])


def test_a_good_upgrade_finishes_the_parser() -> None:
    events, fed = handshake_events(upgrade_response())
    assert _check_handshake_events(events, fed) is True
    with pytest.raises(AssertionError, match="after the parser finished"):
        _check_handshake_events([*events, LATE], fed)


def test_a_101_without_upgrade_headers_must_be_followed_by_not_websocket() -> None:
    response = upgrade_response().replace(b"Upgrade: websocket\r\n", b"")
    events, fed = handshake_events(response)
    assert [type(ev) for ev in events if type(ev) is not Problem] == [HandshakeDone, NotWebSocket]
    hs = next(ev for ev in events if type(ev) is HandshakeDone).handshake
    assert (hs.upgraded, hs.ok, hs.http_status) == (False, False, 101)
    assert _check_handshake_events(events, fed) is True
    with pytest.raises(AssertionError, match="NotWebSocket"):
        _check_handshake_events([ev for ev in events if type(ev) is not NotWebSocket], fed)


def test_a_failed_answer_lets_another_request_follow() -> None:
    events, fed = handshake_events(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert _check_handshake_events([ev for ev in events if type(ev) is not NotWebSocket], fed) is False


@pytest.mark.parametrize("change", [
    {"ok": True, "upgraded": False},                           # a verdict without an upgrade
    {"ok": True, "accept_valid": False},                       # a wrong accept key judged good
    {"ok": True, "failure_reason": "Sec-WebSocket-Accept mismatch"},
    {"ok": False, "failure_reason": None},                     # failed for no reason
    {"http_status": 200},                                      # an upgrade that is not a 101
])
def test_a_verdict_that_disagrees_with_the_handshake_is_caught(change: dict) -> None:
    events, fed = handshake_events(upgrade_response())
    (i, done), = [(i, ev) for i, ev in enumerate(events) if type(ev) is HandshakeDone]
    bad = dataclasses.replace(done, handshake=dataclasses.replace(done.handshake, **change))
    assert isinstance(bad.handshake, Handshake)
    with pytest.raises(AssertionError):
        _check_handshake_events([*events[:i], bad, *events[i + 1:]], fed)
