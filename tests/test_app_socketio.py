"""The Socket.IO v4 / Engine.IO v4 decoder (analyzer/app/protocols/socketio.py) on messages built
here as the socket.io-protocol v5 and engine.io-protocol v4 documents spell them."""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.app.base import AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols.socketio import MAX_OPEN_ACKS, SocketIODecoder
from analyzer.app.registry import by_content, by_subprotocol, decoders
from tests.app_captures import assert_tables_agree
from tests.app_wire import Decoded, decode_capture, exchanges

_ids = itertools.count(1)


def ws(sender: str, payload: bytes, *, text: bool = True, complete: bool = True) -> WsMessage:
    return WsMessage(conn_id=1, message_id=next(_ids), sender=sender, ts_ns=0, text=text,
                     payload=payload, complete=complete)


def one(decoder: SocketIODecoder, sender: str, payload: bytes) -> AppMessage:
    out = decoder.feed(ws(sender, payload))
    assert len(out) == 1, out
    return out[0]


def summary(app: AppMessage) -> tuple[object, ...]:
    return (app.type, app.channel, app.correlation_id, app.role, app.status)


def test_engineio_open_and_heartbeat() -> None:
    dec = SocketIODecoder()
    open_ = one(dec, "server", b'0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
                               b'"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}')
    assert summary(open_) == ("open", None, None, "message", None)
    assert open_.fields == {"sid": "lv_VI97HAXpY6yYWAAAC", "upgrades": "websocket",
                            "pingInterval": 25000, "pingTimeout": 5000, "maxPayload": 1000000}
    assert summary(one(dec, "server", b"2")) == ("ping", None, "eio-ping", "request", None)
    assert summary(one(dec, "client", b"3")) == ("pong", None, "eio-ping", "response", "ok")


def test_engineio_upgrade_probe_and_the_other_packets() -> None:
    dec = SocketIODecoder()
    probe = one(dec, "client", b"2probe")
    assert summary(probe) == ("ping", None, "eio-probe", "request", None)
    assert probe.fields == {"data": "probe"}
    assert summary(one(dec, "server", b"3probe")) == ("pong", None, "eio-probe", "response", "ok")
    assert one(dec, "client", b"5").type == "upgrade"
    assert one(dec, "server", b"6").type == "noop"
    assert one(dec, "client", b"1").type == "close"


def test_connect_to_namespaces_ok_and_refused() -> None:
    dec = SocketIODecoder()
    assert summary(one(dec, "client", b"40")) == ("CONNECT", None, "c:connect:/", "request", None)
    ok = one(dec, "server", b'40{"sid":"wZX3oN0bSVIhsaknAAAI"}')
    assert summary(ok) == ("CONNECT", None, "c:connect:/", "response", "ok")
    assert ok.fields == {"namespace": "/", "sid": "wZX3oN0bSVIhsaknAAAI"}
    admin = one(dec, "client", b'40/admin,{"token":"123","user":"x"}')
    assert summary(admin) == ("CONNECT", None, "c:connect:/admin", "request", None)
    assert admin.fields == {"namespace": "/admin", "auth_keys": "token,user"}
    # a protocol 4 client puts its query string (often a token) in the namespace: not kept
    v2 = one(dec, "client", b"40/admin?token=s3cr3t&x=1,")
    assert summary(v2) == ("CONNECT", None, "c:connect:/admin", "request", None)
    assert v2.fields == {"namespace": "/admin", "namespace_query": True}
    assert "s3cr3t" not in repr(one(dec, "client", b'42/admin?token=s3cr3t,["ev"]'))
    refused = one(dec, "server", b'44/admin,{"message":"Not authorized"}')
    assert summary(refused) == ("CONNECT_ERROR", None, "c:connect:/admin", "response",
                                "error: Not authorized")
    # protocol 4 (socket.io 2) sent the reason as a bare string
    assert one(dec, "server", b'44"Invalid namespace"').status == "error: Invalid namespace"


def test_events_acks_and_namespaces() -> None:
    dec = SocketIODecoder()
    plain = one(dec, "server", b'42["hello",1,{"a":[2]}]')
    assert summary(plain) == ("EVENT", "hello", None, "message", None)
    assert plain.fields == {"namespace": "/", "args": 2}
    asked = one(dec, "client", b'4212["question","why?"]')
    assert summary(asked) == ("EVENT", "question", "c:/:12", "request", None)
    assert asked.fields == {"namespace": "/", "ack_id": 12, "args": 1}
    # the server asks with the same number in another namespace: a different exchange
    other = one(dec, "server", b'42/admin,12["project:delete",123]')
    assert summary(other) == ("EVENT", "project:delete", "s:/admin:12", "request", None)
    answer = one(dec, "server", b'4312["because"]')
    assert summary(answer) == ("ACK", "question", "c:/:12", "response", "ok")
    assert answer.fields == {"namespace": "/", "ack_id": 12, "args": 1}
    answer2 = one(dec, "client", b"43/admin,12[]")
    assert summary(answer2) == ("ACK", "project:delete", "s:/admin:12", "response", "ok")
    # an ACK nobody is known to have asked for (the capture began later): no channel
    assert summary(one(dec, "client", b"4399[]")) == ("ACK", None, "s:/:99", "response", "ok")
    # socket.io-parser 4.2 accepts numbers as event names
    assert one(dec, "client", b"42[7]").channel == "7"
    assert summary(one(dec, "client", b"41/admin,")) == ("DISCONNECT", None, None, "message", None)
    assert one(dec, "client", b"41").fields == {"namespace": "/"}


def test_binary_event_waits_for_its_attachments() -> None:
    dec = SocketIODecoder()
    head = b'451-["upload",{"name":"a.bin","data":{"_placeholder":true,"num":0}}]'
    assert dec.feed(ws("client", head)) == []
    done = dec.feed(ws("client", b"\x00\x01\x02", text=False))
    assert [summary(app) for app in done] == [("BINARY_EVENT", "upload", None, "message", None)]
    assert done[0].fields == {"namespace": "/", "args": 1, "attachments": 1, "attachment_bytes": 3}


def test_binary_event_with_ack_and_binary_ack_interleaved_with_the_other_side() -> None:
    dec = SocketIODecoder()
    head = (b'452-/files,7["up",{"_placeholder":true,"num":1},'
            b'[{"_placeholder":true,"num":0}]]')
    assert dec.feed(ws("client", head)) == []
    # the other direction goes on meanwhile
    assert summary(one(dec, "server", b"2")) == ("ping", None, "eio-ping", "request", None)
    assert one(dec, "server", b'42["news"]').channel == "news"
    assert dec.feed(ws("client", b"x" * 10, text=False)) == []
    assert summary(one(dec, "client", b"3")) == ("pong", None, "eio-ping", "response", "ok")
    (event,) = dec.feed(ws("client", b"y" * 5, text=False))
    assert summary(event) == ("BINARY_EVENT", "up", "c:/files:7", "request", None)
    assert event.fields == {"namespace": "/files", "ack_id": 7, "args": 2, "attachments": 2,
                            "attachment_bytes": 15}
    assert dec.feed(ws("server", b'461-/files,7[{"_placeholder":true,"num":0}]')) == []
    (ack,) = dec.feed(ws("server", b"\xff" * 4, text=False))
    assert summary(ack) == ("BINARY_ACK", "up", "c:/files:7", "response", "ok")
    assert ack.fields == {"namespace": "/files", "ack_id": 7, "args": 1, "attachments": 1,
                          "attachment_bytes": 4}


def test_a_binary_packet_short_of_attachments_is_malformed_and_still_recorded() -> None:
    dec = SocketIODecoder()
    assert dec.feed(ws("server", b'452-["pics",{"_placeholder":true,"num":0},'
                                 b'{"_placeholder":true,"num":1}]')) == []
    assert dec.feed(ws("server", b"12345", text=False)) == []
    with pytest.raises(AppMalformed, match=r"1 of 2 attachment\(s\), then a new packet") as info:
        dec.feed(ws("server", b'42["next"]'))
    cut, nxt = info.value.messages
    assert (cut.type, cut.channel, cut.fields["attachments_missing"]) == ("BINARY_EVENT", "pics", 1)
    assert cut.fields["attachment_bytes"] == 5
    assert (nxt.type, nxt.channel) == ("EVENT", "next")
    # the packet that cut it short is malformed too: both reasons, the cut packet kept
    assert dec.feed(ws("server", b'451-["more",{"_placeholder":true,"num":0}]')) == []
    with pytest.raises(AppMalformed, match=r"malformed too .*not a non-empty JSON array") as info:
        dec.feed(ws("server", b"42[]"))
    assert [app.channel for app in info.value.messages] == ["more"]
    # at the end of the connection, both directions waiting
    assert dec.feed(ws("client", b'451-["late",{"_placeholder":true,"num":0}]')) == []
    assert dec.feed(ws("server", b'461-3[{"_placeholder":true,"num":0}]')) == []
    with pytest.raises(AppMalformed, match="the end of the connection") as info:
        dec.finish()
    assert sorted(app.type for app in info.value.messages) == ["BINARY_ACK", "BINARY_EVENT"]
    assert all(app.fields["attachments_missing"] == 1 for app in info.value.messages)
    assert dec.finish() == []


def test_zero_attachments_is_reported_at_once() -> None:
    (app,) = SocketIODecoder().feed(ws("client", b'450-["nothing"]'))
    assert (app.type, app.fields["attachments"], app.fields["attachment_bytes"]) == (
        "BINARY_EVENT", 0, 0)


def test_placeholders_not_matching_the_count_are_malformed_at_the_last_attachment() -> None:
    dec = SocketIODecoder()
    assert dec.feed(ws("client", b'452-["x",{"_placeholder":true,"num":0}]')) == []
    assert dec.feed(ws("client", b"a", text=False)) == []
    with pytest.raises(AppMalformed, match="placeholders") as info:
        dec.feed(ws("client", b"b", text=False))
    (packet,) = info.value.messages       # still recorded
    assert (packet.channel, packet.fields["attachment_bytes"]) == ("x", 2)
    # the decoder goes on: the attachments were consumed, the next packet decodes
    assert one(dec, "client", b'42["ok"]').channel == "ok"


MALFORMED = [
    (b"", "empty Engine.IO packet"),
    (b"7", "unknown Engine.IO packet type"),
    (b"x42", "unknown Engine.IO packet type"),
    (b"0[1]", "not a JSON object"),
    (b"0{sid", "not JSON"),
    (b"4", "not a Socket.IO packet"),
    (b"49", "not a Socket.IO packet"),
    (b"4x", "not a Socket.IO packet"),
    (b"42", "not a non-empty JSON array"),
    (b"42[]", "not a non-empty JSON array"),
    (b'42{"a":1}', "not a non-empty JSON array"),
    (b"42[1.5]", "event name is not a string"),
    (b"42[true]", "event name is not a string"),
    (b'42["a"', "not JSON"),
    (b'42["a"]]', "not JSON"),
    (b"43[]", "no ack id"),
    (b'431{"a":1}', "not a JSON array"),
    (b'40"x"', "not a JSON object"),
    (b"44[1]", "neither a JSON object nor a string"),
    (b"44", "neither a JSON object nor a string"),
    (b'41{"a":1}', "DISCONNECT has none"),
    (b'42["disconnect"]', "reserved event name"),
    (b'42/chat,["newListener",1]', "reserved event name"),
    (b'421-["a"]', "attachment count not allowed"),
    (b'451["a"]', "attachment count missing"),
    (b'45' + b"9" * 20 + b'-["a"]', "longer than 16 digits"),
    (b'42' + b"9" * 20 + b'["a"]', "longer than 16 digits"),
    (b'452000-["a"]', "more than 1000"),
    (b'40/\xff\xfe,', "namespace is not UTF-8"),
    (b'42["\xff"]', "not JSON"),
    (b"42" + b"[" * 100_000, "not JSON"),
]


@pytest.mark.parametrize(("payload", "reason"), MALFORMED)
def test_malformed_packets_raise_app_malformed_with_a_reason(payload: bytes, reason: str) -> None:
    dec = SocketIODecoder()
    with pytest.raises(AppMalformed, match=reason):
        dec.feed(ws("client", payload))
    assert one(dec, "client", b'42["still fine"]').channel == "still fine"


def test_binary_message_with_nothing_waiting_is_malformed() -> None:
    dec = SocketIODecoder()
    with pytest.raises(AppMalformed, match="no BINARY_EVENT"):
        dec.feed(ws("server", b"\x00", text=False))


def test_a_message_cut_by_a_gap_says_so() -> None:
    with pytest.raises(AppMalformed, match="cut by a gap"):
        SocketIODecoder().feed(ws("server", b'42["half', complete=False))


def test_remembered_ack_ids_are_bounded() -> None:
    dec = SocketIODecoder()
    for ack_id in range(MAX_OPEN_ACKS + 10):
        dec.feed(ws("client", b'42%d["e%d"]' % (ack_id, ack_id)))
    assert one(dec, "server", b"430[]").channel is None          # forgotten, the oldest
    last = MAX_OPEN_ACKS + 9
    assert one(dec, "server", b"43%d[]" % last).channel == f"e{last}"
    assert one(dec, "server", b"43%d[]" % last).channel is None  # answered once


def test_sniff() -> None:
    assert SocketIODecoder.sniff(ws("server", b'0{"sid":"abc","upgrades":[]}')) == 0.95
    assert SocketIODecoder.sniff(ws("server", b'0{"upgrades":[],"sid":"abc"}')) == 0.95
    assert SocketIODecoder.sniff(ws("client", b"2probe")) == 0.9
    assert SocketIODecoder.sniff(ws("client", b"40")) == 0.7
    assert SocketIODecoder.sniff(ws("client", b'42["a"]')) == 0.7
    assert SocketIODecoder.sniff(ws("client", b'42/chat,["a"]')) == 0.7
    assert SocketIODecoder.sniff(ws("client", b'0{"sid":1}', text=False)) == 0.0
    assert SocketIODecoder.sniff(ws("client", b'{"jsonrpc":"2.0"}')) == 0.0
    assert SocketIODecoder.sniff(ws("client", b"")) == 0.0
    # what merely starts like a packet
    for text in (b"404 Not Found", b"42", b"42[]", b"42/chat", b"40{x", b"42[1.5]", b'42["a"'):
        assert SocketIODecoder.sniff(ws("server", text)) == 0.0, text
    assert SocketIODecoder.sniff(ws("client", b'40{"token":"x"}')) == 0.7
    assert SocketIODecoder.sniff(ws("client", b"40/admin,")) == 0.7


def test_registry_finds_it_by_content_and_not_by_subprotocol() -> None:
    assert decoders()["socketio"] is SocketIODecoder
    assert by_subprotocol("socketio") is None
    assert by_content(ws("server", b'0{"sid":"x","upgrades":[]}')) == (SocketIODecoder, 0.95)


VALID = [
    ("server", b'0{"sid":"a","upgrades":[],"pingInterval":25000}'), ("client", b"40"),
    ("server", b'40{"sid":"b"}'), ("client", b'421["q",{"k":"v"}]'), ("server", b'431["r"]'),
    ("client", b'42/admin,["ev",1]'), ("server", b'451-["bin",{"_placeholder":true,"num":0}]'),
    ("server", b"2"), ("client", b"3"), ("client", b'44{"message":"no"}'), ("client", b"41"),
]


def test_every_truncation_of_valid_packets_gives_messages_or_app_malformed() -> None:
    for sender, payload in VALID:
        for cut in range(len(payload) + 1):
            dec = SocketIODecoder()
            with contextlib.suppress(AppMalformed):
                dec.feed(ws(sender, payload[:cut], complete=False))
            with contextlib.suppress(AppMalformed):
                dec.finish()


_alphabet = st.sampled_from(list(b'0123456789[]{}",-/:_placeholdernum\xff '))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["client", "server"]), st.booleans(),
                          st.one_of(st.binary(max_size=40),
                                    st.lists(_alphabet, max_size=40).map(bytes))),
                max_size=12))
def test_random_messages_never_raise_anything_but_app_malformed(
        messages: list[tuple[str, bool, bytes]]) -> None:
    dec = SocketIODecoder()
    for sender, text, payload in messages:
        try:
            for app in dec.feed(ws(sender, payload, text=text)):
                assert app.role in ("request", "response", "message")
        except AppMalformed as exc:
            assert all(app.role in ("request", "response", "message") for app in exc.messages)
    with contextlib.suppress(AppMalformed):
        dec.finish()


# The real capture: python-socketio server and client (captures/make_app.py socketio)

@functools.cache
def _capture() -> Decoded:
    return decode_capture("socketio", SocketIODecoder)


def _decoded() -> tuple[dict, list[tuple[WsMessage, AppMessage]]]:
    return _capture().expected, _capture().items


def test_capture_counts_agree_with_the_programs_logs() -> None:
    expected, decoded = _decoded()
    engineio = {"OPEN": "open", "PING": "ping", "PONG": "pong", "CLOSE": "close",
                "UPGRADE": "upgrade", "NOOP": "noop"}
    for side in ("client", "server"):
        types = Counter(app.type for msg, app in decoded if msg.sender == side)
        sio = {kind: types[kind] for kind in expected["counts"]["socketio"][side]}
        assert sio == expected["counts"]["socketio"][side]
        eio = {kind: types[engineio[kind]] for kind in expected["counts"]["engineio"][side]
               if kind in engineio}
        assert eio == {kind: n for kind, n in expected["counts"]["engineio"][side].items()
                       if kind in engineio}
        attachments = sum(app.fields.get("attachments", 0)
                          for msg, app in decoded if msg.sender == side)
        assert attachments == expected["counts"]["engineio"][side]["binary attachment"]
    assert not any(app.fields.get("attachments_missing") for _, app in decoded)


def test_capture_events_and_acks_agree_with_the_programs_logs() -> None:
    expected, decoded = _decoded()
    for side in ("client", "server"):
        sent = [(r["namespace"], r["name"], r["ack"], r.get("binary", False))
                for r in expected["log"] if r["sender"] == side and r["kind"] == "event_sent"]
        seen = [(app.fields["namespace"], app.channel, app.role == "request",
                 app.type == "BINARY_EVENT")
                for msg, app in decoded if msg.sender == side and "EVENT" in app.type]
        assert seen == sent
        acks = [(r["namespace"], r["name"]) for r in expected["log"]
                if r["sender"] == side and r["kind"] == "ack_sent"]
        assert [(app.fields["namespace"], app.channel) for msg, app in decoded
                if msg.sender == side and "ACK" in app.type] == acks
    # the binary event's and binary ack's attachments, as the programs counted them
    binary = {app.type: app.fields["attachment_bytes"] for _, app in decoded
              if app.type.startswith("BINARY")}
    upload = next(r for r in expected["log"] if r["kind"] == "event_sent" and r["name"] == "upload")
    ack = next(r for r in expected["log"] if r["kind"] == "ack_sent" and r["name"] == "upload")
    assert binary == {"BINARY_EVENT": upload["args"][1]["bytes"],
                      "BINARY_ACK": ack["args"][0]["bytes"]}
    # namespace connections: the server's CONNECT answers carry the sids the server logged
    sids = {r["namespace"]: r["sid"] for r in expected["log"]
            if r["sender"] == "server" and r["kind"] == "connect"}
    answers = {app.fields["namespace"]: app.fields["sid"] for msg, app in decoded
               if app.type == "CONNECT" and app.role == "response"}
    assert answers == sids
    assert [(msg.sender, app.fields["namespace"]) for msg, app in decoded
            if app.type == "DISCONNECT"] == [("server", "/chat")]


def test_capture_requests_pair_with_their_acks_within_the_programs_timings() -> None:
    expected, _ = _decoded()
    pairs = exchanges(_capture())
    assert all(pair.response is not None for pair in pairs)
    kinds = Counter(pair.request.type for pair in pairs)
    assert kinds["CONNECT"] == 2
    assert kinds["ping"] == expected["counts"]["engineio"]["server"]["PING"]
    acked = [pair for pair in pairs if pair.response and "ACK" in pair.response.type]
    wanted = sorted(expected["requests"], key=lambda r: r["t_send"])
    assert [(pair.request.correlation_id[0], pair.request.channel, pair.request.fields["namespace"])
            for pair in acked] == [(r["sender"][0], r["name"], r["namespace"]) for r in wanted]
    # on the wire the answer takes at least the delay the answering side was asked to add, and
    # at most what the asker measured around its send and receive
    for pair, request in zip(acked, wanted, strict=True):
        assert pair.latency_ms is not None
        assert request["delay_ms"] <= pair.latency_ms <= request["latency_ms"]


def test_capture_exchanges_are_the_messages_the_programs_sent() -> None:
    """Each exchange's two messages, found in the expected file's wire list (the packets
    python-engineio logged, in capture order, with tshark's timestamps): an EVENT's ack id is the
    ACK's, the latency is tshark's."""
    decoded = _capture()
    wire = decoded.expected["wire"]
    assert len(decoded.index) == len(wire)
    pairs = exchanges(decoded)
    assert pairs and all(pair.response is not None for pair in pairs)
    for pair in pairs:
        request, response = wire[pair.request_index], wire[pair.response_index]
        if pair.request.type.endswith("EVENT"):
            # a binary packet is reported at its last attachment: its text came that many before
            if pair.request.type == "BINARY_EVENT":
                assert request["type"] == "binary"
                request = wire[pair.request_index - pair.request.fields["attachments"]]
            if pair.response.type == "BINARY_ACK":
                assert response["type"] == "binary"
                response = wire[pair.response_index - pair.response.fields["attachments"]]
            ack = str(pair.request.fields["ack_id"])
            assert re.match(rf"4[25](?:\d+-)?(?:/[^,]*,)?{ack}\[", request["text"])
            assert re.match(rf"4[36](?:\d+-)?(?:/[^,]*,)?{ack}\[", response["text"])
        elif pair.request.type == "ping":
            assert (request["text"], response["text"]) == ("2", "3")
        else:
            assert (request["text"][:2], response["text"][:2]) == ("40", "40")
        tshark_ms = (wire[pair.response_index]["ts"] - wire[pair.request_index]["ts"]) * 1000
        assert pair.latency_ms == pytest.approx(tshark_ms, abs=0.01)


def test_capture_tables_of_analyze_hold_what_the_decoder_gives() -> None:
    """analyze() chooses this decoder by content (no subprotocol) and its app_messages and
    exchanges tables hold what the decoder gives fed by hand, paired as app_conv says."""
    assert_tables_agree("socketio", SocketIODecoder)
