"""Hostile shapes of the "handshake" area (issue 13, items 9, 11, 12 and 20): HTTP Upgrade input
that used to cost memory or leak secrets into the outputs.

- pipelined-requests (item 9): connections whose client pipelines PIPELINED requests of ~63 KB
  header blocks each and then an upgrade request, with no answer from the server; every
  connection sends its n-th request before any sends its (n+1)-th, so all are buffering at once.
  Scale 1.0: 2 connections (8.4 MB of pcap, 0.1 MB gzipped); the issue's 80 connections are
  scale 40 (4.3 MB gzipped: 542-554 MB peak RSS for `summary` before the fix, 213-221 MB after:
  the ~145 MB of an empty analysis plus at most the 64 MB handshake budget).
- secrets (items 11 and 12): upgrades whose Sec-WebSocket-Protocol carries bearer tokens
  (Kubernetes, a JWT, graphql-ws/Hasura-style access_token) and whose request targets carry
  query-string credentials and userinfo; SECRETS lists every secret value, none may reach an output.
  Scale 1.0: one connection per shape of secret; larger scales repeat them.
- wrong-accept (item 20): RFC 6455 upgrades answered 101 with a Sec-WebSocket-Accept that is
  not the key's, each followed by one text message per side. Scale 1.0: one connection.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from tests.pcapgen import (
    SAMPLE_KEY,
    Conversation,
    PcapStream,
    frame,
    upgrade_request,
    upgrade_response,
)

MASK = b"\x11\x22\x33\x44"

#: pipelined requests per connection before the upgrade request, and their header block size
PIPELINED = 64
REQUEST_BYTES = 63 * 1024


def _upgraded(f: PcapStream, port: int, t: float, request: bytes, response: bytes) -> float:
    """One connection: the upgrade, one text message each way, both FINs; returns its end time."""
    conv = Conversation(client_port=port, t=t)
    conv.handshake()
    conv.send(0, request)
    conv.send(1, response)
    conv.send(0, frame(1, b"client text", mask=MASK))
    conv.send(1, frame(1, b"server text"))
    conv.fin(0)
    conv.fin(1)
    f.flush(conv)
    return conv.t


def pipelined_request(i: int, size: int = REQUEST_BYTES) -> bytes:
    """A GET whose header block is about `size` bytes (padded with 250 header fields: parsed,
    they cost more than their bytes, as the issue's did)."""
    head = f"GET /r{i} HTTP/1.1\r\nHost: h.example\r\n".encode()
    field = (size - len(head) - 2) // 250
    lines = [b"X-Pad-%03d: " % n for n in range(250)]
    lines = [line + b"a" * (field - len(line) - 2) + b"\r\n" for line in lines]
    body = head + b"".join(lines)
    return body + b"b" * 0 + b"\r\n"


def pipelined_connections(scale: float) -> int:
    return max(1, round(2 * scale))


def pipelined_requests(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 9: pipelined 63 KB requests then an upgrade request, on many connections, unanswered."""
    path = directory / f"pipelined-requests-{scale:g}.pcap.gz"
    convs = [Conversation(client_port=20000 + i, step=0.00001) for i in range(pipelined_connections(scale))]
    t = convs[0].t
    with PcapStream(path) as f:
        for conv in convs:
            conv.t = t
            conv.handshake()
            t = conv.t
            f.flush(conv)
        for n in range(PIPELINED + 1):
            data = pipelined_request(n) if n < PIPELINED else upgrade_request()
            for conv in convs:
                conv.t = t
                conv.send(0, data)
                t = conv.t
                f.flush(conv)
        for conv in convs:
            conv.t = t
            conv.fin(0)
            conv.fin(1)
            t = conv.t
            f.flush(conv)
    return path


# --- secrets -------------------------------------------------------------------------------------

K8S_TOKEN = "ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklrcFhWQ0o5LnNlY3JldC1rOHM"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjoxOTk5OTk5OTk5fQ"
       ".c2lnbmF0dXJlLW9mLXRoZS1qd3Q")
HASURA_TOKEN = "hasura-access-secret-91b2"
QUERY_TOKEN = "qs-token-5c1e"
AMZ_SIGNATURE = "8a1f0e4c9d2b7a6f5e3c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e"
AMZ_CREDENTIAL = "AKIAEXAMPLEKEY%2F20260101%2Fus-east-1%2Fexecute-api%2Faws4_request"
USER_PASSWORD = "hunter2-pw"
SIGNALR_TOKEN = "signalr-bearer-77aa"

#: every secret the shape puts on the wire; none may appear in any output
SECRETS = (K8S_TOKEN, JWT, HASURA_TOKEN, QUERY_TOKEN, AMZ_SIGNATURE, AMZ_CREDENTIAL, USER_PASSWORD,
           SIGNALR_TOKEN)

#: (request target, Sec-WebSocket-Protocol offered, subprotocol chosen by the server or None)
SECRET_UPGRADES: tuple[tuple[str, str | None, str | None], ...] = (
    ("/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true",
     f"v4.channel.k8s.io, base64url.bearer.authorization.k8s.io.{K8S_TOKEN}", "v4.channel.k8s.io"),
    (f"/graphql?token={QUERY_TOKEN}&room=lobby", f"graphql-transport-ws, {JWT}", "graphql-transport-ws"),
    ("/v1/graphql", f"graphql-ws, access_token, {HASURA_TOKEN}", "graphql-ws"),
    (f"/prod?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AMZ_CREDENTIAL}"
     f"&X-Amz-Signature={AMZ_SIGNATURE}", None, None),
    (f"/hub?id=abc&access_token={SIGNALR_TOKEN}", None, None),
    (f"ws://alice:{USER_PASSWORD}@chat.example/room?user=alice", None, None),
)


def secrets(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Items 11 and 12: upgrades carrying credentials in the subprotocol and the request target."""
    path = directory / f"secrets-{scale:g}.pcap.gz"
    rounds = max(1, round(scale))
    t = 1_700_000_000.0
    with PcapStream(path) as f:
        for r in range(rounds):
            for i, (target, offered, chosen) in enumerate(SECRET_UPGRADES):
                request = upgrade_request(
                    path=target, extra=f"Sec-WebSocket-Protocol: {offered}\r\n" if offered else "")
                response = upgrade_response(extra=f"Sec-WebSocket-Protocol: {chosen}\r\n" if chosen else "")
                t = _upgraded(f, 30000 + (r * len(SECRET_UPGRADES) + i) % 30000, t, request, response)
    return path


# --- wrong accept --------------------------------------------------------------------------------

#: the RFC 6455 §1.3 sample key's accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=; this is another key's
WRONG_ACCEPT = "HSmrc0sMlYUkAGmm5OPpG2HaGWk="

#: the 101 answer, byte by byte, with the wrong accept
WRONG_ACCEPT_RESPONSE = (b"HTTP/1.1 101 Switching Protocols\r\n"
                         b"Upgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n"
                         b"\r\n")


def wrong_accept(directory: pathlib.Path, scale: float = 1.0) -> pathlib.Path:
    """Item 20: 101 answers whose Sec-WebSocket-Accept does not match, then one message per side."""
    path = directory / f"wrong-accept-{scale:g}.pcap.gz"
    t = 1_700_000_000.0
    with PcapStream(path) as f:
        for i in range(max(1, round(scale))):
            t = _upgraded(f, 40000 + i % 20000, t, upgrade_request(key=SAMPLE_KEY), WRONG_ACCEPT_RESPONSE)
    return path


SHAPES: dict[str, Callable[[pathlib.Path, float], pathlib.Path]] = {
    "pipelined-requests": pipelined_requests,
    "secrets": secrets,
    "wrong-accept": wrong_accept,
}
