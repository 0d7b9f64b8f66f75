"""The connection layer with its TLS and HTTP/2 stages, fed real conversations cut anywhere and
damaged anyhow (hypothesis): whatever the bytes, no exception of ours (the suite runs with
WS_ANALYZER_STRICT=1, so a bug raises here instead of becoming an internal-error row), what is
decoded is only what was sent, and undamaged bytes cut anywhere decode exactly as whole ones."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.connection import Connection, TlsKeys
from analyzer.events import StreamOpened
from analyzer.tables import TableRows
from analyzer.tls import KeyLog
from analyzer.websocket import Options
from tests import tls_helpers
from tests.pcapgen import close_payload, frame, upgrade_request, upgrade_response
from tests.test_h2_pipeline import _two_websockets

MASK = b"\x01\x02\x03\x04"
TEXTS = [f"message {i}".encode() for i in range(4)]


def _h2c_flow() -> list[tuple[int, bytes]]:
    return _two_websockets().flow


def _wss_flow() -> tuple[list[tuple[int, bytes]], str]:
    tls = tls_helpers.tls13()
    tls.app(0, upgrade_request())
    tls.app(1, upgrade_response())
    for text in TEXTS:
        tls.app(0, frame(1, text, mask=MASK))
        tls.app(1, frame(1, text.upper()))
    tls.app(0, frame(8, close_payload(1000), mask=MASK))
    tls.app(1, frame(8, close_payload(1000)))
    return tls.flow, tls.keylog


H2C = _h2c_flow()
WSS, WSS_KEYS = _wss_flow()


def _run(flow: list[tuple[int, bytes]], keylog: str = "", decode_as: bool = False) -> TableRows:
    rows = TableRows()
    keys = KeyLog()
    keys.add_text(keylog)
    opened = StreamOpened(1, 1, 1_700_000_000_000_000_000, 4, b"\x0a\0\0\1", 50000, b"\x0a\0\0\2", 443, True)
    ids = iter(range(100, 200))
    options = Options(ports=frozenset({443})) if decode_as else Options()
    c = Connection(opened, rows, options, "fuzz", 1, tls_keys=TlsKeys(keys), new_id=lambda: next(ids))
    for i, (direction, data) in enumerate(flow, start=2):
        c.on_data(direction, data, i, opened.ts_ns + i)
    c.close("closed", len(flow) + 2, opened.ts_ns + len(flow) + 2)
    rows.done()
    return rows


def _cut(flow: list[tuple[int, bytes]], cuts: list[int]) -> list[tuple[int, bytes]]:
    """Each direction's bytes re-cut at the given sizes (cycled), the directions' order kept."""
    out = []
    k = 0
    for direction, data in flow:
        i = 0
        while i < len(data):
            n = cuts[k % len(cuts)]
            k += 1
            out.append((direction, data[i:i + n]))
            i += n
    return out


def _previews(rows: TableRows) -> list[str]:
    m = rows.messages
    text, ends = bytes(m.preview_utf8), list(m.preview_ends)
    return [text[a:b].decode("utf-8", "replace") for a, b in itertools.pairwise(ends)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_cut_anywhere_h2c_and_wss_decode_as_whole(cuts: list[int]) -> None:
    for flow, keylog in ((H2C, ""), (WSS, WSS_KEYS)):
        whole, cut = _run(flow, keylog), _run(_cut(flow, cuts), keylog)
        assert len(cut.messages) == len(whole.messages) > 0
        assert _previews(cut) == _previews(whole)
        assert [r.conn_id for r in cut.connections] == [r.conn_id for r in whole.connections]
        assert len(cut.problems) == len(whole.problems) == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(["h2c", "wss"]), decode_as=st.booleans())
def test_damaged_conversations_never_raise(data: st.DataObject, which: str, decode_as: bool) -> None:
    """(decode_as: the server port is a --decode-as port, where TLS and HTTP/2 must still win)"""
    flow, keylog = (H2C, "") if which == "h2c" else (WSS, WSS_KEYS)
    flow = list(flow)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(flow) - 1))
        direction, chunk = flow[i]
        action = data.draw(st.sampled_from(["flip", "drop", "truncate", "insert", "swap"]))
        if action == "flip" and chunk:
            j = data.draw(st.integers(0, len(chunk) - 1))
            chunk = chunk[:j] + bytes([chunk[j] ^ data.draw(st.integers(1, 255))]) + chunk[j + 1:]
        elif action == "drop":
            flow.pop(i)
            continue
        elif action == "truncate":
            chunk = chunk[:data.draw(st.integers(0, len(chunk)))]
        elif action == "insert":
            chunk = chunk + data.draw(st.binary(max_size=64))
        else:
            direction = 1 - direction
        flow[i] = (direction, chunk)
    rows = _run(flow, keylog, decode_as)
    sent = {f"message {i}" for i in range(4)} | {f"MESSAGE {i}" for i in range(4)} | {
        f"{w} {i}" for w in ("chat", "CHAT", "feed") for i in range(3)}
    texts = _previews(rows)
    original = H2C if which == "h2c" else WSS
    if which == "wss" and flow[0] == original[0]:
        # the ClientHello intact, the connection is TLS: only authenticated bytes come out, so only
        # what was sent (first bytes damaged beyond recognition on a --decode-as port are frames)
        assert set(texts) <= sent, texts
    assert all(r.kind != "internal-error" for r in rows.problems)
