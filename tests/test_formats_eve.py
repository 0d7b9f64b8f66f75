"""export --format eve: Suricata EVE JSON lines, one per WebSocket frame, checked line by line on a
built capture and against tshark's dissection of real captures."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path

import pytest

import analyzer
from analyzer.export import export
from tests.app_formats import APP, app_objects, logged_latencies_ms
from tests.formats_sample import BINARY, SECRET, TEXT, build

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
_spec = importlib.util.spec_from_file_location("capture_tshark_frames", CAPTURES / "tshark_frames.py")
tshark_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tshark_mod)

SURICATA_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000")
NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def eve_lines(a: analyzer.Analysis, directory: Path) -> list[dict]:
    [path] = export(a, directory, "eve")
    assert path.endswith("eve.json")
    text = Path(path).read_text(encoding="utf-8")
    assert text.endswith("\n") and SECRET not in text
    return [json.loads(line) for line in text.splitlines()]


def test_sample_frames(tmp_path: Path) -> None:
    a = analyzer.analyze(build(tmp_path), progress=False)
    events = eve_lines(a, tmp_path / "out")
    assert len(events) == len(a.frames) == 6
    cid = a.connections["community_id"].iloc[0]
    flow_ids = {e["flow_id"] for e in events}
    assert len(flow_ids) == 1 and 0 < flow_ids.pop() < 2**53
    for e, f in zip(events, a.frames.itertuples()):
        assert SURICATA_TS.fullmatch(e["timestamp"])
        assert e["timestamp"].startswith(f.ts.strftime("%Y-%m-%dT%H:%M:%S.%f"))
        assert e["pcap_cnt"] == f.frame_no
        assert (e["event_type"], e["proto"], e["app_proto"]) == ("websocket", "TCP", "websocket")
        assert e["community_id"] == cid
        client = ("192.0.2.10", 50123)
        server = ("198.51.100.20", 8080)
        src, dst = (client, server) if f.sender == "client" else (server, client)
        assert (e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"]) == (*src, *dst)
        ws = e["websocket"]
        assert ws["opcode"] == NAMES[f.opcode] and ws["fin"] is True
        assert ws["masked"] is (f.sender == "client") and ws["payload_len"] == f.payload_len
        assert "payload_base64" not in ws                    # payloads not kept
    closes = [e["websocket"] for e in events if e["websocket"]["opcode"] == "close"]
    assert [(c["close_code"], c["close_reason"]) for c in closes] == [(1000, "bye"), (1000, "bye")]
    assert events[0]["websocket"]["payload_len"] == len(TEXT.encode())


def test_payloads_on_the_frame_that_completes_the_message(tmp_path: Path) -> None:
    a = analyzer.analyze(build(tmp_path), progress=False, payloads=True)
    events = eve_lines(a, tmp_path / "out")
    carried = {e["websocket"]["opcode"]: base64.b64decode(e["websocket"]["payload_base64"])
               for e in events if "payload_base64" in e["websocket"]}
    assert carried == {"text": TEXT.encode(), "binary": BINARY}


def test_fragmented_message_and_unknown_opcode(tmp_path: Path) -> None:
    a = analyzer.analyze(CAPTURES / "ws_fragments_ping.pcap", progress=False, payloads=True)
    events = eve_lines(a, tmp_path)
    m = a.messages
    with_payload = [e for e in events if "payload_base64" in e["websocket"]]
    assert len(with_payload) == len(m)
    for e, msg in zip(with_payload, m.itertuples()):
        assert e["pcap_cnt"] == msg.last_frame_no and e["websocket"]["fin"] is True
        assert base64.b64decode(e["websocket"]["payload_base64"]) == msg.payload
    assert any(e["websocket"]["opcode"] == "continuation" for e in events)
    from analyzer.formats.eve import OPCODES

    assert OPCODES.get(3, "unknown-3") == "unknown-3"


@pytest.mark.tshark
@pytest.mark.skipif(not tshark_mod.tshark_available(), reason="tshark is not installed")
@pytest.mark.parametrize("name", ["ws_fragments_ping.pcap", "ws_close_codes_server.pcap", "ipv6.pcap"])
def test_agrees_with_tshark(tmp_path: Path, name: str) -> None:
    expected = json.loads((CAPTURES / name).with_suffix(".expected.json").read_text())
    ports = {c["server_port"] for c in expected["connections"]}
    theirs = tshark_mod.tshark_frames(CAPTURES / name, ports)
    events = eve_lines(analyzer.analyze(CAPTURES / name, progress=False), tmp_path)
    assert len(theirs) == len(events) > 0
    for t, e in zip(theirs, events):
        ws = e["websocket"]
        sport = e["src_port"] if t["sender"] == "client" else e["dest_port"]
        assert (e["pcap_cnt"], sport, ws["opcode"], ws["fin"], ws["masked"], ws["payload_len"]) == (
            t["frame_no"], t["client_port"], NAMES.get(t["opcode"], f"unknown-{t['opcode']}"),
            t["fin"], t["masked"], t["payload_len"])
        assert ws.get("close_code") == t["close_code"]


def test_chunking_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks in which no frame has a close code, payload or community id (one frame each, and a
    multi-capture analysis) give the same lines as one chunk."""
    from io import StringIO

    from analyzer.formats import eve

    a = analyzer.analyze([build(tmp_path), CAPTURES / "ws_fragments_ping.pcap"], progress=False,
                         payloads=True)
    whole = StringIO()
    eve.write_eve(a, whole)
    monkeypatch.setattr(eve, "CHUNK_ROWS", 1)
    pieces = StringIO()
    assert eve.write_eve(a, pieces) == len(a.frames)
    assert pieces.getvalue() == whole.getvalue()
    events = [json.loads(line) for line in whole.getvalue().splitlines()]
    assert {e["pcap_filename"] for e in events} == {"formats_sample.pcap", "ws_fragments_ping.pcap"}
    assert len({e["flow_id"] for e in events}) == 2


@pytest.mark.parametrize("name", ["jsonrpc", "mqtt5"])
def test_app_messages_on_the_completing_frame(tmp_path: Path, name: str) -> None:
    """Real captures (jsonrpc over websockets, paho-mqtt 5 to mosquitto): the frame that completes a
    message lists its application messages; a response carries its exchange's latency, which is
    what the capture's generator measured between the request and response packets."""
    a = analyzer.analyze(APP / f"{name}.pcap", progress=False)
    events = eve_lines(a, tmp_path)
    assert len(events) == len(a.frames)
    expected = app_objects(a)
    m = a.messages
    assert not m.duplicated(["conn_id", "last_frame_no"]).any()     # pcap_cnt names the message here
    by_frame = {(int(r.conn_id), int(r.last_frame_no)): int(r.message_id) for r in m.itertuples()}
    conn_by_port = dict(zip(a.connections["client_port"], a.connections["conn_id"]))
    carried = [e for e in events if "app" in e["websocket"]]
    assert len(carried) == len(expected) > 10
    for e in carried:
        port = e["src_port"] if e["websocket"]["masked"] else e["dest_port"]
        conn = int(conn_by_port[port])
        assert e["websocket"]["app"] == expected[(conn, by_frame[(conn, e["pcap_cnt"])])]
    objects = [o for e in carried for o in e["websocket"]["app"]]
    assert all(None not in o.values() for o in objects)                # null fields left out
    latencies = sorted(o["latency_ms"] for o in objects if "latency_ms" in o)
    assert latencies == logged_latencies_ms(name)
    assert {o["role"] for o in objects if "latency_ms" in o} == {"response"}
    methods = sorted(o["channel"] for o in objects if o["role"] == "request" and "channel" in o)
    assert methods == sorted(a.exchanges["method"].dropna())


def test_one_packet_completing_two_messages(tmp_path: Path) -> None:
    """jupyter_v1.pcap has packets that complete two messages: each message's payload and
    application messages are on its own last frame, once."""
    a = analyzer.analyze(APP / "jupyter_v1.pcap", progress=False, payloads=True)
    assert a.messages.duplicated(["conn_id", "last_frame_no"]).any()
    events = eve_lines(a, tmp_path)
    payloads = [base64.b64decode(e["websocket"]["payload_base64"]) for e in events
                if "payload_base64" in e["websocket"]]
    assert payloads == [bytes(p) for p in a.messages["payload"]]
    expected = app_objects(a)
    assert [e["websocket"]["app"] for e in events if "app" in e["websocket"]] == [
        expected[k] for k in zip(a.messages["conn_id"], a.messages["message_id"]) if k in expected]


def test_no_app_key_without_application_messages(tmp_path: Path) -> None:
    a = analyzer.analyze(CAPTURES / "ws_fragments_ping.pcap", progress=False)
    assert a.app_messages.empty
    assert not any("app" in e["websocket"] for e in eve_lines(a, tmp_path))


def test_chunking_changes_nothing_with_app_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app objects are looked up per chunk: one frame a chunk gives the same lines."""
    from io import StringIO

    from analyzer.formats import eve

    a = analyzer.analyze([APP / "jsonrpc.pcap", APP / "jupyter_v1.pcap"], progress=False, payloads=True)
    whole = StringIO()
    eve.write_eve(a, whole)
    monkeypatch.setattr(eve, "CHUNK_ROWS", 7)
    pieces = StringIO()
    eve.write_eve(a, pieces)
    assert pieces.getvalue() == whole.getvalue()
    assert whole.getvalue().count('"app":[') == a.app_messages.groupby(["conn_id", "message_id"]).ngroups
