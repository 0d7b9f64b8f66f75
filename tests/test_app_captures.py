"""The application-protocol captures of captures/make_app.py (socketio, jsonrpc, graphql_transport_ws,
graphql_ws) against their expected files, below the application layer: the analyzer must find the
one connection the programs logged and, in capture order, exactly the WebSocket data messages the
senders logged (sender, type, size, sha256, completing packet and its timestamp); the timed requests'
capture latencies must be those of their messages' timestamps and lie between the delay the answering
side added and the latency the asker measured; tshark (marker `tshark`) must still see the same data
messages. The decoders' own tests (tests/test_app_*.py) compare the application layer.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

APP = Path(__file__).resolve().parent.parent / "captures" / "app"
# only make_app.py's expected files (make_app2.py's share the folder with another layout)
EXPECTED = sorted(
    p for p in APP.glob("*.expected.json")
    if json.loads(p.read_text(encoding="utf-8")).get("generator", "").startswith("make_app.py ")
)
IDS = [p.name.removesuffix(".expected.json") for p in EXPECTED]


def test_the_four_captures_are_there() -> None:
    assert IDS == ["graphql_transport_ws", "graphql_ws", "jsonrpc", "socketio"]


@functools.cache
def _analyzed(name: str) -> Any:
    import analyzer

    return analyzer.analyze(str(APP / f"{name}.pcap"), payloads=True, jobs=1)


def _expected(name: str) -> dict[str, Any]:
    return json.loads((APP / f"{name}.expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", IDS)
def test_the_connection_is_the_one_the_programs_logged(name: str) -> None:
    exp = _expected(name)
    conns = _analyzed(name).connections
    assert len(conns) == 1
    conn = conns.iloc[0]
    assert int(conn["client_port"]) == exp["client_port"]
    assert int(conn["server_port"]) == exp["server_port"]
    assert bool(conn["handshake_ok"])
    assert (None if pd.isna(conn["subprotocol"]) else conn["subprotocol"]) == exp["subprotocol"]
    assert pd.isna(conn["extensions"])  # no compression: the logged sizes are the frames' sizes


@pytest.mark.parametrize("name", IDS)
def test_the_messages_are_those_the_senders_logged_in_capture_order(name: str) -> None:
    exp = _expected(name)
    msgs = _analyzed(name).messages.sort_values("message_id")
    got = [
        {
            "sender": m.sender,
            "type": m.type,
            "size": int(m.size),
            "sha256": hashlib.sha256(bytes(m.payload)).hexdigest(),
            "frame_no": int(m.last_frame_no),
            "ts_us": m.ts_end.value // 1000,
        }
        for m in msgs.itertuples()
    ]
    want = [
        {k: w[k] for k in ("sender", "type", "size", "sha256", "frame_no")} | {"ts_us": round(w["ts"] * 1e6)}
        for w in exp["wire"]
    ]
    assert got == want
    for w in exp["wire"]:  # the texts are the payloads whose digests were logged
        if w["text"] is not None:
            assert hashlib.sha256(w["text"].encode()).hexdigest() == w["sha256"]
    # what python-socketio logged but never sent is not in the capture
    assert not {u["sha256"] for u in exp["logged_not_sent"]} & {g["sha256"] for g in got[-2:]}


@pytest.mark.parametrize("name", IDS)
def test_capture_latencies_come_from_the_messages_timestamps(name: str) -> None:
    exp = _expected(name)
    ts = {w["frame_no"]: w["ts"] for w in exp["wire"]}
    assert exp["requests"]
    for r in exp["requests"]:
        between = (ts[r["answer_frame"]] - ts[r["request_frame"]]) * 1000
        assert r["capture_latency_ms"] == pytest.approx(between, abs=0.002)
        assert (r["delay_ms"] or 0) <= r["capture_latency_ms"] <= r["latency_ms"]
        assert r["latency_ms"] == pytest.approx((r["t_recv"] - r["t_send"]) * 1000, abs=0.002)


def test_socketio_requests_with_known_delays() -> None:
    """The delays the scenario asked for, each answered (ack ids per namespace, both directions)."""
    exp = _expected("socketio")
    timed = [(r["sender"], r["namespace"], r["name"], r["id"], r["delay_ms"]) for r in exp["requests"]]
    assert timed == [
        ("client", "/", "work", 1, 10),
        ("client", "/", "work", 2, 50),
        ("client", "/", "work", 3, 120),
        ("client", "/chat", "work", 1, 30),
        ("client", "/", "upload", 4, 0),
        ("server", "/", "confirm", 1, 20),
    ]
    pings = [w["text"] for w in exp["wire"] if w["text"] in ("2", "3")]
    assert len(pings) >= 2 and pings[0] == "2"


_spec = importlib.util.spec_from_file_location("capture_tshark_frames", APP.parent / "tshark_frames.py")
assert _spec is not None and _spec.loader is not None
_tshark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tshark)


@pytest.mark.tshark
@pytest.mark.skipif(not _tshark.tshark_available(), reason="tshark not installed")
@pytest.mark.parametrize("name", IDS)
def test_tshark_sees_the_same_data_messages(name: str) -> None:
    exp = _expected(name)
    frames = _tshark.tshark_frames(APP / f"{name}.pcap", {exp["server_port"]})
    for side in ("client", "server"):
        seen: list[tuple[str, int, int]] = []
        size, kind = 0, ""
        for f in frames:
            if f["sender"] != side or f["opcode"] not in (0, 1, 2):
                continue
            if f["opcode"]:
                size, kind = 0, "text" if f["opcode"] == 1 else "binary"
            size += f["payload_len"]
            if f["fin"]:
                seen.append((kind, size, f["frame_no"]))
        assert seen == [(w["type"], w["size"], w["frame_no"]) for w in exp["wire"] if w["sender"] == side]
