"""analyzer.h2 (issue 20, RFC 8441): HTTP/2 conversations made by the python-hyper `h2` library's
client and server (tests/h2_helpers.py), frames built with hyperframe and hpack where `h2` will not
send them, and a real hypercorn server; fed into H2Session whole, byte by byte and cut at random."""

from __future__ import annotations

import hashlib
import os

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    SettingsFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.h2 import (
    PREFACE,
    H2Data,
    H2Problem,
    H2Session,
    H2StreamEnd,
    H2WebSocket,
    error_name,
    looks_like_h2,
)
from analyzer.h2.session import MAX_HEADER_BLOCK, MAX_HELD
from analyzer.protocol import ProblemKind
from tests.h2_helpers import (
    CLIENT,
    GET_HEADERS,
    SERVER,
    Wire,
    connect_headers,
    data_of,
    feed_all,
    normalized,
    random_pieces,
)
from tests.pcapgen import close_payload, frame

MASK = b"\x11\x22\x33\x44"


def kinds(events: list[object]) -> list[tuple[int | None, str]]:
    return [(ev.stream_id, ev.problem.kind.value) for ev in events if isinstance(ev, H2Problem)]


def websockets(events: list[object]) -> dict[int, H2WebSocket]:
    return {ev.stream_id: ev for ev in events if isinstance(ev, H2WebSocket)}


def ends(events: list[object]) -> list[tuple[int, int, bool]]:
    return [(ev.stream_id, ev.direction, ev.reset) for ev in events if isinstance(ev, H2StreamEnd)]


def open_ws(wire: Wire, stream_id: int, *, status: str = "200", answer: list[tuple[str, str]] | None = None,
            **extra: str) -> None:
    wire.client.send_headers(stream_id, connect_headers(f"/chat/{stream_id}?token=t{stream_id}", **extra))
    wire.pump()
    if answer is None:
        answer = [("sec-websocket-protocol", "chat")]
    wire.server.send_headers(stream_id, [(":status", status), *answer])
    wire.pump()


def multiplexed() -> tuple[Wire, dict[tuple[int, int], bytes]]:
    """Three WebSockets and two GETs on one connection, their DATA interleaved; what each
    WebSocket stream carried per direction (RFC 6455 frames, masked from the client)."""
    wire = Wire()
    sent: dict[tuple[int, int], bytes] = {}
    for sid in (1, 3, 5, 7, 9):         # HPACK: the same fields again and again
        if sid in (3, 7):
            wire.client.send_headers(sid, GET_HEADERS, end_stream=True)
            wire.pump()
        else:
            open_ws(wire, sid, answer=[("sec-websocket-protocol", "chat"), ("server", "test/1")])
    for sid in (3, 7):
        wire.server.send_headers(sid, [(":status", "200"), ("content-type", "text/html")])
        wire.server.send_data(sid, b"<html>not a websocket</html>" * 20, end_stream=True)
    wire.pump()
    for i in range(6):
        for sid in (1, 5, 9):
            c = frame(0x1, f"hello {i} on {sid}".encode(), mask=MASK)
            s = frame(0x2, os.urandom(20 + 300 * i))
            wire.client.send_data(sid, c, pad_length=(i * 7) if i % 2 else None)
            wire.server.send_data(sid, s)
            sent[(sid, CLIENT)] = sent.get((sid, CLIENT), b"") + c
            sent[(sid, SERVER)] = sent.get((sid, SERVER), b"") + s
        wire.pump()
    for sid in (1, 5, 9):
        c = frame(0x8, close_payload(1000, "bye"), mask=MASK)
        s = frame(0x8, close_payload(1000))
        wire.client.send_data(sid, c, end_stream=True)
        wire.server.send_data(sid, s, end_stream=True)
        sent[(sid, CLIENT)] += c
        sent[(sid, SERVER)] += s
        wire.pump()
    return wire, sent


# --- preface --------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    (PREFACE, True), (PREFACE + b"\x00\x00\x00\x04", True), (b"", None), (b"PRI * HTTP/2", None),
    (PREFACE[:-1], None), (b"GET / HTTP/1.1\r\n", False), (b"PRI * HTTP/1.1\r\n", False),
    (b"\x16\x03\x01", False)])
def test_looks_like_h2(data: bytes, expected: bool | None) -> None:
    assert looks_like_h2(data) is expected


def test_error_names() -> None:
    assert error_name(8) == "CANCEL (0x8)"
    assert error_name(0) == "NO_ERROR (0x0)"
    assert error_name(0x99) == "unknown error (0x99)"


# --- several WebSockets on one connection ----------------------------------------------------

def test_multiplexed_websockets_and_gets() -> None:
    wire, sent = multiplexed()
    events = feed_all(wire.chunks)
    check_contract(events)
    assert kinds(events) == []
    ws = websockets(events)
    assert sorted(ws) == [1, 5, 9]
    for sid, ev in ws.items():
        hs = ev.handshake
        assert (hs.version, hs.draft, hs.http_status, hs.ok, hs.upgraded, hs.accept_valid) == (
            13, "rfc6455", 200, True, True, None)
        assert hs.host == "example.com"
        assert hs.path == f"/chat/{sid}?token=<redacted>"
        assert hs.subprotocols_offered == ("chat", "superchat")
        assert hs.subprotocol == "chat"
        assert (hs.origin, hs.user_agent, hs.server) == ("https://example.com", "h2-test/1", "test/1")
        assert hs.cookies_present
        assert hs.failure_reason is None
        assert hs.request_record_no is not None and hs.response_record_no == ev.record_no
        assert hs.request_record_no < hs.response_record_no
        for direction in (CLIENT, SERVER):
            assert data_of(events, sid, direction) == sent[(sid, direction)]
    assert sorted(ends(events)) == [(s, d, False) for s in (1, 5, 9) for d in (0, 1)]
    # the H2WebSocket of a stream comes before its data and its end
    first = {}
    for i, ev in enumerate(events):
        if isinstance(ev, H2Data | H2StreamEnd | H2WebSocket):
            first.setdefault(ev.stream_id, (i, type(ev)))
    assert all(t is H2WebSocket for _, t in first.values())
    assert not any(isinstance(ev, H2Data) and ev.stream_id in (3, 7) for ev in events)
    # no cookie value anywhere in what comes out
    assert "s3cret" not in repr(events)


def test_session_counters() -> None:
    wire, _ = multiplexed()
    session = H2Session(CLIENT)
    for i, (direction, data) in enumerate(wire.chunks):
        session.feed(direction, data, i + 1, i)
    assert session.settings_connect_protocol
    assert session.streams == 3
    assert session.other_data == 2 * 20 * len(b"<html>not a websocket</html>")
    assert session.frames > 40


def test_client_is_direction_one() -> None:
    wire, sent = multiplexed()
    events = feed_all(wire.chunks, client_dir=1)
    assert sorted(websockets(events)) == [1, 5, 9]
    assert data_of(events, 5, 1) == sent[(5, CLIENT)]
    assert data_of(events, 5, 0) == sent[(5, SERVER)]


def test_byte_by_byte_equals_whole() -> None:
    wire, _ = multiplexed()
    assert normalized(feed_all(wire.chunks, pieces=[1])) == normalized(feed_all(wire.chunks))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32))
def test_random_splits_equal_whole(seed: int) -> None:
    wire, _ = multiplexed()
    whole = normalized(feed_all(wire.chunks))
    total = sum(len(d) for _, d in wire.chunks)
    assert normalized(feed_all(wire.chunks, pieces=random_pieces(seed, total))) == whole


# --- answers other than 2xx, the setting, resets ---------------------------------------------

def test_refused_connect_403() -> None:
    wire = Wire()
    open_ws(wire, 1, status="403", answer=[("server", "test/1")])
    wire.server.send_data(1, b"forbidden", end_stream=True)
    wire.pump()
    events = feed_all(wire.chunks)
    hs = websockets(events)[1].handshake
    assert (hs.http_status, hs.ok, hs.upgraded, hs.deflate) == (403, False, False, None)
    assert hs.failure_reason == "HTTP/2 :status 403"
    assert kinds(events) == [(1, "h2-connect-refused")]
    assert not any(isinstance(ev, H2Data | H2StreamEnd) for ev in events)


def test_connect_without_the_setting() -> None:
    wire = Wire(enable_connect=False, validate=False)
    open_ws(wire, 1)
    wire.client.send_data(1, frame(0x1, b"hi", mask=MASK))
    wire.pump()
    events = feed_all(wire.chunks)
    hs = websockets(events)[1].handshake
    assert (hs.http_status, hs.upgraded, hs.ok) == (200, True, False)
    assert "did not enable extended CONNECT" in (hs.failure_reason or "")
    assert kinds(events) == [(1, "h2-connect-not-enabled")]
    assert data_of(events, 1, CLIENT) == frame(0x1, b"hi", mask=MASK)


def test_unanswered_connect_at_finish() -> None:
    wire = Wire()
    wire.client.send_headers(1, connect_headers())
    wire.pump()
    events = feed_all(wire.chunks)
    ev = websockets(events)[1]
    assert ev.handshake.http_status is None and not ev.handshake.ok and not ev.handshake.upgraded
    assert ev.handshake.failure_reason == "no answer to the extended CONNECT before the end"
    assert ev.record_no == len(wire.chunks) + 1


def test_informational_answer_then_200() -> None:
    wire = Wire()
    wire.client.send_headers(1, connect_headers())
    wire.pump()
    wire.raw(SERVER, HeadersFrame(1, data=hpack.Encoder().encode([(":status", "100")]),
                                  flags=["END_HEADERS"]).serialize())
    # the server's encoder state stays right: the 100 used a separate encoder with no indexing
    wire.server.send_headers(1, [(":status", "200")])
    wire.pump()
    events = feed_all(wire.chunks)
    assert websockets(events)[1].handshake.http_status == 200


def test_101_is_a_refusal_on_http2() -> None:
    wire = Wire(validate=False)
    open_ws(wire, 1, status="101")
    events = feed_all(wire.chunks)
    hs = websockets(events)[1].handshake
    assert (hs.http_status, hs.upgraded, hs.failure_reason) == (101, False, "HTTP/2 :status 101")
    assert kinds(events) == [(1, "h2-connect-refused")]


def test_rst_stream_of_a_websocket() -> None:
    wire = Wire()
    open_ws(wire, 1)
    open_ws(wire, 3)
    wire.client.send_data(1, frame(0x1, b"x", mask=MASK))
    wire.client.reset_stream(1, error_code=8)
    wire.client.send_data(3, frame(0x1, b"still here", mask=MASK))
    wire.pump()
    events = feed_all(wire.chunks)
    assert [(ev.stream_id, ev.problem.detail) for ev in events if isinstance(ev, H2Problem)] == [
        (1, "stream 1 reset by the client: CANCEL (0x8)")]
    assert ends(events) == [(1, CLIENT, True)]
    assert data_of(events, 3, CLIENT) == frame(0x1, b"still here", mask=MASK)


def test_rst_stream_before_the_answer() -> None:
    wire = Wire()
    wire.client.send_headers(1, connect_headers())
    wire.pump()
    wire.server.reset_stream(1, error_code=7)
    wire.pump()
    events = feed_all(wire.chunks)
    hs = websockets(events)[1].handshake
    assert hs.http_status is None
    assert hs.failure_reason == "stream reset by the server (REFUSED_STREAM (0x7)) before an answer"
    assert ends(events) == []


def test_data_before_the_answer_is_held_then_given() -> None:
    wire = Wire()
    wire.client.send_headers(1, connect_headers())
    early = frame(0x1, b"early bird", mask=MASK)
    wire.client.send_data(1, early)
    wire.pump()
    wire.server.send_headers(1, [(":status", "200"), ("sec-websocket-protocol", "chat")])
    wire.pump()
    events = feed_all(wire.chunks)
    order = [type(ev).__name__ for ev in events]
    assert order == ["H2WebSocket", "H2Data"]
    assert data_of(events, 1, CLIENT) == early
    assert events[1].record_no < events[0].record_no      # the data keeps its own packet


def test_data_before_the_answer_over_the_bound() -> None:
    wire = Wire()
    wire.client.send_headers(1, connect_headers())
    wire.pump()
    wire.client.increment_flow_control_window(1 << 20)
    wire.pump()
    wire.server.increment_flow_control_window(1 << 20)      # let the client send more than 64 KiB
    wire.server.update_settings({4: 1 << 20})
    wire.pump()
    wire.client.send_data(1, b"a" * 16000)
    wire.pump()
    for _ in range(5):
        wire.client.send_data(1, b"b" * 16000)
        wire.pump()
    wire.server.send_headers(1, [(":status", "200"), ("sec-websocket-protocol", "chat")])
    wire.pump()
    events = feed_all(wire.chunks)
    held = data_of(events, 1, CLIENT)
    assert len(held) <= MAX_HELD and held.startswith(b"a" * 16000)
    assert kinds(events) == [(1, "h2-malformed")]


def test_subprotocol_not_offered_and_deflate() -> None:
    wire = Wire()
    open_ws(wire, 1, answer=[("sec-websocket-protocol", "mqtt"),
                             ("sec-websocket-extensions", "permessage-deflate; server_no_context_takeover")],
            sec_websocket_extensions="permessage-deflate; client_max_window_bits")
    events = feed_all(wire.chunks)
    hs = websockets(events)[1].handshake
    assert hs.upgraded and not hs.ok
    assert hs.subprotocol == "mqtt"
    assert hs.failure_reason == "subprotocol 'mqtt' was not offered"
    assert hs.deflate is not None and hs.deflate.server_no_context_takeover
    assert hs.extensions_offered == "permessage-deflate; client_max_window_bits"
    assert kinds(events) == [(1, "subprotocol-not-offered")]


def test_other_connect_protocols_are_not_websockets() -> None:
    wire = Wire()
    headers = [(k, "webtransport" if k == ":protocol" else v) for k, v in connect_headers()]
    wire.client.send_headers(1, headers)
    wire.pump()
    wire.server.send_headers(1, [(":status", "200")])
    wire.pump()
    assert feed_all(wire.chunks) == []


# --- framing details: padding, CONTINUATION, big blocks, settings ------------------------------

def test_padded_and_continuation_headers() -> None:
    wire = Wire()
    wire.pump()
    # a block from a fresh encoder: the Wire's client has sent no header block yet, so the
    # session's decoder for the client has an empty dynamic table too
    block = hpack.Encoder().encode(connect_headers(x_filler="f" * 30000), huffman=False)
    first, rest = block[:5000], block[5000:]
    frames = HeadersFrame(1, data=first, pad_length=17, flags=["PADDED", "PRIORITY"]).serialize()
    frames += ContinuationFrame(1, data=rest[:9000]).serialize()
    frames += ContinuationFrame(1, data=rest[9000:], flags=["END_HEADERS"]).serialize()
    session = H2Session(CLIENT)
    out = []
    for i, (direction, data) in enumerate(wire.chunks):
        out += session.feed(direction, data, i + 1, 0)
    assert session.settings_connect_protocol
    assert session.feed(CLIENT, frames, 90, 0) == []
    answer = HeadersFrame(1, data=hpack.Encoder().encode([(":status", "200"),
                                                         ("sec-websocket-protocol", "chat")]),
                          flags=["END_HEADERS"]).serialize()
    out = session.feed(SERVER, answer, 91, 0)
    assert [type(ev) for ev in out] == [H2WebSocket]
    data = DataFrame(1, data=b"payload", pad_length=200, flags=["PADDED"]).serialize()
    assert session.feed(CLIENT, data, 92, 0) == [H2Data(1, CLIENT, b"payload", 92, 0)]


def test_header_block_over_the_bound_is_malformed() -> None:
    session = H2Session(CLIENT)
    settings_frame = SettingsFrame(0).serialize()
    session.feed(CLIENT, PREFACE + settings_frame, 1, 0)
    session.feed(SERVER, settings_frame, 2, 0)
    out = session.feed(CLIENT, HeadersFrame(1, data=b"\x00" * 16000).serialize(), 3, 0)
    for i in range(MAX_HEADER_BLOCK // 16000):
        out += session.feed(CLIENT, ContinuationFrame(1, data=b"\x00" * 16000).serialize(), 4 + i, 0)
    assert kinds(out) == [(None, "h2-malformed")]
    assert "header block over" in out[0].problem.detail
    assert session.feed(CLIENT, settings_frame, 99, 0) == []        # the side is not followed


def test_hpack_error_then_later_blocks_not_decoded() -> None:
    wire = Wire()
    open_ws(wire, 1)
    bad_record = len(wire.chunks) + 1
    wire.raw(CLIENT, HeadersFrame(3, data=b"\xff\xff\xff\xff\x0f", flags=["END_HEADERS"]).serialize())
    wire.client.send_headers(5, connect_headers())    # never seen: the client's blocks are not decoded
    wire.client.send_data(1, frame(0x1, b"after", mask=MASK))
    wire.pump()
    events = feed_all(wire.chunks)
    problems = [ev.problem for ev in events if isinstance(ev, H2Problem)]
    assert [(p.kind, p.record_no) for p in problems] == [(ProblemKind.H2_HPACK_ERROR, bad_record)]
    assert "cannot be trusted" in problems[0].detail
    assert sorted(websockets(events)) == [1]
    assert data_of(events, 1, CLIENT) == frame(0x1, b"after", mask=MASK)


def test_header_list_over_the_bound_is_an_hpack_error() -> None:
    wire = Wire(validate=False)
    wire.client.send_headers(1, connect_headers(x_huge="h" * 70000))   # not for the server: too big
    events = feed_all([*wire.chunks, (CLIENT, wire.client.data_to_send())])
    assert kinds(events) == [(None, "h2-hpack-error")]


def test_frame_over_max_frame_size() -> None:
    session = H2Session(CLIENT)
    session.feed(CLIENT, PREFACE + SettingsFrame(0).serialize(), 1, 0)
    out = session.feed(CLIENT, DataFrame(1, data=b"x" * 16385).serialize(), 2, 0)
    assert kinds(out) == [(None, "h2-malformed")]
    # after SETTINGS_MAX_FRAME_SIZE from the peer the larger frame is fine
    session = H2Session(CLIENT)
    session.feed(CLIENT, PREFACE + SettingsFrame(0).serialize(), 1, 0)
    session.feed(SERVER, SettingsFrame(0, settings={5: 1 << 20}).serialize(), 2, 0)
    assert session.feed(CLIENT, DataFrame(1, data=b"x" * 16385).serialize(), 3, 0) == []


def test_first_frame_must_be_settings_and_preface_checked() -> None:
    out = H2Session(CLIENT).feed(CLIENT, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 1, 0)
    assert kinds(out) == [(None, "h2-malformed")]
    session = H2Session(CLIENT)
    out = session.feed(SERVER, b"HTTP/1.1 400 Bad Request\r\n\r\n", 1, 0)
    assert kinds(out) == [(None, "h2-malformed")]
    out = H2Session(CLIENT).feed(SERVER, GoAwayFrame(0).serialize(), 1, 0)
    assert "not SETTINGS" in out[0].problem.detail


def test_goaway_and_unknown_frames() -> None:
    wire, sent = multiplexed()
    unknown = b"\x00\x00\x05\xfa\x00\x00\x00\x00\x01hello"          # type 0xfa: ignored (§5.5)
    chunks = [*wire.chunks[:6], (CLIENT, unknown), *wire.chunks[6:],
              (SERVER, GoAwayFrame(0, last_stream_id=9, error_code=0).serialize())]
    session = H2Session(CLIENT)
    out = []
    for i, (direction, data) in enumerate(chunks):
        out += session.feed(direction, data, i + 1, 0)
    assert session.goaway == (SERVER, 9, "NO_ERROR (0x0)")
    assert data_of(out, 9, SERVER) == sent[(9, SERVER)]


def test_data_padding_agrees_with_hyperframe() -> None:
    """The streamed DATA body (Rule 1) gives what hyperframe's DataFrame.parse_body gives."""
    for pad in (0, 1, 5, 255):
        for body in (b"", b"a", os.urandom(3000)):
            wire = DataFrame(1, data=body, pad_length=pad, flags=["PADDED"]).serialize()
            parsed, _ = Frame.parse_frame_header(memoryview(wire[:9]))
            parsed.parse_body(memoryview(wire[9:]))
            session = H2Session(CLIENT)
            session.feed(CLIENT, PREFACE + SettingsFrame(0).serialize(), 1, 0)
            session.feed(SERVER, SettingsFrame(0, settings={8: 1}).serialize(), 2, 0)
            block = hpack.Encoder().encode(connect_headers())
            session.feed(CLIENT, HeadersFrame(1, data=block, flags=["END_HEADERS"]).serialize(), 3, 0)
            session.feed(SERVER, HeadersFrame(1, data=hpack.Encoder().encode([(":status", "200")]),
                                              flags=["END_HEADERS"]).serialize(), 4, 0)
            out = []
            for i in range(len(wire)):
                out += session.feed(CLIENT, wire[i:i + 1], 5, 0)
            assert data_of(out, 1, CLIENT) == parsed.data == body


def test_padding_longer_than_the_frame_is_malformed() -> None:
    session = H2Session(CLIENT)
    session.feed(CLIENT, PREFACE + SettingsFrame(0).serialize(), 1, 0)
    bad = b"\x00\x00\x03\x00\x08\x00\x00\x00\x01\x05ab"            # Pad Length 5 in 3 bytes
    assert kinds(session.feed(CLIENT, bad, 2, 0)) == [(None, "h2-malformed")]


# --- gaps and garbage ------------------------------------------------------------------------

def test_gap_in_the_client_direction() -> None:
    wire, sent = multiplexed()
    before_closes = [i for i, (d, _) in enumerate(wire.chunks) if d == CLIENT][-4]
    events = feed_all(wire.chunks, gaps=[before_closes])
    assert kinds(events)[0] == (None, "h2-malformed")
    assert "TCP gap" in next(ev for ev in events if isinstance(ev, H2Problem)).problem.detail
    lost = [sid for sid, kind in kinds(events)[1:]]
    assert sorted(lost) == [1, 5, 9]
    assert data_of(events, 9, SERVER) == sent[(9, SERVER)]              # the server side goes on


def test_gap_in_the_server_direction_before_the_answer() -> None:
    wire = Wire()
    wire.client.send_headers(1, connect_headers())
    wire.pump()
    wire.server.send_headers(1, [(":status", "200")])
    wire.pump()
    events = feed_all(wire.chunks, gaps=[len(wire.chunks) - 1])
    hs = websockets(events)[1].handshake
    assert hs.http_status is None
    assert hs.failure_reason == "no answer: the server's HTTP/2 frames were not followed to the end"


def test_garbage_frames_after_a_good_start() -> None:
    wire, _ = multiplexed()
    garbage = bytes(range(256)) * 4
    chunks = [*wire.chunks[:8], (CLIENT, garbage), *wire.chunks[8:]]
    events = feed_all(chunks)
    assert (None, "h2-malformed") in kinds(events)


def check_contract(events: list[object]) -> None:
    """What the connection layer relies on: only H2Out values; a stream's H2Data and H2StreamEnd
    after its H2WebSocket (an upgraded one), nothing after a reset, one end per direction."""
    upgraded: set[int] = set()
    done: set[int] = set()
    ended: set[tuple[int, int]] = set()
    answered: set[int] = set()
    for ev in events:
        assert isinstance(ev, H2WebSocket | H2Data | H2StreamEnd | H2Problem)
        if isinstance(ev, H2WebSocket):
            assert ev.stream_id not in answered
            answered.add(ev.stream_id)
            if ev.handshake.upgraded:
                upgraded.add(ev.stream_id)
        elif isinstance(ev, H2Data | H2StreamEnd):
            assert ev.stream_id in upgraded and ev.stream_id not in done
            if isinstance(ev, H2StreamEnd):
                assert (ev.stream_id, ev.direction) not in ended
                ended.add((ev.stream_id, ev.direction))
                if ev.reset:
                    done.add(ev.stream_id)


def _valid_start() -> list[tuple[int, bytes]]:
    wire = Wire()
    open_ws(wire, 1)
    return wire.chunks


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=200)), max_size=12),
       st.booleans())
def test_hostile_bytes_only_give_events(tail: list[tuple[int, bytes]], start: bool) -> None:
    chunks = (_valid_start() if start else []) + tail
    if not start:
        chunks = [(CLIENT, PREFACE), *chunks]
    check_contract(feed_all(chunks, pieces=[3, 100]))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_flipped_byte_never_raises(where: int, value: int) -> None:
    wire, _ = multiplexed()
    flat = [(d, bytearray(b)) for d, b in wire.chunks]
    total = sum(len(b) for _, b in flat)
    k = where % total
    for _, b in flat:
        if k < len(b):
            b[k] = value
            break
        k -= len(b)
    check_contract(feed_all([(d, bytes(b)) for d, b in flat]))


def test_memory_one_partial_frame_per_side() -> None:
    """A 16 MiB DATA frame of a WebSocket stream streams out as it arrives; nothing is kept."""
    session = H2Session(CLIENT)
    session.feed(CLIENT, PREFACE + SettingsFrame(0).serialize(), 1, 0)
    session.feed(SERVER, SettingsFrame(0, settings={8: 1, 5: (1 << 24) - 1}).serialize(), 2, 0)
    session.feed(CLIENT, HeadersFrame(1, data=hpack.Encoder().encode(connect_headers()),
                                      flags=["END_HEADERS"]).serialize(), 3, 0)
    session.feed(SERVER, HeadersFrame(1, data=hpack.Encoder().encode([(":status", "200")]),
                                      flags=["END_HEADERS"]).serialize(), 4, 0)
    size = (1 << 24) - 1
    head = size.to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    out = session.feed(CLIENT, head, 5, 0)
    digest = hashlib.sha256()
    chunk = b"z" * 65536
    fed = 0
    while fed < size:
        piece = chunk[:size - fed]
        for ev in session.feed(CLIENT, piece, 6, 0):
            assert isinstance(ev, H2Data)
            digest.update(ev.data)
        fed += len(piece)
        assert len(session._sides[CLIENT].buf) == 0
    assert digest.digest() == hashlib.sha256(b"z" * size).digest()
    assert out == []


def test_push_promise_header_block_keeps_the_hpack_table() -> None:
    """A PUSH_PROMISE's header block adds to the server's dynamic table; the answer to a later
    CONNECT refers to that entry, so it decodes only if the promise was decoded too."""
    wire = Wire()
    wire.client.send_headers(1, GET_HEADERS, end_stream=True)
    wire.pump()
    wire.server.push_stream(1, 2, [(":method", "GET"), (":scheme", "https"), (":path", "/pushed.css"),
                                   (":authority", "example.com"), ("x-shared", "only-in-the-promise")])
    wire.server.send_headers(1, [(":status", "200")], end_stream=True)
    wire.pump()
    wire.client.send_headers(3, connect_headers())
    wire.pump()
    wire.server.send_headers(3, [(":status", "200"), ("sec-websocket-protocol", "chat"),
                                 ("x-shared", "only-in-the-promise")])
    wire.pump()
    answer = wire.chunks[-1][1]
    assert b"only-in-the-promise" not in answer                  # an index into the dynamic table
    events = feed_all(wire.chunks)
    assert kinds(events) == []
    assert websockets(events)[3].handshake.ok
    # without the PUSH_PROMISE the same answer does not decode
    promise = next(i for i, (d, b) in enumerate(wire.chunks) if d == SERVER and b[3:4] == b"\x05")
    assert promise < len(wire.chunks) - 1
    assert (None, "h2-hpack-error") in kinds(feed_all(wire.chunks[:promise] + wire.chunks[promise + 1:]))


def test_data_frame_cut_by_a_reset_is_not_output_after_it() -> None:
    """The rest of a DATA frame that was arriving when the other side reset the stream is dropped:
    nothing of a stream comes after its H2StreamEnd(reset=True)."""
    wire = Wire()
    open_ws(wire, 1)
    events = feed_all(wire.chunks)
    session = H2Session(CLIENT)
    for i, (direction, data) in enumerate(wire.chunks):
        session.feed(direction, data, i + 1, 0)
    data = DataFrame(1, data=b"s" * 1000).serialize()
    out = session.feed(SERVER, data[:500], 50, 0)
    out += session.feed(CLIENT, b"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08", 51, 0)   # RST CANCEL
    out += session.feed(SERVER, data[500:], 52, 0)
    assert [type(ev).__name__ for ev in out] == ["H2Data", "H2Problem", "H2StreamEnd"]
    assert out[0].data == b"s" * (500 - 9)
    assert websockets(events)[1].handshake.ok


_BLOCKS = {
    "connect": hpack.Encoder().encode(connect_headers()),
    "get": hpack.Encoder().encode(GET_HEADERS),
    "200": hpack.Encoder().encode([(":status", "200"), ("sec-websocket-protocol", "chat")]),
    "403": hpack.Encoder().encode([(":status", "403")]),
    "100": hpack.Encoder().encode([(":status", "100")]),
}


@st.composite
def h2_frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """One well-formed frame from either side, on streams 1, 3 or 5 (headers blocks made without
    the dynamic table, so any order decodes)."""
    direction = draw(st.integers(0, 1))
    sid = draw(st.sampled_from([1, 3, 5]))
    kind = draw(st.sampled_from(["headers", "split", "data", "rst", "settings", "ping", "window"]))
    end = ["END_STREAM"] if draw(st.booleans()) else []
    if kind in ("headers", "split"):
        block = _BLOCKS[draw(st.sampled_from(["connect", "get"]) if direction == CLIENT else
                             st.sampled_from(["200", "403", "100"]))]
        if kind == "headers":
            return direction, HeadersFrame(sid, data=block, flags=["END_HEADERS", *end]).serialize()
        cut = draw(st.integers(0, len(block)))
        return direction, (HeadersFrame(sid, data=block[:cut], flags=end).serialize()
                           + ContinuationFrame(sid, data=block[cut:], flags=["END_HEADERS"]).serialize())
    if kind == "data":
        pad = draw(st.none() | st.integers(0, 20))
        flags = end + (["PADDED"] if pad is not None else [])
        return direction, DataFrame(sid, data=draw(st.binary(max_size=40)), pad_length=pad or 0,
                                    flags=flags).serialize()
    if kind == "rst":
        return direction, b"\x00\x00\x04\x03\x00" + sid.to_bytes(4, "big") + b"\x00\x00\x00\x08"
    if kind == "settings":
        return direction, SettingsFrame(0, settings={8: draw(st.integers(0, 1))}).serialize()
    if kind == "ping":
        return direction, b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + bytes(8)
    return direction, b"\x00\x00\x04\x08\x00" + sid.to_bytes(4, "big") + b"\x00\x00\x01\x00"


@settings(max_examples=300, deadline=None)
@given(st.lists(h2_frames(), max_size=30), st.sampled_from([None, [1], [4, 9, 100]]))
def test_random_well_formed_conversations_keep_the_contract(frames: list[tuple[int, bytes]],
                                                            pieces: list[int] | None) -> None:
    start = [(CLIENT, PREFACE + SettingsFrame(0).serialize()), (SERVER, SettingsFrame(0).serialize())]
    events = feed_all(start + frames, pieces=pieces)
    check_contract(events)
    assert not any(isinstance(ev, H2Problem) and ev.problem.kind in (
        ProblemKind.H2_MALFORMED, ProblemKind.H2_HPACK_ERROR) for ev in events)
    assert normalized(events) == normalized(feed_all(start + frames))


def test_a_reset_after_the_resetting_side_ended_its_direction_ends_the_other_once() -> None:
    """Found by the contract test: the client's END_STREAM (held until the 200), then its
    RST_STREAM: the client direction ends once (END_STREAM), the reset ends the server's."""
    wire = Wire()
    wire.client.send_headers(1, connect_headers(), end_stream=True)
    wire.pump()
    wire.server.send_headers(1, [(":status", "200")])
    wire.pump()
    wire.client.reset_stream(1)
    wire.pump()
    events = feed_all(wire.chunks)
    check_contract(events)
    ends = [(ev.direction, ev.reset) for ev in events if isinstance(ev, H2StreamEnd)]
    assert ends == [(CLIENT, False), (1 - CLIENT, True)]
