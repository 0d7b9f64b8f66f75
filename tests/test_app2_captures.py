"""The application-protocol captures of captures/make_app2.py (mqtt311, mqtt5, stomp, jupyter_v1,
jupyter_json) against their expected files, below the application layer: the analyzer must find the
connections tshark saw (ports, subprotocol) and, per connection and sender in capture order, one
WebSocket data message per logged application message, completed by the packet the generator
recorded (ws_frame_no) at its timestamp (t_capture); each message's first bytes must be the logged
type (MQTT control packet type, STOMP command, Jupyter msg_type and msg_id), STOMP bodies and MQTT
payloads their logged sha256; the requests' capture latencies must be their messages' timestamps
and sit on the right side of the client's own timing. The decoders' tests (tests/test_app_mqtt.py,
test_app_stomp.py, test_app_jupyter.py) compare the application layer itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

APP = Path(__file__).resolve().parent.parent / "captures" / "app"
EXPECTED = sorted(
    p for p in APP.glob("*.expected.json")
    if json.loads(p.read_text(encoding="utf-8")).get("generator", "").startswith("make_app2.py ")
)
IDS = [p.name.removesuffix(".expected.json") for p in EXPECTED]

MQTT_TYPES = ("", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE",
              "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH")


def test_the_five_captures_are_there() -> None:
    assert IDS == ["jupyter_json", "jupyter_v1", "mqtt311", "mqtt5", "stomp"]


@functools.cache
def _analyzed(name: str) -> Any:
    import analyzer

    return analyzer.analyze(str(APP / f"{name}.pcap"), payloads=True, jobs=1)


@functools.cache
def _expected(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((APP / f"{name}.expected.json").read_text(encoding="utf-8"))
    return result


def _paired(name: str) -> list[tuple[dict, Any]]:
    """Each logged message with the analyzer's data message at the same place (connection, sender,
    order); the counts must agree."""
    a = _analyzed(name)
    ports = dict(zip(a.connections["conn_id"], a.connections["client_port"], strict=True))
    data = a.messages[a.messages["type"].isin(["text", "binary"])].sort_values(["conn_id", "message_id"])
    found: dict[tuple[int, str], list[Any]] = {}
    for row in data.itertuples():
        found.setdefault((int(ports[row.conn_id]), str(row.sender)), []).append(row)
    logged: dict[tuple[int, str], list[dict]] = {}
    for m in _expected(name)["messages"]:
        logged.setdefault((m["client_port"], m["sender"]), []).append(m)
    assert {k: len(v) for k, v in found.items()} == {k: len(v) for k, v in logged.items()}
    return [(m, row) for key, ms in logged.items() for m, row in zip(ms, found[key], strict=True)]


@pytest.mark.parametrize("name", IDS)
def test_the_connections_are_those_tshark_saw(name: str) -> None:
    exp = _expected(name)
    conns = _analyzed(name).connections.sort_values("client_port")
    want = sorted(exp["connections"], key=lambda c: c["client_port"])
    assert [int(p) for p in conns["client_port"]] == [c["client_port"] for c in want]
    for (_, conn), c in zip(conns.iterrows(), want, strict=True):
        assert int(conn["server_port"]) == c["server_port"]
        assert bool(conn["handshake_ok"])
        assert (None if pd.isna(conn["subprotocol"]) else conn["subprotocol"]) == c["subprotocol"]


@pytest.mark.parametrize("name", IDS)
def test_each_logged_message_is_the_data_message_the_generator_linked(name: str) -> None:
    for m, row in _paired(name):
        assert int(row.last_frame_no) == m["ws_frame_no"]
        assert abs(row.ts_end.value / 1e9 - m["t_capture"]) < 2e-6  # pcap: microseconds
        assert bool(row.complete)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """An MQTT variable byte integer at data[i]: its value and the index after it."""
    value, shift = 0, 0
    while True:
        value |= (data[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not data[i - 1] & 0x80:
            return value, i


def _mqtt_publish_payload(payload: bytes, v5: bool) -> bytes:
    """The application payload of one PUBLISH packet (the whole WebSocket message here)."""
    remaining, i = _varint(payload, 1)
    assert remaining == len(payload) - i  # one packet per WebSocket message
    topic_len = int.from_bytes(payload[i:i + 2], "big")
    i += 2 + topic_len + (2 if (payload[0] >> 1) & 3 else 0)
    if v5:
        props, i = _varint(payload, i)
        i += props
    return payload[i:]


@pytest.mark.parametrize("name", ["mqtt311", "mqtt5"])
def test_mqtt_messages_start_with_the_logged_packet_and_carry_the_logged_payload(name: str) -> None:
    pairs = _paired(name)
    for m, row in pairs:
        payload = bytes(row.payload)
        assert row.type == "binary"
        assert MQTT_TYPES[payload[0] >> 4] == m["type"]
        if m["type"] == "PUBLISH":
            assert (payload[0] >> 1) & 3 == m["qos"]
            assert bool(payload[0] & 1) == m["retain"]
            body = _mqtt_publish_payload(payload, name == "mqtt5")
            assert len(body) == m["payload_len"]
            assert hashlib.sha256(body).hexdigest() == m["sha256"]
    assert max(len(bytes(row.payload)) for _, row in pairs) > 65536  # the big PUBLISH


def test_stomp_frames_are_the_logged_commands_and_bodies() -> None:
    for m, row in _paired("stomp"):
        payload = bytes(row.payload)
        assert row.type == "text"
        if m["type"] == "HEARTBEAT":
            assert payload in (b"\n", b"\r\n")
            continue
        head, _, rest = payload.partition(b"\n\n")
        assert head.split(b"\n")[0].decode() == m["type"]
        if "content-length" in m["headers"]:
            body = rest[: int(m["headers"]["content-length"])]
        else:  # up to the NUL (EOLs may follow it)
            body = rest.partition(b"\x00")[0]
        assert len(body) == m["body_len"]
        if body:
            assert hashlib.sha256(body).hexdigest() == m["body_sha256"]


@pytest.mark.parametrize("name", ["jupyter_v1", "jupyter_json"])
def test_jupyter_messages_carry_the_logged_msg_id(name: str) -> None:
    for m, row in _paired(name):
        payload = bytes(row.payload)
        if name == "jupyter_json":
            assert row.type == "text"
            msg = json.loads(payload)
            assert msg["channel"] == m["channel"]
            assert msg["header"]["msg_type"] == m["type"]
            assert msg["header"]["msg_id"] == m["msg_id"]
        else:
            assert row.type == "binary"
            assert f'"msg_id":"{m["msg_id"]}"'.encode() in payload.replace(b'": "', b'":"')
            assert m["channel"].encode() in payload[:200]


@pytest.mark.parametrize("name", IDS)
def test_request_latencies_are_those_of_their_messages(name: str) -> None:
    exp = _expected(name)
    by_time = {(m["client_port"], m["t"]): m for m in exp["messages"]}  # one packet may end several
    answered = [r for r in exp["requests"] if r["response_frame_no"] is not None]
    assert answered
    for r in answered:
        req = by_time[(r["client_port"], r["t_send"])]
        resp = by_time[(r["client_port"], r["t_recv"])]
        assert (req["type"], resp["type"]) == (r["request_type"], r["response_type"])
        assert (req["ws_frame_no"], resp["ws_frame_no"]) == (r["request_frame_no"], r["response_frame_no"])
        latency = (resp["t_capture"] - req["t_capture"]) * 1000
        assert r["latency_capture_ms"] == pytest.approx(latency, abs=1e-3)
        assert r["latency_capture_ms"] >= 0
        # the client times a message it sends before the send, one it receives after it arrived
        slack = exp["log_skew_ms"]["max"] + 1
        if r["requester"] == "client":
            assert r["latency_ms"] >= r["latency_capture_ms"] - slack
        else:
            assert r["latency_ms"] <= r["latency_capture_ms"] + slack
        if r.get("sleep_s"):
            assert r["latency_capture_ms"] >= r["sleep_s"] * 1000
