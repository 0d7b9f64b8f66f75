"""Hostile captures of the session area (issue 13 items 10, 13, 19, 20), built by tests/hostile/session.py."""

from __future__ import annotations

import gc
import weakref

import pandas as pd
import pytest

import analyzer
from analyzer import connection, pipeline, websocket
from analyzer.websocket import Options
from tests.hostile import session as shapes


@pytest.fixture
def gc_off():
    """The cyclic GC off, as a worker process runs: only reference counting frees anything."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --- item 10: closed sessions are freed by reference counting -----------------------------------

def test_closed_sessions_are_freed_without_the_cyclic_gc(tmp_path, monkeypatch, gc_off):
    """Every Connection the pipeline closes is gone as soon as it is closed, with the cyclic GC off
    (worker processes turn it off for the whole capture): no reference cycle keeps a closed
    connection - its WebSocket, decoders, assemblers and fast paths - alive until the end of the
    capture."""
    path = shapes.short_connections(tmp_path, 1.0)
    alive_at_close: list[int] = []
    refs: list[weakref.ref] = []

    class Watched(connection.Connection):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            refs.append(weakref.ref(self))

        def close(self, *args, **kwargs) -> None:
            super().close(*args, **kwargs)
            # the sessions closed before this one must be gone already (this one is still
            # referenced by the pipeline's local variable)
            alive_at_close.append(sum(r() is not None for r in refs[:-1]))

    monkeypatch.setattr(pipeline, "Connection", Watched)
    rows = pipeline.analyze_file(path, Options())
    assert not gc.isenabled()
    assert len(refs) == shapes.SHORT_CONNECTIONS
    assert len(rows.connections) == shapes.SHORT_CONNECTIONS
    # the fast path wrote the messages (else the test would not exercise it)
    assert all((row.frames_client, row.frames_server, row.messages_client, row.messages_server)
               == (2, 2, 1, 1) for row in rows.connections)
    assert len(rows.frames) == 4 * shapes.SHORT_CONNECTIONS
    assert max(alive_at_close) == 0
    assert sum(r() is not None for r in refs) == 0
    assert gc.collect() == 0    # and nothing else of theirs waits for the cyclic GC either


@pytest.mark.parametrize("second", [None, b"GET / HTTP/1.1\r\n\r\n", b"\x81\x02hi"])
def test_a_decode_as_session_without_handshake_is_freed_too(gc_off, second):
    """ports= mode with no handshake (the other side's first bytes are looked at by a stand-in
    for its lane, which refers to the session weakly): freed at close all the same."""
    from analyzer.events import StreamOpened
    from analyzer.tables import TableRows

    opened = StreamOpened(1, 1, 0, 4, b"\x0a\0\0\1", 50000, b"\x0a\0\0\2", 9000, False)
    s = connection.Connection(opened, TableRows(), Options(ports=frozenset({9000})), "x", 1)
    s.on_data(0, b"\x81\x85abcd" + bytes(b ^ k for b, k in zip(b"hello", b"abcd" * 2)), 1, 1)
    if second is not None:
        s.on_data(1, second, 2, 2)
    s.close("closed", 3, 3)
    ref = weakref.ref(s)
    del s
    assert ref() is None


@pytest.mark.parametrize("fast_lane", [True, False])
def test_connection_counts_with_and_without_the_lane(tmp_path, monkeypatch, fast_lane):
    """The fast path's one-frame messages still count in frames_*/messages_* of the connection."""
    monkeypatch.setattr(websocket, "WHOLE_MESSAGES", fast_lane)
    a = analyzer.analyze(shapes.short_connections(tmp_path, 0.05), jobs=1)
    conns = a.connections
    assert len(conns) == 10
    assert list(conns.frames_client) == [2] * 10 and list(conns.frames_server) == [2] * 10
    assert list(conns.messages_client) == [1] * 10 and list(conns.messages_server) == [1] * 10
    assert (conns.close_status == "clean").all()


# --- item 13: HTTP on a decode-as port is HTTP, not frames --------------------------------------

def _cells(a: analyzer.Analysis) -> str:
    """Every cell of every table, as text."""
    return "\n".join(getattr(a, t).astype(str).to_csv() for t in ("connections", "frames", "messages",
                                                                 "problems"))


@pytest.mark.parametrize("segment", [None, 1, 7])
def test_http_on_a_decode_as_port_is_not_decoded_as_frames(tmp_path, segment):
    """A GET without Upgrade and a 302 with Set-Cookie on the port given with ports=: with the TCP
    handshake, mid-stream starting with the response, mid-stream starting with the request, and
    mid-stream inside a response body (frames begin on the server side, then the client's first
    bytes are a request line); whole or cut into tiny segments. No frames, no messages, the first
    three are no connection, the last one says it turned out to be HTTP; the cookie in no table."""
    path = shapes.http_on_decode_as_port(tmp_path, 1.0, segment)
    a = analyzer.analyze(path, ports=[shapes.DECODE_AS_PORT], jobs=1)
    assert a.frames.empty and a.messages.empty
    assert list(a.connections.client_port) == [40999]
    c = a.connections.iloc[0]
    assert (c.frames_client, c.frames_server, c.bytes_client) == (0, 0, 0)
    http = a.problems[a.problems.kind == "http-on-decode-as-port"]
    assert list(http.sender.astype(str)) == ["client"]
    assert "found=a request line (GET" in http.detail.iloc[0]
    assert shapes.COOKIE_VALUE not in _cells(a)
    assert "session=" not in _cells(a)
    # without ports= it is plain HTTP too (the control: no tables at all)
    b = analyzer.analyze(path, jobs=1)
    assert b.frames.empty and b.connections.empty


def test_http_on_a_decode_as_port_in_the_cli_outputs(tmp_path, capsys):
    """frames, the CSV and the Parquet export of the same capture never show the cookie."""
    from analyzer import cli

    path = shapes.http_on_decode_as_port(tmp_path, 1.0)
    port = str(shapes.DECODE_AS_PORT)
    cli.main(["frames", str(path), "--port", port, "--no-progress"])
    for fmt in ("csv", "parquet"):
        cli.main(["export", str(path), "--port", port, "--format", fmt, "-o", str(tmp_path / fmt),
                  "--no-progress"])
    printed = capsys.readouterr()
    assert shapes.COOKIE_VALUE not in printed.out + printed.err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".csv", ".parquet")]
    assert written
    for p in written:
        assert shapes.COOKIE_VALUE.encode() not in p.read_bytes(), p


def _mid_stream(tmp_path, first: bytes, then: list[tuple[int, bytes]]):
    from tests.pcapgen import Conversation, write_pcap

    conv = Conversation(server_port=shapes.DECODE_AS_PORT)
    conv.send(1, first)
    for direction, data in then:
        conv.send(direction, data)
    path = tmp_path / "mid.pcap"
    write_pcap(path, conv.packets)
    return path


def test_frames_on_a_decode_as_port_are_still_decoded(tmp_path):
    """The other side of the rule: non-HTTP bytes on the port are frames, also when the first
    bytes look like the start of a request line (a deflate first fragment "A " of 32 bytes) and
    are replayed once the parser finds they are not HTTP."""
    from tests.pcapgen import frame

    text = frame(1, b"hello")
    a = analyzer.analyze(_mid_stream(tmp_path, text, [(0, frame(1, b"hi", mask=shapes.MASK))]),
                         ports=[shapes.DECODE_AS_PORT], jobs=1)
    assert list(a.frames.payload_len) == [5, 2]
    # 0x41 0x20: text, RSV1, not final, 32 bytes - "A " as a method and a space
    fragment = bytes([0x41, 32]) + bytes(range(100, 132))
    b = analyzer.analyze(_mid_stream(tmp_path, fragment, [(1, frame(0, b"end"))]),
                         ports=[shapes.DECODE_AS_PORT], jobs=1)
    assert list(b.frames.opcode) == [1, 0]
    assert list(b.frames.payload_len) == [32, 3]
    assert list(b.messages.frames) == [2]


@pytest.mark.parametrize("segment", [None, 1])
def test_the_second_side_of_a_decode_as_connection_is_frames_unless_it_starts_http(tmp_path, segment):
    """Frames began on one side; the other side's first bytes are looked at once they can tell:
    frames that start like a method token ("A " + 30 bytes: a deflate first fragment), or a
    capture that ends while they could still be a request line, are decoded all the same, byte
    for byte as without the look."""
    from tests.pcapgen import Conversation, frame, write_pcap

    conv = Conversation(server_port=shapes.DECODE_AS_PORT)
    conv.send(0, frame(1, b"client first", mask=shapes.MASK))
    fragment = bytes([0x41, 30]) + b"ab HTTP/1.1 no line end here.."
    for data in (fragment, frame(0, b"end")):
        for i in range(0, len(data), segment or len(data)):
            conv.send(1, data[i:i + (segment or len(data))])
    path = tmp_path / "second.pcap"
    write_pcap(path, conv.packets)
    a = analyzer.analyze(path, ports=[shapes.DECODE_AS_PORT], jobs=1)
    assert list(a.frames.sender.astype(str)) == ["client", "server", "server"]
    assert list(a.frames.payload_len) == [12, 30, 3]
    assert list(a.messages.preview) == ["client first", "ab HTTP/1.1 no line end here..end"]
    c = a.connections.iloc[0]
    assert (c.bytes_client, c.bytes_server) == (len(frame(1, b"client first", mask=shapes.MASK)),
                                                len(fragment) + len(frame(0, b"end")))
    assert "http-on-decode-as-port" not in set(a.problems.kind.astype(str))
    # the capture ends while the server's bytes could still begin a request line
    conv = Conversation(server_port=shapes.DECODE_AS_PORT)
    conv.send(0, frame(1, b"client first", mask=shapes.MASK))
    conv.send(1, b"GE")
    write_pcap(path, conv.packets)
    b = analyzer.analyze(path, ports=[shapes.DECODE_AS_PORT], jobs=1)
    assert list(b.frames.payload_len) == [12, 69]
    assert list(b.frames.complete) == [True, False]
    assert b.connections.bytes_server.iloc[0] == 2


# --- item 20: frames after an upgrade whose verdict failed ---------------------------------------

def test_frames_after_a_failed_verdict_are_decoded_and_the_connection_failed(tmp_path):
    """A 101 with its upgrade headers but a wrong Sec-WebSocket-Accept (and a hixie-76 101 with a
    wrong answer): handshake_ok False, close_status "handshake-failed", its frames decoded and
    listed; the summary's failed-handshake count and close status agree with the table."""
    a = analyzer.analyze(shapes.wrong_accept(tmp_path, 1.0), jobs=1)
    c = a.connections
    assert list(c.draft.astype(str)) == ["rfc6455", "hixie-76"]
    assert list(c.handshake_ok) == [False, False]
    assert list(c.accept_valid) == [False, False]
    assert list(c.close_status.astype(str)) == ["handshake-failed", "handshake-failed"]
    assert list(c.frames_client) == [2, 2] and list(c.frames_server) == [2, 2]
    assert list(c.close_code_client) == [1000, 1005] and list(c.close_code_server) == [1000, 1005]
    assert list(a.messages.preview) == ["client after a wrong accept", "server after a wrong accept",
                                        "client after a wrong answer", "server after a wrong answer"]
    assert list(a.frames.opcode) == [1, 1, 8, 8, 1, 1, 8, 8]
    kinds = set(a.problems.kind.astype(str))
    assert "accept-key-mismatch" in kinds
    d = a.summary().to_dict()
    assert d["failed_handshakes"] == 2
    assert d["close_status"]["handshake-failed"] == 2


# --- item 19: a frame cut by the end of the capture is a row -------------------------------------

def _cut_rows(a: analyzer.Analysis):
    return a.frames[~a.frames.complete]


def test_a_frame_cut_by_the_end_of_the_capture_is_listed(tmp_path):
    """RFC 6455: the last frame of each side has its header but not its payload when the capture
    ends: a frames row each (declared payload_len, complete False, the record of the packet that
    carried its bytes), a capture-ends-mid-frame problem each, and their messages incomplete."""
    a = analyzer.analyze(shapes.cut_mid_frame(tmp_path, 1.0), jobs=1)
    f = a.frames
    assert list(f.complete) == [True, True, False, False]
    cut = _cut_rows(a)
    assert list(cut.frame_no) == [8, 9]
    assert list(cut.sender.astype(str)) == ["client", "server"]
    assert list(cut.opcode) == [2, 1] and list(cut.masked) == [True, False] and cut.fin.all()
    assert list(cut.payload_len) == [shapes.CUT_DECLARED] * 2
    assert list(cut.header_len) == [8, 4]
    assert cut.close_code.isna().all() and cut.close_reason.isna().all()
    m = a.messages.set_index("message_id")
    assert list(m.loc[list(cut.message_id), "complete"]) == [False, False]
    assert list(m.loc[list(cut.message_id), "wire_bytes"]) == [shapes.CUT_DECLARED] * 2
    assert m.complete.sum() == 2
    p = a.problems[a.problems.kind == "capture-ends-mid-frame"]
    assert list(p.sender.astype(str)) == ["client", "server"]
    assert all(f"found={shapes.CUT_CAPTURED}" in d for d in p.detail)
    c = a.connections.iloc[0]
    assert (c.frames_client, c.frames_server, c.messages_client, c.messages_server) == (2, 2, 2, 2)


def test_a_hixie_frame_cut_by_the_end_of_the_capture_is_listed(tmp_path):
    """hixie-76: a text frame without its 0xFF (payload_len: the bytes captured) and a
    length-prefixed frame cut short (payload_len: as declared)."""
    a = analyzer.analyze(shapes.cut_mid_frame_hixie(tmp_path, 1.0), jobs=1)
    assert list(a.connections.draft.astype(str)) == ["hixie-76"]
    assert list(a.frames.complete) == [True, True, False, False]
    cut = _cut_rows(a)
    assert list(cut.frame_no) == [8, 9]
    assert list(cut.opcode) == [1, 2]
    assert list(cut.payload_len) == [shapes.CUT_CAPTURED, shapes.CUT_DECLARED]
    assert list(cut.header_len) == [1, 3]
    m = a.messages.set_index("message_id")
    assert list(m.loc[list(cut.message_id), "complete"]) == [False, False]
    assert (a.problems.kind == "capture-ends-mid-frame").sum() == 2


@pytest.mark.parametrize("fast_lane", [True, False])
def test_cut_frames_inside_fragmented_and_control_frames(tmp_path, monkeypatch, fast_lane):
    """A cut continuation joins its open message (incomplete, one more frame); a cut close frame
    is listed but closes nothing (its code is unknown)."""
    from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

    monkeypatch.setattr(websocket, "WHOLE_MESSAGES", fast_lane)
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(1, frame(1, b"first ", fin=False))
    conv.send(1, frame(0, b"x" * 200)[:50])
    conv.send(0, frame(8, b"\x03\xe8" + b"r" * 100, mask=shapes.MASK)[:20])
    write_pcap(tmp_path / "cut.pcap", conv.packets)
    a = analyzer.analyze(tmp_path / "cut.pcap", jobs=1)
    f = a.frames
    assert list(f.opcode) == [1, 0, 8]
    assert list(f.complete) == [True, False, False]
    assert list(f.payload_len) == [6, 200, 102]
    assert f.message_id.iloc[0] == f.message_id.iloc[1] and pd.isna(f.message_id.iloc[2])
    assert f.close_code.isna().all()
    (m,) = a.messages.itertuples()
    assert (m.frames, m.wire_bytes, m.complete) == (2, 206, False)
    c = a.connections.iloc[0]
    assert pd.isna(c.close_code_client) and pd.isna(c.close_initiator)
    assert c.close_status == "open-at-end"


@pytest.mark.tshark
def test_tshark_lists_the_cut_frames_as_we_do(tmp_path, monkeypatch):
    """tshark without TCP desegmentation dissects the header of the frame the capture cut (with
    "Unreassembled fragment"): the same frame numbers, opcodes, mask bits and declared lengths."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "capture_tshark_frames", Path(__file__).resolve().parent.parent / "captures" / "tshark_frames.py")
    assert spec is not None and spec.loader is not None
    tshark_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tshark_mod)
    if not tshark_mod.tshark_available():
        pytest.skip("tshark is not installed")
    command = tshark_mod.tshark_command
    monkeypatch.setattr(tshark_mod, "tshark_command", lambda path, ports, **kw: [
        "tcp.desegment_tcp_streams:FALSE" if arg == "tcp.desegment_tcp_streams:TRUE" else arg
        for arg in command(path, ports, **kw)])
    path = shapes.cut_mid_frame(tmp_path, 1.0)
    theirs = [(t["frame_no"], t["opcode"], t["fin"], t["masked"], t["payload_len"])
              for t in tshark_mod.tshark_frames(path, {9000})]
    a = analyzer.analyze(path, jobs=1)
    ours = [(int(r.frame_no), int(r.opcode), bool(r.fin), bool(r.masked), int(r.payload_len))
            for r in a.frames.itertuples()]
    assert ours == theirs
    assert len(theirs) == 4
