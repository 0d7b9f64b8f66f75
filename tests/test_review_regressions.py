"""Findings of the review of the TLS and HTTP/2 layers, each a byte-built reproducer that failed
before its fix."""

from __future__ import annotations

import hpack
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from analyzer.h2 import PREFACE, H2Data, H2Session, H2StreamEnd
from analyzer.tls import KeyLog, TlsSession
from tests import tls_helpers as T

C, S = 0, 1


def _headers(stream_id: int, encoder: hpack.Encoder, headers: list[tuple[str, str]], *,
             end: bool = False) -> bytes:
    h = HeadersFrame(stream_id)
    h.data = encoder.encode(headers)
    h.flags.add("END_HEADERS")
    if end:
        h.flags.add("END_STREAM")
    return h.serialize()


def test_h2_data_frame_cut_by_a_reset_of_its_stream() -> None:
    """A client DATA(END_STREAM) frame begun, the server's RST_STREAM(NO_ERROR) after its complete
    answer (RFC 9113 §8.1), then the rest of the DATA: no KeyError, each direction ended once (the
    server's by its END_STREAM, the client's, still open, by the reset)."""
    enc_c, enc_s = hpack.Encoder(), hpack.Encoder()
    s = H2Session(C)
    out = s.feed(C, PREFACE + SettingsFrame(0).serialize(), 1, 0)
    settings = SettingsFrame(0)
    settings.settings = {8: 1}
    out += s.feed(S, settings.serialize(), 2, 0)
    connect = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/"),
               (":authority", "a")]
    out += s.feed(C, _headers(1, enc_c, connect), 3, 0)
    out += s.feed(S, _headers(1, enc_s, [(":status", "200")], end=True), 4, 0)
    d = DataFrame(1)
    d.data = b"\x81\x80" + b"\0" * 4 + b"x" * 10
    d.flags.add("END_STREAM")
    raw = d.serialize()
    out += s.feed(C, raw[:12], 5, 0)
    out += s.feed(S, RstStreamFrame(1).serialize(), 6, 0)
    out += s.feed(C, raw[12:], 7, 0)
    ends = [e for e in out if isinstance(e, H2StreamEnd)]
    assert [(e.direction, e.reset) for e in ends] == [(S, False), (C, True)]
    assert b"".join(bytes(e.data) for e in out if isinstance(e, H2Data)) == raw[9:12]


def test_tls13_plaintext_handshake_record_cannot_rotate_the_keys() -> None:
    """A forged plaintext KeyUpdate (or a fragment of one) after the keys changed is ignored with a
    problem; the server's later records still decrypt."""
    for forged in (T.record(22, T.key_update()), T.record(22, b"\x18\x00")):
        c = T.tls13()
        c.app(1, b"hello-1")
        c.plain(1, forged)
        c.app(1, b"hello-2")
        keys = KeyLog()
        keys.add_text(c.keylog)
        session = TlsSession(keys, C)
        out = []
        for i, (direction, data) in enumerate(c.flow):
            out += session.feed(direction, data, i, 0)
        plain = [item[1] for item in out if len(item) == 4]
        kinds = [str(item[1].kind) for item in out if len(item) == 2]
        assert plain == [b"hello-1", b"hello-2"] and kinds == ["tls-malformed"]


# --- the connection layer with HTTP/2 (conversations made by tests/test_h2_pipeline._Wire) --------

def _connection_rows(flow: list[tuple[int, bytes]]):
    from analyzer.connection import Connection
    from analyzer.events import StreamOpened
    from analyzer.tables import TableRows
    from analyzer.websocket import Options

    rows = TableRows()
    opened = StreamOpened(1, 1, 1_700_000_000_000_000_000, 4, b"\x0a\0\0\1", 50000, b"\x0a\0\0\2", 80, True)
    ids = iter(range(100, 10**7))
    c = Connection(opened, rows, Options(), "m", 1, new_id=lambda: next(ids))
    for i, (d, b) in enumerate(flow, 2):
        c.on_data(d, b, i, opened.ts_ns + i)
    return c, rows


MASK = b"\1\2\3\4"


def test_h2c_found_when_the_two_sides_first_bytes_interleave() -> None:
    """The server's SETTINGS in two segments with the client's first preface bytes between them."""
    from tests.pcapgen import frame
    from tests.test_h2_pipeline import _Wire
    w = _Wire()
    w.connect(1, "/ok")
    w.ws(0, 1, frame(1, b"hello", mask=MASK))
    (sd, settings), (cd, preface) = w.flow[0], w.flow[1]
    assert (sd, cd) == (1, 0)
    cut = [(1, settings[:9]), (0, preface[:10]), (1, settings[9:]), (0, preface[10:]), *w.flow[2:]]
    c, rows = _connection_rows(cut)
    c.close("closed", 99, 99)
    rows.done()
    assert c.h2 is not None and len(rows.connections) == 1 and len(rows.messages) == 1


def test_a_refused_later_stream_has_its_own_problem() -> None:
    from tests.test_h2_pipeline import _Wire
    w = _Wire()
    w.connect(1, "/ok")
    w.connect(3, "/refused", status=403)
    c, rows = _connection_rows(w.flow)
    c.close("closed", 99, 99)
    rows.done()
    refused = [r.conn_id for r in rows.connections if r.h2_stream_id == 3]
    assert [p.conn_id for p in rows.problems if p.kind == "h2-connect-refused"] == refused == [100]


def test_streams_that_ended_are_written_rather_than_held() -> None:
    """A long-lived HTTP/2 connection carrying streams one after another: what the connection holds
    stays bounded (the ended streams' rows are written), every stream still gets its row."""
    from tests.pcapgen import close_payload, frame
    from tests.test_h2_pipeline import _Wire
    w = _Wire()
    n = 300
    for k in range(n):
        sid = 1 + 2 * k
        w.connect(sid, "/x")
        w.ws(0, sid, frame(1, b"hi", mask=MASK))
        w.ws(0, sid, frame(8, close_payload(1000), mask=MASK), end=True)
        w.ws(1, sid, frame(8, close_payload(1000)), end=True)
    c, rows = _connection_rows(w.flow)
    assert c.h2_streams is not None and len(c.h2_streams.streams) <= c.h2_streams.MAX_FINISHED_HELD + 1
    c.close("closed", 10**6, 10**6)
    rows.done()
    assert len(rows.connections) == n and len({r.conn_id for r in rows.connections}) == n
    assert {r.close_status for r in rows.connections} == {"clean"} and len(rows.messages) == n


def test_tls_detection_keeps_each_sides_first_bytes_its_own() -> None:
    """The client's first byte could start a TLS record; the server speaks before more comes: the
    byte stays the client's, the server's bytes the server's."""
    from analyzer.connection import Connection
    seen: list[tuple[int, bytes]] = []
    original = Connection._bytes

    def spy(self, direction, data, record_no, ts_ns):
        seen.append((direction, bytes(data)))
        return original(self, direction, data, record_no, ts_ns)

    Connection._bytes = spy                                 # type: ignore[method-assign]
    try:
        _connection_rows([(0, b"\x17"), (1, b"HTTP/1.1 200 OK\r\n\r\n")])
    finally:
        Connection._bytes = original                        # type: ignore[method-assign]
    assert seen[0] == (0, b"\x17") and all(d == 0 for d, b in seen if b == b"\x17")
    assert all(d == 1 for d, b in seen if b.startswith(b"HTTP/"))


def test_an_announced_huge_header_frame_is_refused_at_its_header_not_buffered() -> None:
    """A HEADERS frame of 16 MiB announced (the server allows such frames) and never completed:
    the side is given up at the frame header (h2-malformed), nothing is held."""
    from analyzer.h2 import H2Problem
    s = H2Session(C)
    allow = SettingsFrame(0)
    allow.settings = {5: (1 << 24) - 1}
    s.feed(S, allow.serialize(), 1, 0)
    s.feed(C, PREFACE + SettingsFrame(0).serialize(), 2, 0)
    out = s.feed(C, ((1 << 24) - 1).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01", 3, 0)
    for i in range(8):
        out += s.feed(C, b"\0" * 65536, 4 + i, 0)
    assert [str(e.problem.kind) for e in out if isinstance(e, H2Problem)] == ["h2-malformed"]
    assert len(s._sides[C].buf) == 0
