"""Hostile handshakes of issue 13: pipelined requests past the budget (item 9), credentials in
subprotocols (item 11) and request targets (item 12), the RFC 6455 §4.1 verdict on a wrong
Sec-WebSocket-Accept (item 20). The captures come from tests/hostile/handshake.py."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

import analyzer
from analyzer.budget import PayloadBudget
from analyzer.events import HandshakeDone, NotWebSocket, Problem
from analyzer.export import export
from analyzer.handshake import HandshakeParser, redact_subprotocols, redact_target
from analyzer.protocol import ProblemKind
from tests.hostile.handshake import (
    JWT,
    K8S_TOKEN,
    PIPELINED,
    REQUEST_BYTES,
    SECRETS,
    WRONG_ACCEPT,
    WRONG_ACCEPT_RESPONSE,
    pipelined_request,
    secrets,
    wrong_accept,
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
    requests = [b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(40)]
    client = b"".join(requests) + upgrade_request(path="/ws")
    server = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 40 + upgrade_response() + frame(1, b"hi")
    for step in (len(server), 7):
        budget = PayloadBudget(64 * MB)
        parser = HandshakeParser(budget=budget)
        events = parser.feed(0, client, 1, 1000)
        # 16 parsed requests (256 bytes each in the budget), the rest raw
        assert events == [] and budget.held == 16 * 256 + len(client) - len(b"".join(requests[:16]))
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


def test_wrong_accept_capture_fails_the_verdict_and_keeps_its_messages(tmp_path: Path) -> None:
    """Through analyze(): handshake_ok False with accept_valid False, close_status and the summary
    agree, and the messages after the 101 are still listed."""
    a = analyzer.analyze(wrong_accept(tmp_path, 2.0), progress=False)
    conns = a.connections
    assert len(conns) == 2
    assert list(conns.handshake_ok) == [False, False] and list(conns.accept_valid) == [False, False]
    assert list(conns.close_status) == ["handshake-failed"] * 2
    assert a.summary()["failed_handshakes"] == 2
    assert list(a.messages.preview) == ["client text", "server text"] * 2
    assert list(a.problems.kind.astype(str)) == ["accept-key-mismatch"] * 2

# --- items 11 and 12: credentials in subprotocols and request targets -------------------------------

@pytest.mark.parametrize(("offered", "chosen", "shown", "shown_chosen"), [
    # Kubernetes (kubernetes/kubernetes#47740) and OpenShift: the scheme stays, the token goes
    ((f"base64url.bearer.authorization.k8s.io.{K8S_TOKEN}", "base64.binary.k8s.io"), "base64.binary.k8s.io",
     ("base64url.bearer.authorization.k8s.io.<redacted>", "base64.binary.k8s.io"), "base64.binary.k8s.io"),
    (("base64.bearer.authorization.bXl0b2tlbg",), None, ("base64.bearer.authorization.<redacted>",), None),
    # Jupyter Server's token subprotocol next to its plain name
    (("v1.token.websocket.jupyter.org", "v1.token.websocket.jupyter.org.abc123def"),
     "v1.token.websocket.jupyter.org",
     ("v1.token.websocket.jupyter.org", "v1.token.websocket.jupyter.org.<redacted>"),
     "v1.token.websocket.jupyter.org"),
    # a JWT offered beside graphql-transport-ws; a JWT inside a dotted name
    (("graphql-transport-ws", JWT), "graphql-transport-ws", ("graphql-transport-ws", "<redacted>"),
     "graphql-transport-ws"),
    ((f"app.{JWT}.v2",), None, ("app.<redacted>.v2",), None),
    # ["access_token", <token>] (and Bearer) pairs; a server that echoes the token back
    (("access_token", "3gn11Ft0Me8lkqqW2/5uFQ="), "access_token", ("access_token", "<redacted>"),
     "access_token"),
    (("Bearer", "s3cr3t-T0ken-value"), "s3cr3t-T0ken-value", ("Bearer", "<redacted>"), "<redacted>"),
    # <name>-bearer.<token> / token-<token>
    (("feldera-bearer.ZmVsZGVyYS10b2tlbi0x",), None, ("feldera-bearer.<redacted>",), None),
    (("token-9f8e7d6c5b4a",), None, ("token-<redacted>",), None),
])
def test_credential_subprotocols_are_redacted(offered, chosen, shown, shown_chosen) -> None:
    assert redact_subprotocols(offered, chosen) == (shown, shown_chosen)


def test_ordinary_subprotocols_are_kept() -> None:
    names = ("v4.channel.k8s.io", "base64.binary.k8s.io", "graphql-ws", "graphql-transport-ws", "mqtt",
             "wamp.2.json", "v12.stomp", "ocpp2.0.1", "actioncable-v1-json", "soap", "access_token",
             "v1.token.websocket.jupyter.org", "auth.v1.example")
    assert redact_subprotocols(names, "mqtt") == (names, "mqtt")
    assert redact_subprotocols(("token", "graphql-transport-ws"), "graphql-transport-ws") == (
        ("token", "graphql-transport-ws"), "graphql-transport-ws")


@pytest.mark.parametrize(("target", "shown"), [
    ("/chat?token=abc&room=1", "/chat?token=<redacted>&room=1"),
    ("/c?ACCESS_TOKEN=a&Auth=b&jwt=c&signature=d&password=e&key=f&sig=g&secret=h&apikey=i&api_key=j"
     "&session=k&monkey=l",
     "/c?ACCESS_TOKEN=<redacted>&Auth=<redacted>&jwt=<redacted>&signature=<redacted>&password=<redacted>"
     "&key=<redacted>&sig=<redacted>&secret=<redacted>&apikey=<redacted>&api_key=<redacted>"
     "&session=<redacted>&monkey=l"),
    ("/hub?id=x&access_token=eyJ0eXAi.eyJzdWIi.c2ln", "/hub?id=x&access_token=<redacted>"),      # SignalR
    ("/p?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1&X-Amz-Date=20260101T000000Z"
     "&X-Amz-Security-Token=FQo&X-Amz-Signature=8a1f",
     "/p?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<redacted>&X-Amz-Date=20260101T000000Z"
     "&X-Amz-Security-Token=<redacted>&X-Amz-Signature=<redacted>"),
    ("/q?t=eyJhbGciOi.eyJzdWIi.sig&access%5Ftoken=1", "/q?t=<redacted>&access%5Ftoken=<redacted>"),
    ("/app;jsessionid=ABC123?x=1", "/app;jsessionid=<redacted>?x=1"),
    ("/cb#access_token=abc&state=1", "/cb#access_token=<redacted>&state=1"),
    ("ws://alice:pw@chat.example:8080/room?user=alice", "ws://<redacted>@chat.example:8080/room?user=alice"),
    ("/plain/path?room=lobby&n=2", "/plain/path?room=lobby&n=2"),
    ("/x?token=", "/x?token="),
])
def test_credential_query_parameters_and_userinfo_are_redacted(target: str, shown: str) -> None:
    assert redact_target(target) == shown


def _text_of(path: Path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv()
    return path.read_text("utf-8", errors="replace")


def test_no_secret_reaches_any_output(tmp_path: Path) -> None:
    """Tables, CSV, Parquet, JSON, the report and the summary: the secrets of the hostile
    capture appear nowhere, their schemes and the other parameters do."""
    a = analyzer.analyze(secrets(tmp_path, 1.0), progress=False)
    conns = a.connections
    assert len(conns) == 6 and set(conns.close_status) != {"handshake-failed"}
    outputs: dict[str, str] = {name: df.astype(str).to_csv() for name, df in
                               [("connections", conns), ("frames", a.frames), ("messages", a.messages),
                                ("problems", a.problems)]}
    outputs["summary"] = str(a.summary())
    written = [Path(p) for fmt in ("csv", "parquet", "json") for p in export(a, tmp_path / fmt, fmt)]
    written += [Path(p) for p in export(a, tmp_path / "all.json", "json")]
    a.report(tmp_path / "report")
    written += [p for p in (tmp_path / "report").rglob("*")
                if p.suffix in (".html", ".csv", ".json", ".parquet")]
    for path in written:
        outputs[str(path)] = _text_of(path)
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    offered = set(conns.subprotocols_offered.dropna())
    assert offered == {"v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.<redacted>",
                       "graphql-transport-ws, <redacted>", "graphql-ws, access_token, <redacted>"}
    paths = set(conns.path)
    assert "/graphql?token=<redacted>&room=lobby" in paths
    assert "ws://<redacted>@chat.example/room?user=alice" in paths
    assert ("/prod?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<redacted>"
            "&X-Amz-Signature=<redacted>") in paths
    assert set(conns.subprotocol.dropna()) == {"v4.channel.k8s.io", "graphql-transport-ws", "graphql-ws"}


def test_secrets_in_problem_details_are_redacted() -> None:
    """A subprotocol the client did not offer and an unanswered upgrade quote what was sent."""
    token = "base64url.bearer.authorization.k8s.io." + K8S_TOKEN
    parser = HandshakeParser()
    events = parser.feed(0, upgrade_request(path="/x?token=qs-secret-1",
                                            extra=f"Sec-WebSocket-Protocol: chat, {token}\r\n"), 1, 1)
    events += parser.feed(1, upgrade_response(extra=f"Sec-WebSocket-Protocol: {token}x\r\n"), 2, 2)
    details = " ".join(e.detail for e in events if isinstance(e, Problem))
    assert kinds(events) == [ProblemKind.SUBPROTOCOL_NOT_OFFERED]
    assert K8S_TOKEN not in details and "<redacted>" in details
    (done,) = [e for e in events if isinstance(e, HandshakeDone)]
    assert K8S_TOKEN not in (done.handshake.failure_reason or "")
    assert done.handshake.path == "/x?token=<redacted>"
    parser = HandshakeParser()
    events = parser.feed(0, upgrade_request(path="/x?token=qs-secret-1"), 1, 1) + parser.finish()
    assert kinds(events) == [ProblemKind.HANDSHAKE_NO_RESPONSE]
    assert all("qs-secret-1" not in e.detail for e in events if isinstance(e, Problem))


def test_a_malformed_cookie_or_authorization_line_is_quoted_without_its_value() -> None:
    """A 101 whose Set-Cookie line lacks its colon fails the handshake; the problem rows quote
    the header's name, never the cookie."""
    for line in (b"Set-Cookie session=s3cr3t-cookie", b"Authorization Bearer s3cr3t-cookie"):
        parser = HandshakeParser()
        response = upgrade_response().replace(b"Connection:", line + b"\r\nConnection:")
        events = parser.feed(0, upgrade_request(), 1, 1) + parser.feed(1, response, 2, 2)
        details = [e.detail for e in events if isinstance(e, Problem)]
        assert ProblemKind.HTTP_MALFORMED in kinds(events)
        assert details and all("s3cr3t" not in d and "<redacted>" in d for d in details), details
        (done,) = [e for e in events if isinstance(e, HandshakeDone)]
        assert "s3cr3t" not in (done.handshake.failure_reason or "")
