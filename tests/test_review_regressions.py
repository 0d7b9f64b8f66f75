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
    answer (RFC 9113 §8.1), then the rest of the DATA: no KeyError, no second end of the stream."""
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
    assert [(e.direction, e.reset) for e in ends] == [(S, False), (S, True)]
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
