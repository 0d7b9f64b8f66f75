"""MQTT 3.1/3.1.1/5.0 decoder (analyzer/app/protocols/mqtt.py) on packets built here byte by byte
from the OASIS specifications (MQTT 3.1.1 §2-§3, MQTT 5.0 §2-§3)."""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analyzer
from analyzer.app import registry
from analyzer.app.base import AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols import _common, mqtt
from analyzer.app.protocols.mqtt import MqttDecoder
from tests.app_captures import CAPTURES as CAPTURES_DIR
from tests.app_captures import assert_tables_agree, decode, expected, pair, ws_capture, ws_messages

# -- building packets -------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def b(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def pkt(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([ptype << 4 | flags]) + varint(len(body)) + body


def props(*items: tuple[int, bytes]) -> bytes:
    raw = b"".join(bytes([ident]) + value for ident, value in items)
    return varint(len(raw)) + raw


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def connect(level: int = 4, client_id: str = "cid", *, name: str = "MQTT", flags: int = 0x02,
            keepalive: int = 30, properties: bytes = b"", tail: bytes = b"") -> bytes:
    body = s(name) + bytes([level, flags]) + u16(keepalive)
    if level == 5:
        body += properties or props()
    return pkt(1, 0, body + s(client_id) + tail)


# MQTT 3.1.1 session: client and server byte streams, packet by packet
C311 = [
    connect(4, "paho-1", flags=0xC2 | 0x04 | 0x08, tail=s("last/will") + b(b"bye") + s("user") + b(b"pw")),
    pkt(8, 2, u16(1) + s("a/b") + b"\x00" + s("c/#") + b"\x02"),          # SUBSCRIBE
    pkt(3, 0, s("a/b") + b"hello"),                                       # PUBLISH QoS 0
    pkt(3, 2 | 1, s("a/b") + u16(2) + b"q1"),                             # PUBLISH QoS 1 retain
    pkt(3, 4, s("c/d") + u16(3) + b"q2"),                                 # PUBLISH QoS 2
    pkt(6, 2, u16(3)),                                                    # PUBREL
    pkt(10, 2, u16(4) + s("a/b")),                                        # UNSUBSCRIBE
    pkt(12, 0, b""),                                                      # PINGREQ
    pkt(14, 0, b""),                                                      # DISCONNECT
]
S311 = [
    pkt(2, 0, b"\x00\x00"),                                               # CONNACK accepted
    pkt(9, 0, u16(1) + b"\x00\x80"),                                      # SUBACK, 2nd refused
    pkt(4, 0, u16(2)),                                                    # PUBACK
    pkt(5, 0, u16(3)),                                                    # PUBREC
    pkt(7, 0, u16(3)),                                                    # PUBCOMP
    pkt(11, 0, u16(4)),                                                   # UNSUBACK
    pkt(13, 0, b""),                                                      # PINGRESP
]


def ws(payload: bytes, sender: str = "client", *, complete: bool = True, n: int = 0) -> WsMessage:
    return WsMessage(conn_id=1, message_id=n, sender=sender, ts_ns=n, text=False, payload=payload,
                     complete=complete)


def feed_all(dec: MqttDecoder, messages: list[tuple[str, bytes]]) -> list[AppMessage]:
    out: list[AppMessage] = []
    for i, (sender, payload) in enumerate(messages):
        out.extend(dec.feed(ws(payload, sender, n=i)))
    return out


def summary(msgs: list[AppMessage]) -> list[tuple[object, ...]]:
    return [(m.type, m.channel, m.correlation_id, m.role, m.status) for m in msgs]


def test_registered_by_subprotocol_and_sniffed() -> None:
    assert registry.by_subprotocol("mqtt") is MqttDecoder
    assert registry.by_subprotocol("MQTTv3.1") is MqttDecoder
    assert MqttDecoder.sniff(ws(C311[0])) == 0.95
    assert MqttDecoder.sniff(ws(connect(3, name="MQIsdp"))) == 0.95
    assert MqttDecoder.sniff(ws(b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x1e\x00\x00")) == 0.0
    assert MqttDecoder.sniff(ws(S311[0], "server")) == 0.0
    text = ws(C311[0])
    text.text = True
    assert MqttDecoder.sniff(text) == 0.0
    found = registry.by_content(ws(C311[0]))
    assert found is not None and found[0] is MqttDecoder


def test_mqtt311_session_every_packet_type() -> None:
    order = [("client", C311[0]), ("server", S311[0]), ("client", C311[1]), ("server", S311[1]),
             ("client", C311[2]), ("client", C311[3]), ("server", S311[2]), ("client", C311[4]),
             ("server", S311[3]), ("client", C311[5]), ("server", S311[4]), ("client", C311[6]),
             ("server", S311[5]), ("client", C311[7]), ("server", S311[6]), ("client", C311[8])]
    dec = MqttDecoder()
    got = feed_all(dec, order)
    assert summary(got) == [
        ("CONNECT", None, "connect", "request", None),
        ("CONNACK", None, "connect", "response", "ok"),
        ("SUBSCRIBE", "a/b,c/#", "c:1", "request", None),
        ("SUBACK", "a/b,c/#", "c:1", "response", "0x80"),
        ("PUBLISH", "a/b", None, "message", None),
        ("PUBLISH", "a/b", "c:2", "request", None),
        ("PUBACK", "a/b", "c:2", "response", "ok"),
        ("PUBLISH", "c/d", "c:3", "request", None),
        ("PUBREC", "c/d", "c:3", "response", "ok"),
        ("PUBREL", "c/d", "c:3:rel", "request", None),
        ("PUBCOMP", "c/d", "c:3:rel", "response", "ok"),
        ("UNSUBSCRIBE", "a/b", "c:4", "request", None),
        ("UNSUBACK", "a/b", "c:4", "response", "ok"),
        ("PINGREQ", None, "ping", "request", None),
        ("PINGRESP", None, "ping", "response", "ok"),
        ("DISCONNECT", None, None, "message", None),
    ]
    assert {m.protocol for m in got} == {"mqtt"}
    assert got[0].fields == {"protocol": "MQTT", "level": 4, "keepalive": 30, "clean_start": True,
                             "client_id": "paho-1", "will_topic": "last/will", "will_payload_len": 3,
                             "will_qos": 1, "will_retain": False, "username": True, "password": True}
    assert got[3].fields == {"packet_id": 1, "reason_codes": [0, 0x80]}
    assert got[2].fields["filters"] == [["a/b", 0], ["c/#", 2]]
    assert got[4].fields == {"qos": 0, "retain": False, "dup": False, "payload_len": 5}
    assert got[5].fields == {"qos": 1, "retain": True, "dup": False, "packet_id": 2, "payload_len": 2}
    assert not dec.v5
    assert dec.finish() == []


def test_server_publish_is_the_servers_request() -> None:
    dec = MqttDecoder()
    feed_all(dec, [("client", C311[0])])
    got = feed_all(dec, [("server", pkt(3, 2 | 8, s("t") + u16(9) + b"x")), ("client", pkt(4, 0, u16(9)))])
    assert summary(got) == [("PUBLISH", "t", "s:9", "request", None),
                            ("PUBACK", "t", "s:9", "response", "ok")]
    assert got[0].fields["dup"] is True


def test_mqtt31_mqisdp() -> None:
    dec = MqttDecoder()
    got = feed_all(dec, [("client", connect(3, "old", name="MQIsdp")), ("server", pkt(2, 0, b"\x00\x05"))])
    assert got[0].fields["protocol"] == "MQIsdp" and got[0].fields["level"] == 3
    assert got[1].status == "0x05" and got[1].fields["reason"] == "not authorized"


# MQTT 5 session: properties of every data type, AUTH, topic alias, reason codes
USER = (0x26, s("k") + s("v"))
C5 = [
    connect(5, "v5", flags=0x02 | 0x04,
            properties=props((0x11, u32(60)), (0x21, u16(10)), (0x15, s("SCRAM")), USER),
            tail=props((0x18, u32(5))) + s("w/t") + b(b"gone")),
    pkt(15, 0, b"\x19" + props((0x15, s("SCRAM")), (0x16, b(b"\x01\x02")))),   # AUTH re-auth
    pkt(8, 2, u16(7) + props((0x0B, varint(300))) + s("x/+") + b"\x2d"),        # SUBSCRIBE opts
    pkt(3, 2, s("x/y") + u16(8) + props((0x23, u16(1)), (0x03, s("text/plain"))) + b"payload"),
    pkt(3, 2, u16(0) + u16(9) + props((0x23, u16(1))) + b"again"),              # alias only
    pkt(10, 2, u16(10) + props() + s("x/+")),
    pkt(14, 0, b"\x04" + props((0x1F, s("bye now")))),
]
S5 = [
    pkt(2, 0, b"\x01\x00" + props((0x12, s("assigned")), (0x22, u16(5)), (0x24, b"\x01"))),
    pkt(15, 0, b"\x00"),                                                       # AUTH success, no props
    pkt(9, 0, u16(7) + props() + b"\x01"),
    pkt(4, 0, u16(8) + b"\x10"),                                               # no matching subscribers
    pkt(4, 0, u16(9) + b"\x97" + props((0x1F, s("quota")))),                   # quota exceeded
    pkt(11, 0, u16(10) + props() + b"\x11"),                                   # no subscription existed
]


def test_mqtt5_properties_reason_codes_aliases_auth() -> None:
    client, server = C5, S5
    order = [("client", client[0]), ("server", server[0]), ("client", client[1]), ("server", server[1]),
             ("client", client[2]), ("server", server[2]), ("client", client[3]), ("server", server[3]),
             ("client", client[4]), ("server", server[4]), ("client", client[5]), ("server", server[5]),
             ("client", client[6])]
    dec = MqttDecoder()
    got = feed_all(dec, order)
    assert dec.v5
    assert summary(got) == [
        ("CONNECT", None, "connect", "request", None),
        ("CONNACK", None, "connect", "response", "ok"),
        ("AUTH", None, None, "message", "ok"),
        ("AUTH", None, None, "message", "ok"),
        ("SUBSCRIBE", "x/+", "c:7", "request", None),
        ("SUBACK", "x/+", "c:7", "response", "ok"),
        ("PUBLISH", "x/y", "c:8", "request", None),
        ("PUBACK", "x/y", "c:8", "response", "ok"),
        ("PUBLISH", "x/y", "c:9", "request", None),
        ("PUBACK", "x/y", "c:9", "response", "0x97"),
        ("UNSUBSCRIBE", "x/+", "c:10", "request", None),
        ("UNSUBACK", "x/+", "c:10", "response", "ok"),
        ("DISCONNECT", None, None, "message", "ok"),
    ]
    assert got[0].fields["properties"] == {"session_expiry_interval": 60, "receive_maximum": 10,
                                           "authentication_method": "SCRAM", "user_property": [["k", "v"]]}
    assert got[0].fields["will_properties"] == {"will_delay_interval": 5}
    assert got[0].fields["will_topic"] == "w/t"
    assert got[1].fields == {"session_present": True, "reason_code": 0, "reason": "Success", "properties": {
        "assigned_client_identifier": "assigned", "topic_alias_maximum": 5, "maximum_qos": 1}}
    assert got[2].fields == {"reason_code": 0x19, "reason": "Re-authenticate", "properties": {
        "authentication_method": "SCRAM", "authentication_data": "<2 bytes>"}}
    assert got[4].fields["properties"] == {"subscription_identifier": [300]}
    assert got[4].fields["filters"] == [["x/+", 1]]
    assert got[6].fields["properties"] == {"topic_alias": 1, "content_type": "text/plain"}
    assert got[6].fields["payload_len"] == 7 and got[8].fields["payload_len"] == 5
    assert got[8].fields["topic_alias"] == 1
    assert got[7].fields["reason"] == "No matching subscribers"
    assert got[9].fields == {"packet_id": 9, "reason_code": 0x97, "reason": "Quota exceeded",
                             "properties": {"reason_string": "quota"}}
    assert got[11].fields["reason_codes"] == [0x11]
    assert got[12].fields == {"reason_code": 4, "reason": "Disconnect with Will Message",
                              "properties": {"reason_string": "bye now"}}


def test_mqtt5_refused_connack_and_failed_suback_and_pubrec() -> None:
    dec = MqttDecoder()
    got = feed_all(dec, [
        ("client", connect(5)), ("server", pkt(2, 0, b"\x00\x87" + props())),
        ("client", pkt(8, 2, u16(1) + props() + s("a") + b"\x00" + s("b") + b"\x01")),
        ("server", pkt(9, 0, u16(1) + props() + b"\x00\x8f")),
        ("client", pkt(3, 4, s("q") + u16(2) + props())), ("server", pkt(5, 0, u16(2) + b"\x80")),
        ("server", pkt(14, 0, b"\x8e")),
    ])
    assert [m.status for m in got] == [None, "0x87", None, "0x8f", None, "0x80", "0x8e"]
    assert got[1].fields["reason"] == "Not authorized"
    assert got[6].fields == {"reason_code": 0x8E, "reason": "Session taken over"}
    assert dec._topics.get("c:2") is None       # a refused PUBREC ends the flow


def test_mqtt5_connect_refused_by_a_311_server() -> None:
    # a broker that speaks only 3.1.1 answers a level-5 CONNECT with return code 1 (§3.2.2.3)
    dec = MqttDecoder()
    got = feed_all(dec, [("client", connect(5)), ("server", pkt(2, 0, b"\x00\x01"))])
    assert got[1].status == "0x01"
    assert got[1].fields == {"session_present": False, "reason_code": 1,
                             "reason": "unacceptable protocol version"}


def test_mqtt5_short_acks_mean_success() -> None:
    dec = MqttDecoder()
    got = feed_all(dec, [("client", connect(5)), ("client", pkt(3, 2, s("t") + u16(5) + props())),
                         ("server", pkt(4, 0, u16(5))), ("client", pkt(14, 0, b""))])
    assert got[2].status == "ok" and got[2].fields == {"packet_id": 5, "reason_code": 0, "reason": "Success"}
    assert got[3].status == "ok" and got[3].fields == {"reason_code": 0, "reason": "Success"}


def streams() -> tuple[bytes, bytes]:
    return b"".join(C311), b"".join(S311)


def decode_stream(chunks: list[bytes], sender: str = "client") -> list[tuple[object, ...]]:
    dec = MqttDecoder()
    out: list[AppMessage] = []
    for i, chunk in enumerate(chunks):
        out.extend(dec.feed(ws(chunk, sender, n=i)))
    assert dec.finish() == []
    return summary(out)


def test_several_packets_per_message_and_split_at_every_offset() -> None:
    client, server = streams()
    whole = decode_stream([client])
    assert [t[0] for t in whole] == ["CONNECT", "SUBSCRIBE", "PUBLISH", "PUBLISH", "PUBLISH", "PUBREL",
                                     "UNSUBSCRIBE", "PINGREQ", "DISCONNECT"]
    assert decode_stream([bytes([x]) for x in client]) == whole
    for cut in range(1, len(client)):
        assert decode_stream([client[:cut], client[cut:]]) == whole, cut
    whole_s = decode_stream([server], "server")
    assert len(whole_s) == len(S311)
    for cut in range(1, len(server)):
        assert decode_stream([server[:cut], server[cut:]], "server") == whole_s, cut
    rnd = random.Random(7)
    for _ in range(50):
        cuts = sorted(rnd.sample(range(1, len(client)), 5))
        pieces = [client[i:j] for i, j in zip([0, *cuts], [*cuts, len(client)])]
        assert decode_stream(pieces) == whole


def test_mqtt5_streams_split_at_every_offset() -> None:
    def run(sender: str, chunks: list[bytes]) -> list[tuple[object, ...]]:
        dec = MqttDecoder()
        if sender == "server":              # the version comes from the client's CONNECT
            dec.feed(ws(C5[0]))
        out: list[AppMessage] = []
        for chunk in chunks:
            out.extend(dec.feed(ws(chunk, sender)))
        assert dec.finish() == []
        return [(*t, m.fields) for t, m in zip(summary(out), out)]

    for sender, packets in (("client", C5), ("server", S5)):
        data = b"".join(packets)
        whole = run(sender, [data])
        assert len(whole) == len(packets)
        for cut in range(1, len(data)):
            assert run(sender, [data[:cut], data[cut:]]) == whole, cut


def test_a_packet_is_reported_at_the_message_that_completes_it() -> None:
    publish = pkt(3, 0, s("big") + bytes(100_000))
    dec = MqttDecoder()
    assert dec.feed(ws(publish[:3])) == []
    assert dec.feed(ws(publish[3:70_000])) == []
    got = dec.feed(ws(publish[70_000:] + C311[7]))
    assert summary(got) == [("PUBLISH", "big", None, "message", None),
                            ("PINGREQ", None, "ping", "request", None)]
    assert got[0].fields["payload_len"] == 100_000


def test_remaining_length_limits() -> None:
    # a 4-byte Remaining Length is read whole (16,383 = 0xFF 0x7F in 2 bytes)
    dec = MqttDecoder()
    assert dec.feed(ws(b"\x30\xff\x7f" + s("t") + bytes(100))) == []
    assert dec._streams["client"].need == 16_386
    # a fifth length byte is malformed and loses the boundaries (§2.2.3: at most 4 bytes)
    dec = MqttDecoder()
    with pytest.raises(AppMalformed, match="remaining length longer than 4 bytes"):
        dec.feed(ws(b"\x30\xff\xff\xff\xff\x01"))


def test_oversized_packet_is_skipped_not_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt, "MAX_PACKET", 1000)
    big = pkt(3, 0, s("t") + bytes(5000))
    dec = MqttDecoder()
    with pytest.raises(AppMalformed, match="PUBLISH of 5006 bytes over the"):
        dec.feed(ws(big[:600]))
    stream = dec._streams["client"]
    assert not stream.buf and stream.skip == 5006 - 600
    assert dec.feed(ws(big[600:3000])) == []
    got = dec.feed(ws(big[3000:] + C311[7]))
    assert summary(got) == [("PINGREQ", None, "ping", "request", None)]
    # whole in one message it is already in memory: decoded
    assert dec.feed(ws(big))[0].fields["payload_len"] == 5000


def test_default_cap_skips_the_largest_length() -> None:
    dec = MqttDecoder()
    with pytest.raises(AppMalformed, match="over the 16 MiB limit"):
        dec.feed(ws(b"\x30\xff\xff\xff\x7f" + bytes(10)))
    assert dec._streams["client"].skip == 268_435_455 + 5 - 15


MALFORMED = [
    (connect(4, name="HTTP"), "CONNECT: protocol name 'HTTP'"),
    (connect(4, flags=0x03), "reserved connect flag"),
    (connect(4, flags=0x18 | 0x04, tail=s("w") + b(b"")), "will flags"),
    (connect(4, flags=0x20), "will flags"),
    (connect(4, tail=b"x"), "1 bytes after the end of the CONNECT"),
    (pkt(1, 0, s("MQTT")), "truncated protocol level"),
    (pkt(1, 0, b"\x00\x04MQ"), "truncated protocol name"),
    (pkt(3, 0, b"\x00\x02\xc3\x28"), "topic name is not UTF-8"),
    (pkt(3, 0, s("a\x00b")), "contains U+0000"),
    (pkt(3, 0, s("a/#") + b"x"), "wildcard in the topic name"),
    (pkt(3, 0, s("")), "empty topic name"),
    (pkt(3, 2, s("t") + u16(0)), "packet identifier 0"),
    (pkt(3, 8, s("t")), "DUP set on a QoS 0"),
    (pkt(3, 2, s("t")), "truncated packet identifier"),
    (pkt(4, 0, u16(1) + b"\x00"), "1 bytes after the end of the PUBACK"),
    (pkt(8, 2, u16(1)), "SUBSCRIBE: no topic filter"),
    (pkt(8, 2, u16(1) + s("a") + b"\x04"), "subscription options 0x04"),
    (pkt(8, 2, u16(1) + s("a") + b"\x03"), "subscription options 0x03"),
    (pkt(10, 2, u16(1)), "UNSUBSCRIBE: no topic filter"),
    (pkt(12, 0, b"\x00"), "1 bytes after the end of the PINGREQ"),
    (pkt(14, 0, b"\x00"), "1 bytes after the end of the DISCONNECT"),
    (pkt(15, 0, b""), "AUTH before MQTT 5"),
    (pkt(2, 0, b"\x00\x00"), "CONNACK: sent by the client"),
]


@pytest.mark.parametrize(("packet", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_packets_keep_the_stream_in_step(packet: bytes, reason: str) -> None:
    dec = MqttDecoder()
    with pytest.raises(AppMalformed, match=re.escape(reason)) as info:
        dec.feed(ws(C311[7] + packet + C311[8]))
    assert [m.type for m in info.value.messages] == ["PINGREQ", "DISCONNECT"]
    assert summary(dec.feed(ws(C311[7]))) == [("PINGREQ", None, "ping", "request", None)]


MALFORMED_V5 = [
    (pkt(3, 0, s("t") + props((0x7F, b"\x00"))), "unknown property identifier 0x7f"),
    (pkt(3, 0, s("t") + props((0x01, b"\x00"), (0x01, b"\x01"))), "payload_format_indicator given twice"),
    (pkt(3, 0, s("t") + varint(9) + b"\x01"), "property length 9 beyond the packet"),
    (pkt(3, 0, s("t") + props((0x02, b"\x00"))), "truncated message_expiry_interval"),
    (pkt(3, 0, s("t") + props((0x23, u16(0)))), "topic alias 0"),
    (pkt(3, 0, s("t") + props((0x0B, b"\xff\xff\xff\xff\x01"))), "subscription_identifier longer than 4"),
    (pkt(9, 0, u16(1) + props()), "no reason code"),
    (pkt(8, 2, u16(1) + props() + s("a") + b"\x30"), "subscription options 0x30"),
]


@pytest.mark.parametrize(("packet", "reason"), MALFORMED_V5, ids=[r for _, r in MALFORMED_V5])
def test_malformed_v5_packets(packet: bytes, reason: str) -> None:
    dec = MqttDecoder()
    dec.feed(ws(connect(5)))
    sender = "server" if packet[0] >> 4 == 9 else "client"
    with pytest.raises(AppMalformed, match=re.escape(reason)):
        dec.feed(ws(packet, sender))


@pytest.mark.parametrize(("first", "reason"), [
    (b"\x00\x00", "reserved packet type 0"),
    (b"\x61\x00", "PUBREL with reserved flags 0x1"),
    (b"\x80\x00", "SUBSCRIBE with reserved flags 0x0"),
    (b"\xc1\x00", "PINGREQ with reserved flags 0x1"),
    (b"\x36\x00", "PUBLISH with QoS 3"),
])
def test_bad_fixed_header_loses_sync_then_resynchronises(first: bytes, reason: str) -> None:
    dec = MqttDecoder()
    with pytest.raises(AppMalformed, match=re.escape(reason)) as info:
        dec.feed(ws(C311[7] + first + C311[8]))
    assert [m.type for m in info.value.messages] == ["PINGREQ"]      # type: ignore[attr-defined]
    # the next message that does not start like a packet is dropped quietly, the next that does resumes
    assert dec.feed(ws(b"\x00garbage")) == []
    assert [m.type for m in dec.feed(ws(C311[7] + C311[8]))] == ["PINGREQ", "DISCONNECT"]
    # the other direction was never affected
    assert [m.type for m in dec.feed(ws(S311[6], "server"))] == ["PINGRESP"]


def test_gives_up_a_direction_after_max_resync_messages() -> None:
    dec = MqttDecoder()
    with pytest.raises(AppMalformed):
        dec.feed(ws(b"\x00\x00"))
    for _ in range(mqtt.MAX_RESYNC - 1):
        assert dec.feed(ws(b"\xff\xff")) == []
    with pytest.raises(AppMalformed, match="no longer decoded"):
        dec.feed(ws(b"\xff\xff"))
    assert dec.feed(ws(C311[7])) == []            # given up: even a good packet is ignored
    assert [m.type for m in dec.feed(ws(S311[6], "server"))] == ["PINGRESP"]
    assert dec.finish() == []


def test_finish_reports_an_unfinished_packet() -> None:
    dec = MqttDecoder()
    dec.feed(ws(C311[2][:4]))
    dec.feed(ws(S311[0][:1], "server"))
    with pytest.raises(AppMalformed, match=r"client: 4 bytes of an unfinished packet of 12 at the end; "
                                           r"server: 1 bytes of an unfinished packet at the end"):
        dec.finish()


def test_a_message_cut_by_a_gap_drops_its_partial_packet() -> None:
    dec = MqttDecoder()
    got = dec.feed(ws(C311[7] + C311[2][:5], complete=False))
    assert [m.type for m in got] == ["PINGREQ"]
    assert dec.finish() == []
    # the next message is taken from its start
    assert [m.type for m in dec.feed(ws(C311[3]))] == ["PUBLISH"]


def test_topic_alias_unknown_gives_no_channel() -> None:
    dec = MqttDecoder()
    dec.feed(ws(connect(5)))
    got = dec.feed(ws(pkt(3, 0, u16(0) + props((0x23, u16(4))) + b"x"), "server"))
    assert got[0].channel is None and got[0].fields["topic_alias"] == 4
    # aliases are per direction: the client's alias 4 does not name the server's
    dec.feed(ws(pkt(3, 0, s("mine") + props((0x23, u16(4))))))
    assert dec.feed(ws(pkt(3, 0, u16(0) + props((0x23, u16(4)))), "server"))[0].channel is None


def test_long_strings_are_clipped() -> None:
    dec = MqttDecoder()
    got = dec.feed(ws(pkt(3, 0, s("t/" + "x" * 5000) + b"p")))
    assert got[0].channel is not None and len(got[0].channel) == 200
    assert got[0].channel.endswith("…")


VALID = [*C311, *S311, *C5, *S5]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.booleans())
def test_fuzz_random_bytes_only_app_malformed(chunks: list[bytes], v5: bool) -> None:
    dec = MqttDecoder()
    if v5:
        dec.feed(ws(connect(5)))
    for i, chunk in enumerate(chunks):
        with contextlib.suppress(AppMalformed):
            dec.feed(ws(chunk, "client" if i % 2 else "server", complete=i != 3))
    with contextlib.suppress(AppMalformed):
        dec.finish()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_packets(data: st.DataObject) -> None:
    raw = bytearray(b"".join(data.draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=6))))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    dec = MqttDecoder()
    for piece in (bytes(raw[:cut]), bytes(raw[cut:])):
        try:
            msgs = dec.feed(ws(piece))
        except AppMalformed:
            continue
        for m in msgs:
            assert m.role in ("request", "response", "message")


# -- real captures: paho-mqtt against mosquitto (captures/make_app2.py, captures/app/mqtt*.pcap) ----

CAPTURES = ["mqtt311", "mqtt5"]
#: timestamps of the capture and of the programs' logs come from the same clock (µs resolution)
TOL = 1e-5


def as_logged(app: AppMessage) -> dict[str, object]:
    """An AppMessage in the terms of the expected file (the keys paho's callbacks give)."""
    f = app.fields
    codes = f.get("reason_codes", [f["reason_code"]] if "reason_code" in f else None)
    if codes is None and app.type in ("PUBACK", "PUBREC", "PUBCOMP", "UNSUBACK"):
        # MQTT 3.1.1 acks carry no code: paho hands its callbacks Success (0), none for UNSUBACK
        codes = [] if app.type == "UNSUBACK" else [0]
    return {"type": app.type, "channel": app.channel, "packet_id": f.get("packet_id"), "qos": f.get("qos"),
            "retain": f.get("retain"), "dup": f.get("dup"), "payload_len": f.get("payload_len"),
            "reason_codes": codes, "user_properties": f.get("properties", {}).get("user_property")}


def capture_pairs(name: str) -> dict[int, list[tuple[WsMessage, AppMessage]]]:
    return {port: decode(MqttDecoder, msgs) for port, msgs in ws_messages(name).items()}


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_packets_agree_with_what_paho_logged(name: str) -> None:
    exp = expected(name)
    pairs = capture_pairs(name)
    assert sorted(pairs) == sorted(c["client_port"] for c in exp["connections"])
    for port, decoded in pairs.items():
        for sender in ("client", "server"):
            logged = [m for m in exp["messages"] if m["client_port"] == port and m["sender"] == sender]
            ours = [as_logged(app) for msg, app in decoded if msg.sender == sender]
            assert len(ours) == len(logged)
            for mine, theirs in zip(ours, logged):
                assert {k: mine[k] for k in theirs if k in mine} == {
                    k: v for k, v in theirs.items() if k in mine}, theirs
        counts: dict[str, dict[str, int]] = {"client": {}, "server": {}}
        for msg, app in decoded:
            counts[msg.sender][app.type] = counts[msg.sender].get(app.type, 0) + 1
        assert counts == exp["counts"]


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_exchanges_agree_with_paho_timings(name: str) -> None:
    """Every request paho logged pairs with its response in the capture; the capture's times lie
    inside the programs' (a client request leaves after paho logged it and its answer arrives
    before paho logged that; the other way round for the server's requests)."""
    exp = expected(name)
    for port, decoded in capture_pairs(name).items():
        closed, unanswered = pair(decoded)
        logged = [r for r in exp["requests"] if r["client_port"] == port]
        assert sum(len(v) for v in closed.values()) == len(logged)
        assert unanswered == []
        for r in logged:
            t_req, t_resp, req, resp = closed[r["correlation_id"]].pop(0)
            assert (req.type, resp.type, req.channel) == (r["request_type"], r["response_type"], r["channel"])
            assert resp.channel == r["channel"]
            if "reason_codes" in r:
                assert as_logged(resp)["reason_codes"] == r["reason_codes"]
                failed = [c for c in r["reason_codes"] if c >= 0x80]
                assert resp.status == (f"0x{failed[0]:02x}" if failed else "ok")
            if r["requester"] == "client":
                assert r["t_send"] - TOL <= t_req and t_resp <= r["t_recv"] + TOL
                assert t_resp - t_req <= r["latency_ms"] / 1e3 + 2 * TOL
            else:
                assert t_req <= r["t_send"] + TOL and r["t_recv"] - TOL <= t_resp
                assert t_resp - t_req >= r["latency_ms"] / 1e3 - 2 * TOL


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_through_analyze_gives_the_same_rows(name: str) -> None:
    assert_tables_agree(name, MqttDecoder)


#: Wireshark's MQTT dissector is not registered for the "mqtt" WebSocket subprotocol (issue 19); this
#: registers it, so tshark (the reference) decodes the same packets
_WS_MQTT_LUA = 'DissectorTable.get("ws.protocol"):add("mqtt", Dissector.get("mqtt"))\n'
_TSHARK_FIELDS = ("tcp.srcport", "mqtt.msgtype", "mqtt.topic", "mqtt.msgid", "mqtt.qos", "mqtt.retain",
                  "mqtt.dupflag", "mqtt.conack.val", "mqtt.connack.reason_code", "mqtt.puback.reason_code",
                  "mqtt.pubrec.reason_code", "mqtt.pubcomp.reason_code", "mqtt.suback.qos",
                  "mqtt.suback.reason_code", "mqtt.unsuback.reason_code", "mqtt.clientid", "mqtt.kalive",
                  "mqtt.ver")


def tshark_packets(name: str, tmp: Path) -> list[dict[str, str]]:
    lua = tmp / "ws_mqtt.lua"
    lua.write_text(_WS_MQTT_LUA)
    args = ["tshark", "-r", str(CAPTURES_DIR / f"{name}.pcap"), "-X", f"lua_script:{lua}", "-Y", "mqtt",
            "-T", "fields", "-E", "aggregator=|"]
    for f in _TSHARK_FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(_TSHARK_FIELDS, line.split("\t"))) for line in out.splitlines()]


def as_tshark(app: AppMessage, server_port: int, sender: str, v5: bool) -> dict[str, str]:
    """An AppMessage in tshark's field values (empty string: field absent)."""
    f = app.fields
    type_no = next(k for k, v in mqtt.PACKET_TYPES.items() if v == app.type)
    row = dict.fromkeys(_TSHARK_FIELDS, "")
    row["tcp.srcport"] = str(server_port) if sender == "server" else row["tcp.srcport"]
    row["mqtt.msgtype"] = str(type_no)
    if app.type in ("PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE"):
        row["mqtt.topic"] = str(app.channel).replace(",", "|")
    if "packet_id" in f:
        row["mqtt.msgid"] = str(f["packet_id"])
    if app.type == "PUBLISH":
        row["mqtt.qos"], row["mqtt.retain"], row["mqtt.dupflag"] = (
            str(f["qos"]), str(int(f["retain"])), str(int(f["dup"])))
    if app.type == "CONNECT":
        row["mqtt.clientid"], row["mqtt.kalive"], row["mqtt.ver"] = (
            f["client_id"], str(f["keepalive"]), str(f["level"]))
    codes = "|".join(str(c) for c in f.get("reason_codes", [f.get("reason_code", "")]))
    if v5:
        key = {"CONNACK": "mqtt.connack.reason_code", "PUBACK": "mqtt.puback.reason_code",
               "PUBREC": "mqtt.pubrec.reason_code", "PUBCOMP": "mqtt.pubcomp.reason_code",
               "SUBACK": "mqtt.suback.reason_code", "UNSUBACK": "mqtt.unsuback.reason_code"}.get(app.type)
    else:
        key = {"CONNACK": "mqtt.conack.val", "SUBACK": "mqtt.suback.qos"}.get(app.type)
    if key is not None and codes:
        row[key] = codes
    return row


@pytest.mark.tshark
@pytest.mark.parametrize("name", CAPTURES)
def test_capture_packets_agree_with_tshark(name: str, tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    server_port = expected(name)["connections"][0]["server_port"]
    theirs = tshark_packets(name, tmp_path)
    v5 = name == "mqtt5"
    ours = [as_tshark(app, server_port, msg.sender, v5)
            for _, pairs in sorted(capture_pairs(name).items()) for msg, app in pairs]
    assert len(ours) == len(theirs)
    for mine, row in zip(ours, theirs):
        if row["tcp.srcport"] != str(server_port):
            row["tcp.srcport"] = ""
        ack = mqtt.PACKET_TYPES[int(row["mqtt.msgtype"])].lower()
        if v5 and ack in ("puback", "pubrec", "pubcomp") and not row[f"mqtt.{ack}.reason_code"]:
            row[f"mqtt.{ack}.reason_code"] = "0"    # a 2-byte v5 ack means 0x00 Success (§3.4.2.1)
        assert mine == row


# -- through analyze(): a capture built here, packets across and within binary WebSocket messages ----

@pytest.mark.parametrize("subprotocol", ["mqtt", None])
def test_analyze_decodes_packets_across_and_within_messages(tmp_path: Path, subprotocol: str | None) -> None:
    big = pkt(3, 2, s("big/topic") + u16(5) + bytes(3000))
    path = ws_capture(tmp_path / "mqtt.pcap", [
        (0, C311[0] + C311[1]),                 # 1: CONNECT and SUBSCRIBE in one message
        (1, S311[0]),                           # 2: CONNACK
        (1, S311[1][:3]),                       # 3: SUBACK begins...
        (0, big[:1000]),                        # 4: PUBLISH begins...
        (1, S311[1][3:] + S311[6][:1]),         # 5: ...SUBACK ends, PINGRESP begins (unasked)
        (0, big[1000:]),                        # 6: ...PUBLISH ends
        (1, S311[6][1:] + pkt(4, 0, u16(5))),   # 7: PINGRESP ends, PUBACK
        (0, b"\x00\x00garbage"),                # 8: reserved type 0: boundaries lost
        (0, C311[8]),                           # 9: DISCONNECT: a packet starts this message again
    ], subprotocol, binary=True)
    a = analyzer.analyze(path, jobs=1)
    assert a.connections["app_protocol"].tolist() == ["mqtt"]
    m = a.app_messages
    assert m["chosen_by"].astype(str).unique().tolist() == ["subprotocol" if subprotocol else "content"]
    got = list(zip(m["message_id"], m["app_index"], m["sender"].astype(str), m["type"].astype(str)))
    assert got == [(1, 0, "client", "CONNECT"), (1, 1, "client", "SUBSCRIBE"), (2, 0, "server", "CONNACK"),
                   (5, 0, "server", "SUBACK"), (6, 0, "client", "PUBLISH"), (7, 0, "server", "PINGRESP"),
                   (7, 1, "server", "PUBACK"), (9, 0, "client", "DISCONNECT")]
    e = a.exchanges.set_index("correlation_id")
    assert e.loc["connect", "latency"] == pytest.approx(0.01)
    # SUBSCRIBE sent with message 1, SUBACK completed by message 5 (4 packets later)
    assert e.loc["c:1", "method"] == "a/b,c/#" and e.loc["c:1", "latency"] == pytest.approx(0.04)
    assert e.loc["c:5", "method"] == "big/topic" and e.loc["c:5", "latency"] == pytest.approx(0.01)
    assert e["answered"].all()
    [problem] = a.problems.itertuples()
    assert problem.kind == "app-protocol-malformed"
    assert "message 8: reserved packet type 0: packet boundaries lost" in problem.detail


def test_packets_per_message_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "MAX_PER_MESSAGE", 3)
    dec = MqttDecoder()
    with pytest.raises(AppMalformed, match="over 3 packets in one message: its last 4 bytes are not decoded"
                       ) as info:
        dec.feed(ws(C311[7] * 5))
    assert [m.type for m in info.value.messages] == ["PINGREQ"] * 3
    assert [m.type for m in dec.feed(ws(C311[8]))] == ["DISCONNECT"]


def test_properties_and_filters_per_packet_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt, "MAX_ITEMS", 2)
    dec = MqttDecoder()
    dec.feed(ws(connect(5)))
    got = dec.feed(ws(pkt(3, 0, s("t") + props(USER, USER, USER, (0x01, b"\x01")) + b"x")))[0]
    assert got.fields["properties"] == {"user_property": [["k", "v"], ["k", "v"]], "unread_bytes": 9}
    assert got.fields["payload_len"] == 1
    filters = s("a") + b"\x00" + s("b") + b"\x01" + s("c") + b"\x02"
    got = dec.feed(ws(pkt(8, 2, u16(1) + props() + filters)))[0]
    assert got.channel == "a,b" and got.fields["unread_bytes"] == 4


def test_a_suback_with_a_million_codes() -> None:
    dec = MqttDecoder()
    codes = b"\x01" * 1_000_000 + b"\x80"
    got = dec.feed(ws(pkt(9, 0, u16(1) + codes), "server"))[0]
    assert got.status == "0x80" and got.fields["reason_codes"] == [1] * 20
    with pytest.raises(AppMalformed, match=re.escape("return codes [1, 1, 1, 1, 1, 1, 1, 1]")):
        dec.feed(ws(pkt(9, 0, u16(1) + codes + b"\x03"), "server"))
