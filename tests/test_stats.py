"""Tests of analyzer.stats: the Summary numbers, the tidy tables, empty analyses.

Also holds `synthetic()`, the Analysis builder that test_plots, test_report and test_cli import:
tables made with analyzer.tables.make_frame from rows written here, so every number is known.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analyzer.api import Analysis, CaptureInfo
from analyzer.tables import SCHEMAS, empty_tables, make_frame
from tests.capture_corpus import analyze_kwargs

T0 = 1_700_000_000_000_000_000  # ns
MS = 1_000_000


def _row(schema: str, **values: Any) -> SimpleNamespace:
    defaults = {
        "capture": "synthetic.pcap", "conn_id": 1, "frame_no": 1, "ts": T0, "sender": "client",
        "opcode": 1, "opcode_name": "text", "fin": True, "rsv1": False, "rsv2": False, "rsv3": False,
        "masked": False, "payload_len": 0, "header_len": 2, "compressed": False, "close_code": None,
        "close_reason": None, "message_id": None, "rtt": np.nan,
        "type": "text", "ts_start": T0, "ts_end": T0, "frames": 1, "wire_bytes": 0, "size": 0,
        "complete": True, "preview": "", "payload": None, "first_frame_no": 1, "last_frame_no": 1,
        "client": "10.0.0.1", "client_port": 40000, "server": "10.0.0.2", "server_port": 80,
        "ip_version": 4, "first_packet": 1, "start": T0, "end": T0, "duration": 0, "syn_seen": True,
        "version": 13,
        "draft": "rfc6455", "http_status": 101, "handshake_ok": True, "accept_valid": True,
        "failure_reason": None, "host": "example.test", "path": "/", "origin": None,
        "user_agent": None, "server_software": None, "subprotocols_offered": None, "subprotocol": None,
        "extensions_offered": None, "extensions": None, "compression": None, "cookies_present": False,
        "versions_supported": None, "close_code_client": None, "close_code_server": None,
        "close_reason_client": None, "close_reason_server": None, "close_initiator": None,
        "close_status": "clean", "tcp_end": "fin", "frames_client": 0,
        "frames_server": 0, "messages_client": 0, "messages_server": 0, "bytes_client": 0,
        "bytes_server": 0, "handshake_rtt": np.nan, "tcp_gaps": 0, "kind": "tcp-gap", "detail": "",
        "request_ts": None, "transport": "tcp", "h2_stream_id": None, "tcp_id": values.get("conn_id", 1),
        "websocket": True, "tls_version": None, "tls_cipher": None, "sni": None, "alpn": None,
        "decrypted": None, "not_decrypted": None, "community_id": None, "subprotocols_offered_list": None,
        "extensions_offered_list": None, "extensions_list": None, "app_protocol": None,
    }
    defaults.update(values)
    return SimpleNamespace(**{name: defaults[name] for name, _, _ in SCHEMAS[schema]})


def build(connections: list[dict], frames: list[dict], messages: list[dict] | None = None,
          problems: list[dict] | None = None, name: str = "synthetic.pcap", packets: int = 0) -> Analysis:
    """An Analysis from row dicts (unlisted columns take the defaults of `_row`)."""
    tables = {
        "connections": make_frame(SCHEMAS["connections"], [_row("connections", **r) for r in connections]),
        "frames": make_frame(SCHEMAS["frames"], [_row("frames", **r) for r in frames]),
        "messages": make_frame(SCHEMAS["messages"], [_row("messages", **r) for r in messages or []]),
        "problems": make_frame(SCHEMAS["problems"], [_row("problems", **r) for r in problems or []]),
    }
    tcp = len({r.get("conn_id", 1) for r in connections})
    return Analysis(captures=[CaptureInfo(name, name, packets, tcp, 12345)], **tables)


def empty() -> Analysis:
    return Analysis(captures=[], **empty_tables())


def small() -> Analysis:
    """Three connections, hand-written, every number below counted by hand.

    conn 1: rfc6455, permessage-deflate, subprotocol chat; client text "hello" (compressed 7→5? no:
            wire 4, size 5), server binary 3 bytes in 2 fragments, ping/pong rtt 2 ms, client
            closes 1000 "bye", server echoes 1000; clean.
    conn 2: rfc6455, server sends close 4000 with an empty-reason, client never answers: half-closed.
    conn 3: hixie-76 (version 0), no close frame: abnormal, close_code 1006.
    conn 4: handshake failed (426), version 13.
    """
    conns = [
        dict(conn_id=1, start=T0, end=T0 + 100 * MS, duration=100 * MS, subprotocol="chat",
             extensions="permessage-deflate", compression="permessage-deflate", close_code_client=1000,
             close_code_server=1000, close_reason_client="bye", close_reason_server="bye",
             close_initiator="client", close_code=1000, close_status="clean", frames_client=4,
             frames_server=4, messages_client=1, messages_server=1, bytes_client=30, bytes_server=20,
             handshake_rtt=0.004),
        dict(conn_id=2, client_port=40001, start=T0 + 10 * MS, end=T0 + 50 * MS, duration=40 * MS,
             close_code_server=4000, close_initiator="server", close_code=4000, close_status="half-closed",
             frames_server=1, bytes_server=4, handshake_rtt=0.002),
        dict(conn_id=3, client_port=40002, version=0, draft="hixie-76", start=T0 + 20 * MS,
             end=T0 + 2_000 * MS, duration=1_980 * MS, close_code=1006, close_status="abnormal",
             tcp_end="rst", handshake_rtt=0.006),
        dict(conn_id=4, client_port=40003, http_status=426, handshake_ok=False, accept_valid=None,
             failure_reason="status 426", close_status="handshake-failed", start=T0 + 30 * MS,
             end=T0 + 31 * MS, duration=1 * MS, handshake_rtt=0.001),
    ]
    frames = [
        dict(conn_id=1, frame_no=4, ts=T0 + 5 * MS, opcode=1, opcode_name="text", masked=True, rsv1=True,
             compressed=True, payload_len=4, header_len=6, message_id=1),
        dict(conn_id=1, frame_no=5, ts=T0 + 6 * MS, sender="server", opcode=2, opcode_name="binary",
             fin=False, payload_len=2, message_id=2),
        dict(conn_id=1, frame_no=6, ts=T0 + 7 * MS, sender="server", opcode=0, opcode_name="continuation",
             payload_len=1, message_id=2),
        dict(conn_id=1, frame_no=7, ts=T0 + 8 * MS, opcode=9, opcode_name="ping", masked=True,
             payload_len=1, header_len=6),
        dict(conn_id=1, frame_no=8, ts=T0 + 10 * MS, sender="server", opcode=10, opcode_name="pong",
             payload_len=1, rtt=0.002),
        dict(conn_id=2, frame_no=9, ts=T0 + 12 * MS, sender="server", opcode=8, opcode_name="close",
             payload_len=2, close_code=4000, close_reason=""),
        dict(conn_id=1, frame_no=10, ts=T0 + 90 * MS, opcode=8, opcode_name="close", masked=True,
             payload_len=5, header_len=6, close_code=1000, close_reason="bye"),
        dict(conn_id=1, frame_no=11, ts=T0 + 95 * MS, sender="server", opcode=8, opcode_name="close",
             payload_len=5, close_code=1000, close_reason="bye"),
    ]
    messages = [
        dict(conn_id=1, message_id=1, ts_start=T0 + 5 * MS, ts_end=T0 + 5 * MS, wire_bytes=4, size=5,
             compressed=True, preview="hello", first_frame_no=4, last_frame_no=4),
        dict(conn_id=1, message_id=2, sender="server", type="binary", ts_start=T0 + 6 * MS,
             ts_end=T0 + 7 * MS, frames=2, wire_bytes=3, size=3, preview="010203", first_frame_no=5,
             last_frame_no=6),
    ]
    problems = [
        dict(conn_id=3, frame_no=20, ts=T0 + 2_000 * MS, sender=None, kind="tcp-gap",
             detail="lost 100 bytes"),
        dict(conn_id=2, frame_no=9, ts=T0 + 12 * MS, sender="client", kind="close-not-echoed", detail=""),
        dict(conn_id=3, frame_no=21, ts=T0 + 2_000 * MS, sender=None, kind="tcp-gap",
             detail="lost 5 bytes"),
    ]
    return build(conns, frames, messages, problems, name="small.pcap", packets=40)


# --- tests ----------------------------------------------------------------------------------------

def test_summary_counts_small() -> None:
    s = small().summary()
    d = s.to_dict()
    assert d["packets"] == 40
    assert d["websocket_connections"] == 4
    assert d["connections_by_draft"] == {"rfc6455": 3, "hixie-76": 1}
    assert d["failed_handshakes"] == 1
    assert d["frames"] == 8
    assert d["frames_by_opcode"] == {"close": 3, "text": 1, "binary": 1, "continuation": 1, "ping": 1,
                                     "pong": 1}
    assert d["frames_by_sender"] == {"client": 3, "server": 5}
    assert d["messages"] == 2
    assert d["messages_by_type"] == {"text": 1, "binary": 1}
    assert d["bytes_on_wire"] == 54
    assert d["bytes_on_wire_by_sender"] == {"client": 30, "server": 24}
    assert d["message_bytes_wire"] == 7 and d["message_bytes"] == 8
    assert d["compressed_messages"] == 1 and d["compression_ratio"] == pytest.approx(5 / 4)
    assert d["close_codes"] == [
        {"code": 1000, "name": "Normal closure", "class": "standard", "count": 1},
        {"code": 1006, "name": "Abnormal closure", "class": "not-sent-on-wire", "count": 1},
        {"code": 4000, "name": "Private use", "class": "private", "count": 1},
    ]
    assert d["close_status"] == {"clean": 1, "half-closed": 1, "abnormal": 1, "open-at-end": 0,
                                 "handshake-failed": 1}
    assert d["close_initiator"] == {"client": 1, "server": 1, "none": 2}
    assert d["subprotocols"] == {"chat": 1}
    assert d["extensions"] == {"permessage-deflate": 1}
    assert d["problems"] == 3 and d["problems_by_kind"] == {"tcp-gap": 2, "close-not-echoed": 1}
    assert d["message_size"] == {"n": 2, "p50": 4.0, "p90": pytest.approx(4.8), "p99": pytest.approx(4.98),
                                 "max": 5.0}
    assert d["ping_rtt_ms"]["n"] == 1 and d["ping_rtt_ms"]["p50"] == pytest.approx(2.0)
    assert d["handshake_rtt_ms"]["max"] == pytest.approx(6.0)
    assert d["handshake_rtt_ms"]["p50"] == pytest.approx(3.0)
    # two messages between ts_start 5 ms and ts_end 7 ms: no rate from a 2 ms span (issue 13, item 23)
    assert d["messages_per_second"] is None
    assert d["duration_s"] == pytest.approx(2.0)
    json.dumps(d)  # serialisable
    text = str(s)
    assert "WebSocket connections  4 (rfc6455 3, hixie-76 1); 1 failed handshake" in text
    assert "1006 Abnormal closure (not-sent-on-wire) ×1" in text
    assert "Message rate           n/a (messages span under 1 s)" in text
    assert "<th" in s._repr_html_()


def test_message_rate_needs_a_span_of_a_second() -> None:
    """Issue 13, item 23: 2 messages 57 µs apart gave "35,087.72 messages/s"; 3 over 1.5 s is a rate."""
    quick = [dict(message_id=i, ts_start=T0 + i * 57_000, ts_end=T0 + i * 57_000) for i in (1, 2)]
    s = build([dict()], [], quick).summary()
    assert s["messages_per_second"] is None
    assert "messages/s" not in str(s) and "n/a" in dict(s.rows())["Message rate"]
    slow = [dict(message_id=i, ts_start=T0 + i * 750 * MS, ts_end=T0 + i * 750 * MS) for i in (0, 1, 2)]
    s = build([dict()], [], slow).summary()
    assert s["messages_per_second"] == pytest.approx(3 / 1.5)
    assert dict(s.rows())["Message rate"] == "2.00 messages/s"


def test_summary_empty() -> None:
    s = empty().summary()
    d = s.to_dict()
    assert d["websocket_connections"] == 0 and d["frames"] == 0 and d["messages"] == 0
    assert d["message_size"] == {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    assert d["compression_ratio"] is None and d["messages_per_second"] is None and d["start"] is None
    assert "no data" in str(s)
    json.dumps(d)


def test_summary_text_escapes_control_characters() -> None:
    a = build([dict(subprotocol="evil\x1b[31mred")], [])
    text = str(a.summary())
    assert "\x1b" not in text and "evil\\x1b[31mred" in text
    html_text = a.summary()._repr_html_()
    assert "<script" not in build([dict(subprotocol="<script>x</script>")], []).summary()._repr_html_()
    assert "\x1b" not in html_text


def test_close_codes_table() -> None:
    cc = small().close_codes()
    assert list(cc.columns) == ["code", "name", "class", "sender", "count"]
    rows = [tuple(r) for r in cc.astype(object).itertuples(index=False)]
    assert rows == [
        (1000, "Normal closure", "standard", "client", 1),
        (1000, "Normal closure", "standard", "server", 1),
        (1006, "Abnormal closure", "not-sent-on-wire", "none", 1),
        (4000, "Private use", "private", "server", 1),
    ]


def test_close_codes_empty_close_frame_is_1005() -> None:
    a = build([dict(close_code_client=1005, close_code=1005, close_initiator="client")],
              [dict(opcode=8, opcode_name="close", close_code=None)])
    cc = a.close_codes()
    assert cc[["code", "sender", "count"]].values.tolist() == [[1005, "client", 1]]
    assert cc["name"].iloc[0] == "No status received"


def test_close_codes_and_versions_empty() -> None:
    a = empty()
    cc = a.close_codes()
    assert cc.empty and list(cc.columns) == ["code", "name", "class", "sender", "count"]
    assert a.versions().empty and list(a.versions().columns) == ["version", "draft", "connections", "failed"]
    tl = a.timeline()
    assert tl.empty and list(tl.columns) == ["ts", "sender", "frames", "messages", "bytes"]


def test_versions_table() -> None:
    v = small().versions()
    assert v.values.tolist() == [[0, "hixie-76", 1, 0], [13, "rfc6455", 3, 1]]


def test_timeline_buckets() -> None:
    tl = small().timeline("5ms")
    # frames at 5,6,7,8,10,12,90,95 ms → buckets 5 (4 frames: c,s,s,c), 10 (s, s), 90 (c), 95 (s)
    assert tl["frames"].sum() == 8
    assert tl["messages"].sum() == 2
    assert tl["bytes"].sum() == 10 + 4 + 3 + 7 + 3 + 4 + 11 + 7
    first = tl[tl["ts"] == pd.Timestamp(T0 + 5 * MS, unit="ns", tz="UTC")].set_index("sender")
    assert first.loc["client", "frames"] == 2 and first.loc["server", "frames"] == 2
    assert first.loc["client", "messages"] == 1 and first.loc["server", "messages"] == 1
    # zero-filled grid: 5 ms .. 95 ms in 5 ms steps, two senders
    assert len(tl) == 19 * 2
    assert str(tl["ts"].dtype) == "datetime64[ns, UTC]"


def test_timeline_bad_freq() -> None:
    with pytest.raises(ValueError):
        small().timeline("fortnightly")


# --- real captures: the summary against the generator's expected.json -----------------------------

_CAPTURES = Path(__file__).resolve().parent.parent / "captures"
_EXPECTED = sorted(_CAPTURES.glob("*.expected.json"))


def _header_len(payload_len: int, masked: bool) -> int:
    return 2 + (0 if payload_len < 126 else 2 if payload_len < 65536 else 8) + (4 if masked else 0)


@pytest.mark.parametrize("expected_path", _EXPECTED, ids=[p.name.split(".")[0] for p in _EXPECTED])
def test_summary_matches_expected_capture(expected_path) -> None:
    import analyzer

    exp = json.loads(expected_path.read_text())
    if not exp.get("frames"):
        pytest.skip("no frame list in the expected file (tshark cannot list them: hixie framing, or "
                    "WebSocket over HTTP/2)")
    a = analyzer.analyze(_CAPTURES / exp["capture"], **analyze_kwargs(exp))
    d = a.summary().to_dict()
    frames, messages, conns = exp["frames"], exp["messages"], exp["connections"]
    assert d["tls"]["tls"] == sum(c.get("transport") == "tls" for c in conns)
    conns = [c for c in conns if c.get("transport") != "tls" or "draft" in c]  # no draft: no WebSocket
    assert d["websocket_connections"] == len(conns)
    assert d["failed_handshakes"] == sum(c.get("handshake_ok") is False for c in conns)
    assert d["frames"] == len(frames)
    assert d["frames_by_sender"] == {s: sum(f["sender"] == s for f in frames) for s in ("client", "server")}
    assert d["messages"] == len(messages)
    assert d["messages_by_type"] == {t: sum(m["type"] == t for m in messages) for t in ("text", "binary")}
    sizes = [m["size"] for m in messages]
    if sizes:
        assert d["message_size"]["max"] == max(sizes)
        assert d["message_size"]["p50"] == pytest.approx(float(np.percentile(sizes, 50)))
        assert d["message_bytes"] == sum(sizes)
    # close codes by sender, from the close frames (an empty close counts as 1005)
    want = sorted((f["sender"], f["close_code"] or 1005) for f in frames if f["opcode"] == 8)
    cc = a.close_codes()
    got = sorted((r.sender, int(r.code)) for r in cc.itertuples() if r.sender != "none"
                 for _ in range(r.count))
    assert got == want
    # WebSocket bytes on the wire = every frame's header + payload (when no TCP bytes were lost)
    if d["problems"] == 0 and all(c.get("handshake_ok") is not False for c in conns):
        assert d["bytes_on_wire"] == sum(f["payload_len"] + _header_len(f["payload_len"], f["masked"])
                                         for f in frames)
