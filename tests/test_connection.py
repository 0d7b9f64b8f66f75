"""The connection layer (analyzer.connection): its state machine, the boundary where a bug of ours
becomes one internal-error row, the transform seam, and the columns of the layered design
(transport, h2_stream_id, tcp_id)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import analyzer
from analyzer import connection, messages, pipeline
from analyzer.connection import STRICT_ENV, Connection, Event, IllegalTransition, State
from analyzer.events import StreamOpened
from analyzer.tables import CONNECTION_ROW_COLUMNS, ConnectionRow, TableRows
from analyzer.websocket import Options
from tests.pcapgen import Conversation, close_payload, frame, upgrade_request, upgrade_response, write_pcap

MASK = b"\x11\x22\x33\x44"
CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def _conversation(client_port: int, text: bytes = b"hello") -> Conversation:
    conv = Conversation(client_port=client_port)
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(0, frame(1, text, mask=MASK))
    conv.send(1, frame(1, text.upper()))
    conv.send(0, frame(8, close_payload(1000), mask=MASK))
    conv.send(1, frame(8, close_payload(1000)))
    conv.fin(0)
    conv.fin(1)
    return conv


def _capture(tmp_path: Path, *ports: int, name: str = "three.pcap") -> Path:
    packets = []
    for i, port in enumerate(ports):
        conv = _conversation(port)
        packets += [(t + i * 10, pkt) for t, pkt in conv.packets]
    path = tmp_path / name
    write_pcap(path, packets)
    return path


def _opened(client_port: int = 50000) -> StreamOpened:
    return StreamOpened(1, 1, 1_700_000_000_000_000_000, 4, b"\x0a\0\0\1", client_port, b"\x0a\0\0\2",
                        9000, True)


# --- the state machine -------------------------------------------------------------------------

def test_every_state_has_its_transitions_and_only_the_table_moves_it() -> None:
    assert set(connection._TRANSITIONS) == set(State)
    c = Connection(_opened(), TableRows(), Options(), "x", 1)
    assert c.state is State.DETECTING
    with pytest.raises(IllegalTransition, match="http-after-frames in state detecting"):
        c._to(Event.HTTP_AFTER_FRAMES)
    c._to(Event.UPGRADED)
    assert c.state is State.WEBSOCKET
    with pytest.raises(IllegalTransition):
        c._to(Event.UPGRADED)                   # a second upgrade of one HTTP/1 connection


def test_a_connection_walks_detecting_websocket_with_real_bytes() -> None:
    rows = TableRows()
    c = Connection(_opened(), rows, Options(), "x", 1)
    c.on_data(0, upgrade_request(), 4, 4)
    assert c.state is State.DETECTING
    c.on_data(1, upgrade_response() + frame(1, b"hi"), 5, 5)
    assert c.state is State.WEBSOCKET
    c.on_data(0, frame(1, b"hello", mask=MASK), 6, 6)
    c.close("closed", 7, 7)
    assert len(rows.frames) == 2 and len(rows.messages) == 2
    (row,) = rows.connections
    assert (row.transport, row.h2_stream_id, row.frames_client, row.frames_server) == ("tcp", None, 1, 1)


def test_a_plain_http_connection_is_ignored_and_writes_no_row() -> None:
    rows = TableRows()
    c = Connection(_opened(), rows, Options(), "x", 1)
    c.on_data(0, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4, 4)
    c.on_data(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 5, 5)
    c.on_data(0, b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 6, 6)
    c.close("closed", 7, 7)
    assert c.state in (State.DETECTING, State.IGNORED)
    assert len(rows.connections) == 0 and list(rows.problems) == []


# --- internal errors ---------------------------------------------------------------------------

def _broken_feed(self, frame):   # stands in for MessageAssembler.feed
    raise ZeroDivisionError("a bug of ours")


def test_a_bug_inside_a_stage_is_one_internal_error_row_and_the_rest_is_analysed(tmp_path, monkeypatch):
    monkeypatch.delenv(STRICT_ENV)
    path = tmp_path / "bug.pcap"
    conv = _conversation(50001, b"\x00")
    # a fragmented message: the general path (the fast path writes whole one-frame messages)
    conv.send(0, frame(1, b"frag", fin=False, mask=MASK))
    write_pcap(path, conv.packets + [(t + 10, p) for t, p in _conversation(50002).packets])
    broken = {"port": None}
    original = messages.MessageAssembler.feed

    def feed(self, frame):
        if broken["port"] is None:
            broken["port"] = True
            raise ZeroDivisionError("a bug of ours")
        return original(self, frame)

    monkeypatch.setattr(messages.MessageAssembler, "feed", feed)
    a = analyzer.analyze(path, jobs=1)
    internal = a.problems[a.problems["kind"] == "internal-error"]
    assert len(internal) == 1
    detail = internal["detail"].iloc[0]
    assert detail.startswith("ZeroDivisionError at tests/test_connection.py:")
    assert "in feed: a bug of ours" in detail
    assert "not analysed further" in detail
    # never reported as bad input
    assert not set(a.problems["kind"]) & {"malformed-packet", "http-malformed"}
    # both connections are rows; the one with the bug stopped at it, the other is whole
    assert len(a.connections) == 2
    assert internal["conn_id"].iloc[0] == 1
    second = a.connections.iloc[1]
    assert (second.frames_client, second.messages_server, second.close_status) == (2, 1, "clean")


def test_in_strict_mode_the_bug_raises(tmp_path, monkeypatch):
    """The suite runs strict (conftest): a test that meets a bug fails with its traceback."""
    monkeypatch.setattr(messages.MessageAssembler, "feed", _broken_feed)
    rows = TableRows()
    c = Connection(_opened(), rows, Options(), "x", 1)
    c.on_data(0, upgrade_request(), 4, 4)
    c.on_data(1, upgrade_response(), 5, 5)
    with pytest.raises(ZeroDivisionError):
        c.on_data(0, frame(9, b"ping", mask=MASK), 6, 6)


def test_a_bug_before_the_connection_is_known_to_be_websocket_is_a_capture_level_row(monkeypatch):
    monkeypatch.delenv(STRICT_ENV)

    def broken(self, *args):
        raise KeyError("oops")

    monkeypatch.setattr(connection.HandshakeParser, "feed", broken)
    rows = TableRows(capture="x")
    c = Connection(_opened(50003), rows, Options(), "x", 7)
    c.on_data(0, b"GET / HTTP/1.1\r\n", 4, 4)
    c.on_data(0, b"Host: a\r\n\r\n", 5, 5)            # given up: not looked at
    c.close("closed", 6, 6)
    (row,) = rows.problems
    assert (row.kind, row.conn_id, row.frame_no) == ("internal-error", None, 4)
    assert "10.0.0.1:50003 → 10.0.0.2:9000" in row.detail and "KeyError" in row.detail
    assert c.state is State.GIVEN_UP and len(rows.connections) == 0


# --- the transform seam ------------------------------------------------------------------------

class _Xor:
    """A toy transform (each byte XOR 0x5A): stands for TLS, whose records become plaintext."""

    def __init__(self) -> None:
        self.fed = 0
        self.finished = False

    def feed(self, direction: int, data: bytes, record_no: int, ts_ns: int) -> list:
        self.fed += len(data)
        return [(direction, bytes(b ^ 0x5A for b in data), record_no, ts_ns)]

    def gap(self, direction: int, size: int, record_no: int, ts_ns: int) -> list:
        return []

    def finish(self, record_no: int, ts_ns: int) -> list:
        self.finished = True
        return []


def test_bytes_go_through_the_stack_of_transforms_before_the_handshake_and_frames() -> None:
    rows = TableRows()
    c = Connection(_opened(), rows, Options(), "x", 1)
    xor = _Xor()
    c.transforms.append(xor)
    wire = [(0, upgrade_request()), (1, upgrade_response()), (0, frame(1, b"secret", mask=MASK)),
            (1, frame(1, b"reply"))]
    for i, (direction, data) in enumerate(wire):
        c.on_data(direction, bytes(b ^ 0x5A for b in data), 10 + i, 10 + i)
    c.close("closed", 20, 20)
    assert xor.fed == sum(len(d) for _, d in wire) and xor.finished
    assert len(rows.messages) == 2
    assert bytes(rows.messages.preview_utf8) == b"secretreply"
    assert rows.connections[0].handshake_ok is True


# --- the columns of the layered design -----------------------------------------------------------

def test_connection_rows_name_exactly_the_schema_columns() -> None:
    from dataclasses import fields
    assert [f.name for f in fields(ConnectionRow)] == [c[0] for c in CONNECTION_ROW_COLUMNS]


@pytest.mark.parametrize("jobs", [1, 2])
def test_tcp_id_transport_and_h2_stream_id(tmp_path, jobs):
    a = analyzer.analyze(_capture(tmp_path, 50010, 50011, 50012), jobs=jobs)
    c = a.connections
    assert list(c.conn_id) == [1, 2, 3] and list(c.tcp_id) == [1, 2, 3]
    assert list(c.transport) == ["tcp"] * 3 and c.h2_stream_id.isna().all()
    assert str(c.transport.dtype) == "category" and str(c.h2_stream_id.dtype) == "Int64"


def test_tcp_id_is_unique_across_captures(tmp_path):
    first = _capture(tmp_path, 50020, 50021)
    second = _capture(tmp_path, 50030, name="b.pcap")
    a = analyzer.analyze([first, second, CAPTURES / "demo.pcapng"], jobs=1)
    c = a.connections
    assert c.tcp_id.is_unique and list(c.tcp_id) == list(range(1, len(c) + 1))
    assert list(c.tcp_id) == list(c.conn_id)


# --- the per-file unit ---------------------------------------------------------------------------

def test_the_per_file_unit_leaves_the_callers_gc_alone(tmp_path):
    """analyze_capture (what the process pool and a cluster call per file) neither turns the
    cyclic GC off for the caller's threads nor leaves it changed."""
    from analyzer import analyze_capture
    seen = []
    assert gc.isenabled()
    rows, info = analyze_capture(str(_capture(tmp_path, 50040, 50041)), "cap", Options(),
                                 progress=lambda done, size: seen.append(gc.isenabled()))
    assert gc.isenabled() and seen and all(seen)
    assert info.name == "cap" and {row.capture for row in rows.connections} == {"cap"}
    ids = [row.conn_id for row in rows.connections]
    assert sorted(ids) == sorted(set(ids))


def test_the_pipeline_makes_connections_through_one_class():
    assert pipeline.Connection is Connection


def test_connection_columns_read_back_what_was_appended_nulls_included() -> None:
    from analyzer.tables import ConnectionColumns
    rows = TableRows()
    c = Connection(_opened(), rows, Options(), "x", 1)
    c.on_data(0, upgrade_request(), 4, 4)
    c.close("end-of-capture", 0, 5)                 # a request without a response: many nulls
    (row,) = rows.connections
    assert (row.http_status, row.handshake_ok) == (None, False)
    assert (row.accept_valid, row.handshake_rtt) == (None, None)
    assert (row.close_code, row.request_ts, row.h2_stream_id, row.syn_seen) == (None, 4, None, True)
    columns = ConnectionColumns()
    columns.append(row)
    columns.append(row)
    assert columns[1] == row and columns[-1] == row and len(columns) == 2
    # a repeated string is one object for all its rows
    assert columns.columns["host"][0] is columns.columns["host"][1]
