"""End-to-end: hand-built pcaps through analyzer.analyze(), checking the four DataFrames."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import analyzer
from tests.pcapgen import (
    Conversation,
    close_payload,
    frame,
    upgrade_request,
    upgrade_response,
    write_pcap,
)

MASK = b"\x37\xfa\x21\x3d"


def _clean_conversation() -> Conversation:
    conv = Conversation(client_port=50001, server_port=9123)
    conv.handshake()                                               # records 1-3
    conv.send(0, upgrade_request())                                # 4
    # The 101 response and the first server frame share one segment (Zeek's coalesced case).
    conv.send(1, upgrade_response() + frame(0x1, b"welcome"))     # 5
    conv.send(0, frame(0x1, b"Hello", mask=MASK))                  # 6
    conv.send(0, frame(0x9, b"p1", mask=MASK))                     # 7
    conv.send(1, frame(0xA, b"p1"))                                # 8
    # A fragmented text message with a multi-byte character split across the fragments.
    text = "caf\u00e9 \u20ac".encode()
    conv.send(1, frame(0x1, text[:4], fin=False))                  # 9
    conv.send(1, frame(0x0, text[4:]))                             # 10
    conv.send(1, frame(0x8, close_payload(1000, "bye")))           # 11
    conv.send(0, frame(0x8, close_payload(1000), mask=MASK))       # 12
    conv.fin(1)                                                    # 13
    conv.fin(0)                                                    # 14
    return conv


@pytest.fixture
def clean_capture(tmp_path):
    path = tmp_path / "clean.pcap"
    write_pcap(path, _clean_conversation().packets)
    return path


def test_clean_connection_row(clean_capture):
    a = analyzer.analyze(clean_capture)
    assert len(a.connections) == 1
    c = a.connections.iloc[0]
    assert (c.client, c.client_port, c.server, c.server_port) == ("10.0.0.1", 50001, "10.0.0.2", 9123)
    assert c.version == 13 and c.draft == "rfc6455"
    assert c.http_status == 101 and bool(c.handshake_ok) and bool(c.accept_valid)
    assert c.path == "/chat" and c.host == "server.example.com" and c.origin == "http://example.com"
    assert c.close_code_server == 1000 and c.close_code_client == 1000
    assert c.close_reason_server == "bye"
    assert c.close_initiator == "server" and c.close_code == 1000 and c.close_status == "clean"
    assert c.tcp_end == "fin"
    assert (c.frames_client, c.frames_server) == (3, 5)
    assert (c.messages_client, c.messages_server) == (1, 2)
    assert c.handshake_rtt == pytest.approx(0.001, abs=2e-6)


def test_frames_table(clean_capture):
    a = analyzer.analyze(clean_capture)
    f = a.frames
    assert list(f.frame_no) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert list(f.opcode_name) == ["text", "text", "ping", "pong", "text", "continuation", "close", "close"]
    assert list(f.sender) == ["server", "client", "client", "server", "server", "server", "server", "client"]
    assert list(f.masked) == [False, True, True, False, False, False, False, True]
    assert list(f.fin) == [True, True, True, True, False, True, True, True]
    assert list(f.payload_len) == [7, 5, 2, 2, 4, 5, 5, 2]
    assert f.close_code.tolist()[-2:] == [1000, 1000]
    assert f.close_reason.iloc[-2] == "bye"
    assert str(f.ts.dtype) == "datetime64[ns, UTC]"
    # Both fragments carry the message id of the fragmented message; control frames have none.
    assert f.message_id.iloc[4] == f.message_id.iloc[5]
    assert pd.isna(f.message_id.iloc[2]) and pd.isna(f.message_id.iloc[6])
    assert f.rtt.iloc[3] == pytest.approx(0.001, abs=2e-6)


def test_messages_table(clean_capture):
    a = analyzer.analyze(clean_capture, payloads=True)
    m = a.messages
    assert list(m.sender) == ["server", "client", "server"]
    assert list(m.type) == ["text", "text", "text"]
    assert list(m["size"]) == [7, 5, 9]
    assert m.payload.iloc[2] == "caf\u00e9 \u20ac".encode()
    assert m.preview.iloc[2] == "caf\u00e9 \u20ac"
    assert list(m.frames) == [1, 1, 2]
    assert a.problems.empty, a.problems


def test_split_invariance_over_segments(tmp_path):
    """The same conversation cut into 1-byte TCP segments gives the same frames and messages."""
    whole = _clean_conversation()
    conv = Conversation(client_port=50001, server_port=9123)
    conv.handshake()
    for direction, data in [(0, upgrade_request()), (1, upgrade_response() + frame(0x1, b"welcome")),
                            (0, frame(0x1, b"Hello", mask=MASK)), (1, frame(0x8, close_payload(1001)))]:
        for i in range(len(data)):
            conv.send(direction, data[i:i + 1])
    write_pcap(tmp_path / "a.pcap", whole.packets)
    write_pcap(tmp_path / "b.pcap", conv.packets)
    b = analyzer.analyze(tmp_path / "b.pcap")
    assert list(b.frames.opcode_name) == ["text", "text", "close"]
    assert list(b.messages.preview) == ["welcome", "Hello"]
    assert b.connections.iloc[0].close_status == "half-closed"
    assert b.connections.iloc[0].close_code == 1001


def test_abnormal_end_is_1006(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(0, frame(0x2, b"\x00\x01", mask=MASK))
    conv.rst(1)
    write_pcap(tmp_path / "rst.pcap", conv.packets)
    c = analyzer.analyze(tmp_path / "rst.pcap").connections.iloc[0]
    assert c.close_status == "abnormal" and c.close_code == 1006 and c.tcp_end == "rst"
    assert pd.isna(c.close_code_client) and pd.isna(c.close_code_server)


def test_open_at_end(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(1, frame(0x1, b"tick"))
    write_pcap(tmp_path / "open.pcap", conv.packets)
    c = analyzer.analyze(tmp_path / "open.pcap").connections.iloc[0]
    assert c.close_status == "open-at-end" and pd.isna(c.close_code)


def test_failed_handshake_403(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")
    conv.fin(1)
    conv.fin(0)
    write_pcap(tmp_path / "403.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "403.pcap")
    c = a.connections.iloc[0]
    assert c.http_status == 403 and not c.handshake_ok and c.close_status == "handshake-failed"
    assert "handshake-failed" in set(a.problems.kind.astype(str))
    assert a.frames.empty


def test_plain_http_is_not_a_connection(tmp_path):
    conv = Conversation(server_port=80)
    conv.handshake()
    conv.send(0, b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    conv.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    conv.fin(1)
    conv.fin(0)
    write_pcap(tmp_path / "http.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "http.pcap")
    assert a.connections.empty and a.frames.empty and a.problems.empty


def test_wrong_accept_is_a_problem_not_a_crash(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
    conv.send(1, frame(0x1, b"still here"))
    write_pcap(tmp_path / "accept.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "accept.pcap")
    c = a.connections.iloc[0]
    assert not c.accept_valid
    assert "accept-key-mismatch" in set(a.problems.kind.astype(str))
    assert list(a.messages.preview) == ["still here"]


def test_mid_stream_capture_needs_ports(tmp_path):
    """No SYN, no handshake: nothing without ports=, every frame with ports=[9000]."""
    conv = Conversation(client_port=50123, server_port=9000)
    conv.send(1, frame(0x1, b"server says"))
    conv.send(0, frame(0x1, b"client says", mask=MASK))
    conv.send(0, frame(0x8, close_payload(1000), mask=MASK))
    conv.send(1, frame(0x8, close_payload(1000)))
    write_pcap(tmp_path / "mid.pcap", conv.packets)
    assert analyzer.analyze(tmp_path / "mid.pcap").frames.empty
    a = analyzer.analyze(tmp_path / "mid.pcap", ports=[9000])
    assert list(a.frames.sender) == ["server", "client", "client", "server"]
    assert list(a.messages.preview) == ["server says", "client says"]
    c = a.connections.iloc[0]
    assert c.server_port == 9000 and c.close_status == "clean" and c.close_initiator == "client"
    assert not c.syn_seen


def test_violations_reach_problems(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(0, frame(0x1, b"unmasked"))                       # client frames must be masked
    conv.send(1, frame(0x1, b"masked", mask=MASK))             # server frames must not be
    conv.send(1, frame(0x9, b"x" * 126))                       # control frame over 125 bytes
    conv.send(1, frame(0x3, b""))                              # reserved opcode
    conv.send(1, frame(0x1, b"\xff\xfe"))                      # invalid UTF-8
    conv.send(1, frame(0x8, close_payload(1005)))              # code forbidden on the wire
    conv.send(1, frame(0x1, b"late"))                          # data after close
    write_pcap(tmp_path / "bad.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "bad.pcap")
    kinds = set(a.problems.kind.astype(str))
    for kind in ["unmasked-client-frame", "masked-server-frame", "control-frame-too-long",
                 "reserved-opcode", "invalid-utf8", "forbidden-close-code", "data-after-close"]:
        assert kind in kinds, (kind, kinds)
    assert len(a.frames) == 7


def test_several_captures_get_unique_conn_ids(tmp_path, clean_capture):
    conv = Conversation(client_port=50002)
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    write_pcap(tmp_path / "second.pcap", conv.packets)
    a = analyzer.analyze([clean_capture, tmp_path / "second.pcap"])
    assert list(a.connections.conn_id) == [1, 2]
    assert list(a.connections.capture.astype(str)) == ["clean.pcap", "second.pcap"]
    assert set(a.frames.conn_id) == {1}


def test_not_a_capture_raises_capture_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello world, not a capture\n")
    with pytest.raises(analyzer.CaptureError):
        analyzer.analyze(bad)


def test_same_capture_twice_is_analysed_twice(clean_capture):
    a = analyzer.analyze([clean_capture, clean_capture])
    assert list(a.connections.conn_id) == [1, 2]
    assert list(a.connections.capture.astype(str)) == ["clean.pcap", "clean.pcap#2"]
    assert len(a.frames) == 16


def test_hybi05_connection_decodes_both_directions(tmp_path):
    """hybi-05: client frames carry a nonce and are masked whole; server frames are plain with
    the old opcode numbers (text 4, close 1)."""
    from tests.test_frames_hybi04 import CLOSE04, TEXT04, clear_frame, hybi05_client_frame

    conv = Conversation()
    conv.handshake()
    conv.send(0, b"GET /old HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Origin: http://h\r\n"
                 b"Sec-WebSocket-Version: 5\r\n\r\n")
    conv.send(1, upgrade_response() + clear_frame(TEXT04, b"hello 05"))
    conv.send(0, hybi05_client_frame(b"\x11\x22\x33\x44", TEXT04, b"hi from an old client"))
    conv.send(0, hybi05_client_frame(b"\x55\x66\x77\x88", CLOSE04, close_payload(1000)))
    conv.send(1, clear_frame(CLOSE04, close_payload(1000)))
    write_pcap(tmp_path / "hybi05.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "hybi05.pcap")
    c = a.connections.iloc[0]
    assert (c.version, c.draft) == (5, "hybi-05")
    assert list(a.messages.preview) == ["hello 05", "hi from an old client"]
    assert list(a.frames.opcode_name) == ["text", "text", "close", "close"]
    assert list(a.frames.masked) == [False, True, True, False]
    assert c.close_status == "clean" and c.close_code == 1000
    assert a.problems.empty, a.problems


@pytest.mark.parametrize("capture", ["demo.pcapng", "interleaved_9123.pcap", "incident.pcapng"])
def test_sharding_across_processes_changes_nothing(monkeypatch, capture):
    """A capture split between two processes by connection gives exactly the same tables."""
    import analyzer.api

    path = f"captures/{capture}"
    one = analyzer.analyze(path, jobs=1, payloads=True)
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    two = analyzer.analyze(path, jobs=2, payloads=True)
    for name in ("connections", "frames", "messages", "problems"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name), check_exact=True)
    assert list(one.connections.conn_id) == list(range(1, len(one.connections) + 1))
    assert one.captures[0].packets == two.captures[0].packets
    assert one.captures[0].tcp_connections == two.captures[0].tcp_connections


def test_close_answered_by_fin_is_close_not_echoed(tmp_path):
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(1, frame(0x8, close_payload(1002, "protocol error")))
    conv.fin(0)
    conv.fin(1)
    write_pcap(tmp_path / "half.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "half.pcap")
    c = a.connections.iloc[0]
    assert c.close_status == "half-closed" and c.close_code == 1002 and c.close_initiator == "server"
    p = a.problems[a.problems.kind == "close-not-echoed"]
    assert len(p) == 1 and p.iloc[0].sender == "client" and "1002" in p.iloc[0].detail


def test_hybi04_connection_unmasks_with_the_handshake_keys(tmp_path):
    """hybi-04 derives the client's masking key from Sec-WebSocket-Key and the server's
    Sec-WebSocket-Nonce: the handshake hands both to the frame decoder."""
    from analyzer.frames_hybi04 import connection_masking_key_04
    from analyzer.handshake import accept_key
    from tests.test_frames_hybi04 import TEXT04, clear_frame, hybi04_client_frame

    key, nonce = "dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEC=="
    conv = Conversation()
    conv.handshake()
    conv.send(0, f"GET /v4 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Origin: http://h\r\n"
                 f"Sec-WebSocket-Version: 4\r\n\r\n".encode())
    conv.send(1, f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept_key(key)}\r\nSec-WebSocket-Nonce: {nonce}\r\n\r\n".encode())
    conn_key = connection_masking_key_04(key, nonce)
    conv.send(0, hybi04_client_frame(conn_key, b"\x01\x02\x03\x04", TEXT04, b"from a 2011 browser"))
    conv.send(1, clear_frame(TEXT04, b"and back"))
    write_pcap(tmp_path / "hybi04.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "hybi04.pcap")
    assert (a.connections.iloc[0].version, a.connections.iloc[0].draft) == (4, "hybi-04")
    assert list(a.messages.preview) == ["from a 2011 browser", "and back"]
    assert a.problems.empty, a.problems


def test_a_flood_of_one_problem_is_listed_1000_times_then_summarised(tmp_path):
    from analyzer.tables import MAX_PROBLEMS_PER_KIND

    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    for _ in range(3):
        conv.send(0, frame(0x1, b"x") * 500)               # 1,500 unmasked client frames
    write_pcap(tmp_path / "flood.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "flood.pcap")
    rows = a.problems[a.problems.kind == "unmasked-client-frame"]
    assert len(a.frames) == 1500
    assert len(rows) == MAX_PROBLEMS_PER_KIND + 1
    assert rows.detail.iloc[-1].startswith("500 more unmasked-client-frame problems on this connection")


def test_payload_sampling_keeps_a_stable_fraction():
    full = analyzer.analyze("captures/demo.pcapng", payloads=True, jobs=1)
    sample = analyzer.analyze("captures/demo.pcapng", payloads=0.25, jobs=1)
    kept = sample.messages.payload.notna()
    assert 0.1 < kept.mean() < 0.4
    # the kept payloads are the real ones, and the same messages are kept on every run
    assert list(sample.messages.payload[kept]) == list(full.messages.payload[kept])
    again = analyzer.analyze("captures/demo.pcapng", payloads=0.25, jobs=1)
    assert list(again.messages.payload.notna()) == list(kept)


def test_several_captures_in_parallel_give_the_same_tables(monkeypatch, tmp_path):
    """Several captures (one split into shards too) share the processes: this one takes tasks
    itself while helper threads run worker subprocesses; the tables are those of one process."""
    import analyzer.api

    paths = ["captures/demo.pcapng", "captures/node_ws.pcap", "captures/incident.pcapng",
             "captures/ipv6.pcap"]
    one = analyzer.analyze(paths, jobs=1, payloads=True)
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 400_000)   # demo.pcapng (480 kB) is split
    seen = []
    original = analyzer.api._run_worker
    monkeypatch.setattr(analyzer.api, "_run_worker", lambda *a: seen.append(a) or original(*a))
    for jobs in (2, 3):
        seen.clear()
        many = analyzer.analyze(paths, jobs=jobs, payloads=True)
        assert seen, "no worker subprocess ran: nothing was compared"
        for name in ("connections", "frames", "messages", "problems"):
            pd.testing.assert_frame_equal(getattr(one, name), getattr(many, name), check_exact=True)
        assert [c.packets for c in one.captures] == [c.packets for c in many.captures]


def test_a_bad_capture_among_several_in_parallel_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    with pytest.raises(analyzer.CaptureError, match=r"notes\.txt"):
        analyzer.analyze(["captures/demo.pcapng", str(bad), "captures/node_ws.pcap"], jobs=2)


def test_rows_moved_into_columns_often_change_nothing(monkeypatch):
    """Collected rows are moved into column pieces every so many records (and read back from a
    worker's files): compacting after every 8 records gives the same tables as at the end only."""
    import analyzer.pipeline

    once = analyzer.analyze("captures/demo.pcapng", jobs=1, payloads=True)
    monkeypatch.setattr(analyzer.pipeline, "COMPACT_EVERY", 8)
    often = analyzer.analyze("captures/demo.pcapng", jobs=1, payloads=True)
    for name in ("connections", "frames", "messages", "problems"):
        pd.testing.assert_frame_equal(getattr(once, name), getattr(often, name), check_exact=True)


def test_worker_result_files_round_trip(tmp_path):
    """What a worker writes (a pickle plus raw columns) reads back to the same tables."""
    from analyzer.api import analyze_capture
    from analyzer.merge import tables_from_rows
    from analyzer.websocket import Options
    from analyzer.worker import load_result, save_result

    path = "captures/incident.pcapng"
    direct = tables_from_rows([analyze_capture(path, "incident.pcapng", Options(payloads=True))[0]])
    save_result(analyze_capture(path, "incident.pcapng", Options(payloads=True)), str(tmp_path / "r"))
    rows, info = load_result(str(tmp_path / "r"))
    assert info.packets > 0
    again = tables_from_rows([rows])
    for name in ("connections", "frames", "messages", "problems"):
        pd.testing.assert_frame_equal(direct[name], again[name], check_exact=True)


def _jobs_one_and_two(monkeypatch, path):
    import analyzer.api

    one = analyzer.analyze(path, jobs=1)
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    two = analyzer.analyze(path, jobs=2)
    for name in ("connections", "frames", "messages", "problems"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name), check_exact=True)
    return one


def test_idle_checks_see_every_process_s_time(monkeypatch, tmp_path):
    """A connection pauses 1 h 10 s (past the 1 h idle timeout, but the check made at another
    connection's packet 15 s before its deadline is not due again when it resumes). The process
    that owns it under jobs=2 never sees that other packet: its checks must still run at the same
    moments, or it would release the connection and cut it in two. (Found in review.)"""
    t0 = 1_700_000_000.0
    other = Conversation(client_port=50001, server_port=9000, t=t0)      # first SYN: process 0
    other.handshake()
    paused = Conversation(client_port=50002, server_port=9001, t=t0 + 0.5)
    paused.handshake()
    paused.send(0, upgrade_request())
    paused.send(1, upgrade_response())
    paused.send(1, frame(0x1, b"before the pause"))
    last = paused.t - paused.step
    other.t = last + 3595
    other.send(0, b"x")
    paused.t = last + 3610
    paused.send(1, frame(0x1, b"after the pause"))
    paused.fin(0)
    paused.fin(1)
    write_pcap(tmp_path / "idle.pcap", sorted(other.packets + paused.packets, key=lambda p: p[0]))
    one = _jobs_one_and_two(monkeypatch, tmp_path / "idle.pcap")
    assert list(one.messages.preview) == ["before the pause", "after the pause"]
    assert list(one.connections.tcp_end) == ["fin"]


def test_problems_without_a_frame_are_in_connection_order(monkeypatch, tmp_path):
    """Two connections end inside a frame (capture-ends-mid-frame has no frame_no): their rows
    come by connection, whichever process collected them. (Found in review.)"""
    a = Conversation(client_port=50001, server_port=9000, t=1.7e9)
    b = Conversation(client_port=50002, server_port=9001, t=1.7e9 + 0.01)
    for conv in (a, b):
        conv.handshake()
        conv.send(0, upgrade_request())
        conv.send(1, upgrade_response())
    b.send(1, frame(0x2, b"x" * 100)[:20])          # b ends mid-frame first
    a.t = 1.7e9 + 1
    a.send(1, frame(0x2, b"y" * 100)[:20])
    write_pcap(tmp_path / "cut.pcap", sorted(a.packets + b.packets, key=lambda p: p[0]))
    one = _jobs_one_and_two(monkeypatch, tmp_path / "cut.pcap")
    cut = one.problems[one.problems.kind == "capture-ends-mid-frame"]
    assert list(cut.conn_id) == [1, 2]


def test_workers_ignore_an_analyzer_module_in_the_working_directory(monkeypatch, tmp_path):
    """`python -m` would import ./analyzer.py before the package: workers run from the package's
    own directory, so a user's file of that name changes nothing. (Found in review.)"""
    import analyzer.api

    (tmp_path / "analyzer.py").write_text("raise SystemExit('the wrong analyzer')\n")
    capture = os.path.abspath("captures/demo.pcapng")
    one = analyzer.analyze(capture, jobs=1)
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    monkeypatch.chdir(tmp_path)
    two = analyzer.analyze(capture, jobs=2)
    pd.testing.assert_frame_equal(one.frames, two.frames, check_exact=True)
