"""STOMP 1.0-1.2 decoder (analyzer/app/protocols/stomp.py) on frames built here from the STOMP 1.2
specification (stomp.github.io/stomp-specification-1.2.html)."""

from __future__ import annotations

import contextlib
import random
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analyzer
from analyzer.app import registry
from analyzer.app.base import AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols import _common, stomp
from analyzer.app.protocols.stomp import StompDecoder
from tests.app_captures import assert_tables_agree, decode, expected, pair, ws_capture, ws_messages


def frame(command: str, *headers: tuple[str, str], body: bytes = b"", length: bool = False,
          eol: bytes = b"\n") -> bytes:
    head = [command.encode()] + [f"{k}:{v}".encode() for k, v in headers]
    if length:
        head.append(f"content-length:{len(body)}".encode())
    return eol.join(head) + eol + eol + body + b"\0"


def ws(payload: bytes, sender: str = "client", *, complete: bool = True, text: bool = True) -> WsMessage:
    return WsMessage(conn_id=1, message_id=0, sender=sender, ts_ns=0, text=text, payload=payload,
                     complete=complete)


def summary(msgs: list[AppMessage]) -> list[tuple[object, ...]]:
    return [(m.type, m.channel, m.correlation_id, m.role, m.status) for m in msgs]


CONNECT = frame("CONNECT", ("accept-version", "1.0,1.1,1.2"), ("host", "/"), ("heart-beat", "10000,10000"),
                ("login", "guest"), ("passcode", "guest"))
CONNECTED = frame("CONNECTED", ("version", "1.2"), ("heart-beat", "0,10000"), ("server", "RabbitMQ/3.12"),
                  ("session", "sess-1"))
BINARY = b"\x00\x01\x00NUL inside\x00"
SESSION = [
    ("client", CONNECT),
    ("server", CONNECTED),
    ("client", frame("SUBSCRIBE", ("id", "sub-0"), ("destination", "/queue/a"), ("ack", "client-individual"),
                     ("receipt", "r1"))),
    ("server", frame("RECEIPT", ("receipt-id", "r1"))),
    ("client", frame("SEND", ("destination", "/queue/a"), ("content-type", "application/octet-stream"),
                     ("receipt", "r2"), body=BINARY, length=True)),
    ("server", frame("RECEIPT", ("receipt-id", "r2"))),
    ("server", frame("MESSAGE", ("subscription", "sub-0"), ("message-id", "m-1"), ("destination", "/queue/a"),
                     ("ack", "a-1"), ("content-type", "application/octet-stream"), body=BINARY, length=True)),
    ("client", frame("ACK", ("id", "a-1"))),
    ("client", frame("BEGIN", ("transaction", "tx1"))),
    ("client", frame("SEND", ("destination", "/topic/t"), ("transaction", "tx1"), body=b"hello")),
    ("client", frame("COMMIT", ("transaction", "tx1"))),
    ("client", frame("BEGIN", ("transaction", "tx2"))),
    ("client", frame("ABORT", ("transaction", "tx2"))),
    ("client", frame("NACK", ("id", "a-2"))),
    ("client", b"\n"),
    ("server", b"\r\n"),
    ("client", frame("SEND", ("destination", "/queue/forbidden"), ("receipt", "r4"))),
    ("server", frame("ERROR", ("receipt-id", "r4"), ("message", "access refused"), body=b"details")),
    ("client", frame("UNSUBSCRIBE", ("id", "sub-0"), ("receipt", "r3"))),
    ("server", frame("RECEIPT", ("receipt-id", "r3"))),
    ("client", frame("DISCONNECT", ("receipt", "r5"))),
    ("server", frame("RECEIPT", ("receipt-id", "r5"))),
]


def run(messages: list[tuple[str, bytes]]) -> tuple[StompDecoder, list[AppMessage]]:
    dec = StompDecoder()
    out: list[AppMessage] = []
    for sender, payload in messages:
        out.extend(dec.feed(ws(payload, sender)))
    assert dec.finish() == []
    return dec, out


def test_registered_and_sniffed() -> None:
    for sub in ("v12.stomp", "v11.stomp", "v10.stomp"):
        assert registry.by_subprotocol(sub) is StompDecoder
    assert StompDecoder.sniff(ws(CONNECT)) == 0.9
    assert StompDecoder.sniff(ws(frame("STOMP", ("accept-version", "1.2"), eol=b"\r\n"))) == 0.9
    assert StompDecoder.sniff(ws(frame("SEND", ("destination", "/a")))) == 0.0
    assert StompDecoder.sniff(ws(b"CONNECTED\n\n\0")) == 0.0
    found = registry.by_content(ws(CONNECT))
    assert found is not None and found[0] is StompDecoder


def test_a_whole_session_every_command() -> None:
    dec, got = run(SESSION)
    assert summary(got) == [
        ("CONNECT", None, "connect", "request", None),
        ("CONNECTED", None, "connect", "response", "ok"),
        ("SUBSCRIBE", "/queue/a", "receipt:r1", "request", None),
        ("RECEIPT", "/queue/a", "receipt:r1", "response", "ok"),
        ("SEND", "/queue/a", "receipt:r2", "request", None),
        ("RECEIPT", "/queue/a", "receipt:r2", "response", "ok"),
        ("MESSAGE", "/queue/a", None, "message", None),
        ("ACK", None, None, "message", None),
        ("BEGIN", None, None, "message", None),
        ("SEND", "/topic/t", None, "message", None),
        ("COMMIT", None, None, "message", None),
        ("BEGIN", None, None, "message", None),
        ("ABORT", None, None, "message", None),
        ("NACK", None, None, "message", None),
        ("HEARTBEAT", None, None, "message", None),
        ("HEARTBEAT", None, None, "message", None),
        ("SEND", "/queue/forbidden", "receipt:r4", "request", None),
        ("ERROR", "/queue/forbidden", "receipt:r4", "response", "error"),
        ("UNSUBSCRIBE", "/queue/a", "receipt:r3", "request", None),
        ("RECEIPT", "/queue/a", "receipt:r3", "response", "ok"),
        ("DISCONNECT", None, "receipt:r5", "request", None),
        ("RECEIPT", None, "receipt:r5", "response", "ok"),
    ]
    assert dec.version == "1.2"
    assert got[0].fields == {"accept-version": "1.0,1.1,1.2", "heart-beat": "10000,10000", "host": "/",
                             "login": True, "body_len": 0}
    assert got[1].fields == {"version": "1.2", "heart-beat": "0,10000", "server": "RabbitMQ/3.12",
                             "session": "sess-1", "body_len": 0}
    assert got[4].fields == {"content-type": "application/octet-stream", "content-length": str(len(BINARY)),
                             "receipt": "r2", "body_len": len(BINARY)}
    assert got[6].fields == {"subscription": "sub-0", "message-id": "m-1", "ack": "a-1",
                             "content-type": "application/octet-stream",
                             "content-length": str(len(BINARY)), "body_len": len(BINARY)}
    assert got[9].fields == {"transaction": "tx1", "body_len": 5}
    assert got[17].fields == {"message": "access refused", "receipt-id": "r4", "body_len": 7}
    assert {m.protocol for m in got} == {"stomp"}


def test_refused_connect_and_a_bare_error() -> None:
    _, got = run([("client", CONNECT), ("server", frame("ERROR", ("message", "bad login"))),
                  ("server", frame("ERROR", ("message", "later")))])
    assert summary(got)[1:] == [("ERROR", None, "connect", "response", "error"),
                                ("ERROR", None, None, "message", "error")]


def stream_of(sender: str) -> bytes:
    # EOLs between frames are allowed (frame = ... NULL *( EOL )) and skipped
    return b"\r\n".join(p for s, p in SESSION if s == sender and p.strip(b"\r\n"))


def decode_chunks(chunks: list[bytes], sender: str) -> list[tuple[object, ...]]:
    dec = StompDecoder()
    if sender == "server":
        dec.feed(ws(CONNECT))
    out: list[AppMessage] = []
    for chunk in chunks:
        out.extend(dec.feed(ws(chunk, sender)))
    assert dec.finish() == []
    return summary(out)


@pytest.mark.parametrize("sender", ["client", "server"])
def test_several_frames_per_message_and_split_at_every_offset(sender: str) -> None:
    data = stream_of(sender)
    whole = decode_chunks([data], sender)
    assert len(whole) == len([1 for s, p in SESSION if s == sender and p.strip(b"\r\n")])
    # byte by byte: the EOLs between frames, alone in a message, are heart-beats; the frames are the same
    one_by_one = decode_chunks([data[i:i + 1] for i in range(len(data))], sender)
    assert [t for t in one_by_one if t[0] != "HEARTBEAT"] == whole
    for cut in range(1, len(data)):
        chunks = [data[:cut], data[cut:]]
        if not chunks[1].strip(b"\r\n"):     # a message of bare EOLs is a heart-beat: not this test
            continue
        assert decode_chunks(chunks, sender) == whole, cut
    rnd = random.Random(3)
    for _ in range(30):
        cuts = sorted(rnd.sample(range(1, len(data)), 6))
        pieces = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])]
        if all(p.strip(b"\r\n") for p in pieces[1:]):
            assert decode_chunks(pieces, sender) == whole


def test_crlf_frames() -> None:
    _, got = run([("client", frame("SEND", ("destination", "/q"), body=b"x", eol=b"\r\n"))])
    assert summary(got) == [("SEND", "/q", None, "message", None)]
    assert got[0].fields["body_len"] == 1


def test_header_escapes_by_version() -> None:
    escaped = frame("SEND", ("destination", r"/a\cb\nc\\d\re"))
    _, got = run([("client", escaped)])
    assert got[0].channel == "/a:b\nc\\d\re"
    # repeated header: the first value counts
    _, got = run([("client", frame("SEND", ("destination", "/first"), ("destination", "/second")))])
    assert got[0].channel == "/first"
    # CONNECT and CONNECTED are never unescaped
    dec = StompDecoder()
    got = dec.feed(ws(frame("CONNECT", ("accept-version", "1.2"), ("host", r"a\tb"))))
    assert got[0].fields["host"] == r"a\tb"
    # STOMP 1.1 knows no \r; 1.0 no escapes at all
    dec = StompDecoder()
    dec.feed(ws(frame("CONNECTED", ("version", "1.1")), "server"))
    with pytest.raises(AppMalformed, match=re.escape(r"undefined escape \r")):
        dec.feed(ws(escaped))
    assert dec.feed(ws(frame("SEND", ("destination", r"/a\cb"))))[0].channel == "/a:b"
    dec = StompDecoder()
    dec.feed(ws(frame("CONNECTED"), "server"))
    assert dec.version == "1.0"
    assert dec.feed(ws(escaped))[0].channel == r"/a\cb\nc\\d\re"


MALFORMED = [
    (frame("SEND", ("destination", r"/a\t")), r"undefined escape \t in a header"),
    (frame("SEND", ("destination", "/a\\")), "undefined escape \\ in a header"),
    (frame("FROB"), "unknown command 'FROB'"),
    (b"SEND\ndestination\n\nx\0", "header line 'destination' is not name:value"),
    (b"SEND\n:x\n\nx\0", "header line ':x' is not name:value"),
    (b"SEND\ndestination:\xff\n\n\0", "header block is not UTF-8"),
    (frame("SEND", ("destination", "/a"), ("content-length", "x1")), "SEND: content-length 'x1'"),
    (frame("SEND", ("destination", "/a"), ("content-length", "-1")), "content-length '-1'"),
    (b"SEND\ndestination:/a\ncontent-length:1\n\nxy\0", "SEND: no NUL after the 1 octets of content-length"),
    (frame("SEND"), "SEND without destination"),
    (frame("RECEIPT"), "RECEIPT without receipt-id"),
    (frame("BEGIN"), "BEGIN without transaction"),
    (frame("MESSAGE", ("destination", "/a")), "MESSAGE sent by the client"),
    (b"garbage\0", "frame ended (NUL) inside its header block, after 7 bytes"),
    (b"SEND\ndestination:/a\0", "frame ended (NUL) inside its header block, after 19 bytes"),
]


@pytest.mark.parametrize(("bad", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_frames_then_decoding_resumes(bad: bytes, reason: str) -> None:
    dec = StompDecoder()
    good = frame("ACK", ("id", "1"))
    with pytest.raises(AppMalformed, match=re.escape(reason)) as info:
        dec.feed(ws(good + bad + good))
    assert [m.type for m in info.value.messages] == ["ACK", "ACK"]
    assert [m.type for m in dec.feed(ws(good))] == ["ACK"]


def test_bad_frame_whose_nul_comes_later_is_dropped_up_to_it() -> None:
    dec = StompDecoder()
    with pytest.raises(AppMalformed, match="unknown command"):
        dec.feed(ws(b"FROB\n\nbody without its end"))
    assert dec.feed(ws(b"more body")) == []
    assert [m.type for m in dec.feed(ws(b"end\0" + frame("ACK", ("id", "1"))))] == ["ACK"]


def test_large_content_length_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stomp, "MAX_BODY", 100)
    big = frame("SEND", ("destination", "/big"), body=bytes(1000), length=True)
    dec = StompDecoder()
    got = dec.feed(ws(big[:300]))
    assert summary(got) == [("SEND", "/big", None, "message", None)]
    assert got[0].fields["body_len"] == 1000
    assert not dec._streams["client"].buf
    assert dec.feed(ws(big[300:800])) == []
    assert [m.type for m in dec.feed(ws(big[800:] + frame("ACK", ("id", "1"))))] == ["ACK"]


def test_no_nul_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stomp, "MAX_BODY", 100)
    dec = StompDecoder()
    assert dec.feed(ws(b"SEND\ndestination:/a\n\n" + bytes(range(1, 60)))) == []
    with pytest.raises(AppMalformed, match="SEND: no NUL within"):
        dec.feed(ws(bytes(range(1, 60))))
    assert not dec._streams["client"].buf
    assert [m.type for m in dec.feed(ws(b"tail\0" + frame("ACK", ("id", "1"))))] == ["ACK"]


def test_header_block_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stomp, "MAX_HEAD", 64)
    dec = StompDecoder()
    with pytest.raises(AppMalformed, match="no end of headers within 64 bytes"):
        dec.feed(ws(b"SEND\n" + b"x:y\n" * 30 + b"\n\0" + frame("ACK", ("id", "1"))))


def test_body_without_content_length_across_messages() -> None:
    dec = StompDecoder()
    assert dec.feed(ws(b"SEND\ndestination:/a\n\npart one, ")) == []
    assert dec.feed(ws(b"part two, ")) == []
    got = dec.feed(ws(b"end\0"))
    assert got[0].fields["body_len"] == len(b"part one, part two, end")


def test_a_message_cut_by_a_gap_drops_the_rest_of_its_frame() -> None:
    dec = StompDecoder()
    got = dec.feed(ws(frame("ACK", ("id", "1")) + b"SEND\ndestination:/a\n\nhal", complete=False))
    assert [m.type for m in got] == ["ACK"]
    assert dec.feed(ws(b"f of the body\0")) == []
    assert [m.type for m in dec.feed(ws(frame("ACK", ("id", "2"))))] == ["ACK"]


def test_finish_reports_an_unfinished_frame() -> None:
    dec = StompDecoder()
    dec.feed(ws(b"SEND\ndestination:/a\n\nhal"))
    with pytest.raises(AppMalformed, match="client: 24 bytes of an unfinished frame at the end"):
        dec.finish()


def test_long_values_are_clipped() -> None:
    _, got = run([("client", frame("SEND", ("destination", "/" + "d" * 1000), ("receipt", "r" * 500)))])
    assert got[0].channel is not None and len(got[0].channel) == 200
    assert got[0].correlation_id == "receipt:" + "r" * 199 + "…"


VALID = [p for _, p in SESSION]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=8))
def test_fuzz_random_bytes_only_app_malformed(chunks: list[bytes]) -> None:
    dec = StompDecoder()
    for i, chunk in enumerate(chunks):
        with contextlib.suppress(AppMalformed):
            dec.feed(ws(chunk, "client" if i % 2 else "server", complete=i != 2))
    with contextlib.suppress(AppMalformed):
        dec.finish()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_frames(data: st.DataObject) -> None:
    raw = bytearray(b"".join(data.draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=5))))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.sampled_from(b"\0\n\r:\\cx\xff"))
    cut = data.draw(st.integers(0, len(raw)))
    dec = StompDecoder()
    for piece in (bytes(raw[:cut]), bytes(raw[cut:])):
        for sender in ("client", "server"):
            with contextlib.suppress(AppMalformed):
                dec.feed(ws(piece, sender))


# -- real capture: stomp.py's WSStompConnection against RabbitMQ's web-STOMP (captures/make_app2.py) --

#: timestamps of the capture and of the programs' logs come from the same clock (µs resolution)
TOL = 1e-5


def test_capture_frames_agree_with_what_stomp_py_logged() -> None:
    exp = expected("stomp")
    streams = ws_messages("stomp")
    assert sorted(streams) == sorted(c["client_port"] for c in exp["connections"])
    counts: dict[str, dict[str, int]] = {"client": {}, "server": {}}
    for port, msgs in streams.items():
        decoded = decode(StompDecoder, msgs)
        subscribed = {}
        for sender in ("client", "server"):
            logged = [m for m in exp["messages"] if m["client_port"] == port and m["sender"] == sender]
            ours = [(msg, app) for msg, app in decoded if msg.sender == sender]
            assert [app.type for _, app in ours] == [m["type"] for m in logged]
            for (msg, app), theirs in zip(ours, logged):
                counts[sender][app.type] = counts[sender].get(app.type, 0) + 1
                assert app.fields.get("body_len", 0) == theirs["body_len"]
                if app.type == "HEARTBEAT":
                    assert not msg.payload.strip(b"\r\n")
                    continue
                # one frame per WebSocket message here: its headers, escapes undone, are what was logged
                head = msg.payload[:msg.payload.index(b"\n\n")]
                _, headers = stomp._head(head, "1.2")
                assert {k: headers.get(k) for k in theirs["headers"]} == theirs["headers"]
                if theirs["channel"] is not None:
                    assert app.channel == theirs["channel"]
                if app.type == "SUBSCRIBE":
                    subscribed[headers["id"]] = headers["destination"]
                if app.type == "UNSUBSCRIBE":    # stomp.py does not know the destination; we do
                    assert app.channel == subscribed[headers["id"]]
    assert counts == exp["counts"]


def test_capture_receipts_and_errors_pair_within_stomp_py_timings() -> None:
    exp = expected("stomp")
    for port, msgs in ws_messages("stomp").items():
        closed, unanswered = pair(decode(StompDecoder, msgs))
        logged = [r for r in exp["requests"] if r["client_port"] == port]
        assert sorted(str(a.correlation_id) for a in unanswered) == sorted(
            r["correlation_id"] for r in logged if r["response_type"] is None)
        answered = [r for r in logged if r["response_type"] is not None]
        assert sum(len(v) for v in closed.values()) == len(answered)
        for r in answered:
            t_req, t_resp, req, resp = closed[r["correlation_id"]].pop(0)
            assert (req.type, resp.type, resp.status) == (r["request_type"], r["response_type"], r["status"])
            assert req.channel == resp.channel
            if r["channel"] is not None:
                assert req.channel == r["channel"]
            assert resp.fields.get("message") == r["error_message"]
            assert r["t_send"] - TOL <= t_req and t_resp <= r["t_recv"] + TOL
            assert t_resp - t_req <= r["latency_ms"] / 1e3 + 2 * TOL


def test_a_receipt_header_on_a_server_frame_asks_for_nothing() -> None:
    # RabbitMQ copies the SEND's headers, receipt included, into the MESSAGE it delivers
    _, got = run([("server", frame("MESSAGE", ("destination", "/q"), ("receipt", "r9")))])
    assert summary(got) == [("MESSAGE", "/q", None, "message", None)]


def test_capture_through_analyze_gives_the_same_rows() -> None:
    assert_tables_agree("stomp", StompDecoder)


# -- through analyze(): a capture built here, several frames per text message and a frame split ------

@pytest.mark.parametrize("subprotocol", ["v12.stomp", None])
def test_analyze_decodes_frames_across_and_within_messages(tmp_path: Path, subprotocol: str | None) -> None:
    send = frame("SEND", ("destination", "/queue/a"), ("receipt", "r1"), body=BINARY, length=True)
    path = ws_capture(tmp_path / "stomp.pcap", [
        (0, CONNECT),                                                       # 1
        (1, CONNECTED),                                                     # 2
        (0, frame("SUBSCRIBE", ("id", "s"), ("destination", "/queue/a")) + send[:30]),   # 3
        (0, send[30:]),                                                     # 4: SEND completed
        (1, b"\n"),                                                         # 5: heart-beat
        (1, frame("RECEIPT", ("receipt-id", "r1")) + frame("MESSAGE", ("destination", "/queue/a"),
                                                           ("subscription", "s"), ("message-id", "1"))),
        (0, b"FROB\n\n\0" + frame("DISCONNECT", ("receipt", "bye"))),       # 7: bad frame, then one
    ], subprotocol, binary=False)
    a = analyzer.analyze(path, jobs=1)
    assert a.connections["app_protocol"].tolist() == ["stomp"]
    m = a.app_messages
    assert m["chosen_by"].astype(str).unique().tolist() == ["subprotocol" if subprotocol else "content"]
    got = list(zip(m["message_id"], m["app_index"], m["type"].astype(str), m["channel"].astype(object)))
    assert got == [(1, 0, "CONNECT", pd.NA), (2, 0, "CONNECTED", pd.NA), (3, 0, "SUBSCRIBE", "/queue/a"),
                   (4, 0, "SEND", "/queue/a"), (5, 0, "HEARTBEAT", pd.NA), (6, 0, "RECEIPT", "/queue/a"),
                   (6, 1, "MESSAGE", "/queue/a"), (7, 0, "DISCONNECT", pd.NA)]
    e = a.exchanges.set_index("correlation_id")
    assert e.loc["connect", "latency"] == pytest.approx(0.01)
    assert e.loc["receipt:r1", "method"] == "/queue/a"
    assert e.loc["receipt:r1", "latency"] == pytest.approx(0.02)     # SEND completed by message 4
    assert not e.loc["receipt:bye", "answered"]
    [problem] = a.problems.itertuples()
    assert problem.kind == "app-protocol-malformed" and "message 7: unknown command 'FROB'" in problem.detail


def test_frames_per_message_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "MAX_PER_MESSAGE", 3)
    ack = frame("ACK", ("id", "1"))
    dec = StompDecoder()
    with pytest.raises(AppMalformed, match=f"over 3 frames in one message: its last {2 * len(ack)} bytes"
                       ) as info:
        dec.feed(ws(ack * 5))
    assert [m.type for m in info.value.messages] == ["ACK"] * 3
    assert [m.type for m in dec.feed(ws(ack))] == ["ACK"]
