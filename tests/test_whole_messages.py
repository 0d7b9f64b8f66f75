"""Whole one-frame messages written by the frame decoder's fast path (FrameDecoder.
emit_whole_messages, "the lane" below) must give exactly the tables of the general path.

Each test analyses the same bytes twice, with the lane on and off (websocket.WHOLE_MESSAGES), and
compares the four DataFrames. Each also checks that the lane really took frames, so that the
comparison is not between two runs of the general path.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analyzer
from analyzer import tables, websocket
from tests.pcapgen import Conversation, close_payload, frame, upgrade_request, upgrade_response, write_pcap

CAPTURES = sorted(p for p in (Path(__file__).parent.parent / "captures").iterdir()
                  if p.suffix in (".pcap", ".pcapng"))
MASK = b"\x11\x22\x33\x44"


@pytest.fixture
def lane_counter(monkeypatch):
    """Counts the wire bytes (header and payload) of the whole messages the lane wrote."""
    taken = [0]
    original = tables.TableRows.whole_message_writer

    def counting_writer(self):
        write = original(self)

        def counting(conn_id, record_no, ts_ns, frame_flags, payload_len, *rest):
            taken[0] += payload_len + (frame_flags >> tables.F_HEADER_SHIFT)
            return write(conn_id, record_no, ts_ns, frame_flags, payload_len, *rest)
        return counting

    monkeypatch.setattr(tables.TableRows, "whole_message_writer", counting_writer)
    return taken


def _both_ways(monkeypatch, path, **kwargs) -> tuple[analyzer.Analysis, analyzer.Analysis]:
    monkeypatch.setattr(websocket, "WHOLE_MESSAGES", True)
    fast = analyzer.analyze(path, jobs=1, **kwargs)
    monkeypatch.setattr(websocket, "WHOLE_MESSAGES", False)
    general = analyzer.analyze(path, jobs=1, **kwargs)
    monkeypatch.setattr(websocket, "WHOLE_MESSAGES", True)
    return fast, general


def _assert_same(fast: analyzer.Analysis, general: analyzer.Analysis) -> None:
    for table in ("connections", "frames", "messages", "problems"):
        pd.testing.assert_frame_equal(getattr(fast, table), getattr(general, table), obj=table)


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_corpus_tables_are_the_same_with_and_without_the_lane(monkeypatch, lane_counter, path):
    fast, general = _both_ways(monkeypatch, path, payloads=True)
    _assert_same(fast, general)
    # hixie framing has no lane; ws_fragments_ping sends every message in fragments
    if len(fast.frames) and not path.name.startswith(("hixie", "handshake_failed", "ws_fragments")):
        assert lane_counter[0] > 0, "the lane took nothing: the comparison proves nothing"


@pytest.mark.parametrize(("preview_len", "payloads"), [(0, 0.3), (0, False), (3, False), (3, True)])
def test_small_limits_and_short_previews(monkeypatch, lane_counter, preview_len, payloads):
    """Limits below many message sizes, no UTF-8 check, no or short previews, payloads kept, not
    kept or sampled (the lane writes ASCII text itself only when no payload is kept)."""
    path = Path(__file__).parent.parent / "captures" / "demo.pcapng"
    fast, general = _both_ways(monkeypatch, path, max_message_bytes=300, validate_utf8=False,
                               preview_len=preview_len, payloads=payloads)
    _assert_same(fast, general)
    assert lane_counter[0] > 0


# --- generated conversations ------------------------------------------------------------------

def _deflate(data: bytes, compressor) -> bytes:
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


_payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\xff\xfe", b"caf\xc3", b"\xc3\xa9" * 70, b"x" * 126, b"y" * 70000,
                     b"z" * 200, b"z" * 201]),     # 200: the small limit below
)

# (kind, payload, options): kinds the lane takes and kinds it must leave to the general path
_frame_specs = st.tuples(
    st.sampled_from(["text", "binary", "compressed", "ping", "pong", "fragmented", "reserved",
                     "rsv2", "close", "unmasked-client", "bad-deflate", "non-minimal"]),
    _payloads,
)


def _encode(kind: str, payload: bytes, from_client: bool, compressor) -> bytes:
    mask = MASK if from_client else None
    if kind == "text":
        return frame(0x1, payload, mask=mask)
    if kind == "binary":
        return frame(0x2, payload, mask=mask)
    if kind == "compressed":
        return frame(0x1, _deflate(payload, compressor), mask=mask, rsv=4)
    if kind == "bad-deflate":
        return frame(0x2, b"\xff" + payload, mask=mask, rsv=4)
    if kind == "ping":
        return frame(0x9, payload[:125], mask=mask)
    if kind == "pong":
        return frame(0xA, payload[:125], mask=mask)
    if kind == "fragmented":
        half = len(payload) // 2
        return (frame(0x2, payload[:half], fin=False, mask=mask)
                + frame(0x0, payload[half:], mask=mask))
    if kind == "reserved":
        return frame(0x3, payload[:50], mask=mask)
    if kind == "rsv2":
        return frame(0x1, payload[:50], mask=mask, rsv=2)
    if kind == "close":
        return frame(0x8, close_payload(1000, "done"), mask=mask)
    if kind == "unmasked-client":
        return frame(0x1, payload[:50], mask=None)
    # non-minimal: a 5-byte payload announced with the 16-bit length form
    body = payload[:5].ljust(5, b"a")
    head = bytes([0x81, (0x80 if mask else 0) | 126, 0, 5])
    if mask:
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    return head + body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(st.tuples(st.booleans(), _frame_specs), min_size=1, max_size=25),
       cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=30),
       deflate=st.sampled_from([None, "permessage-deflate", "x-webkit-deflate-frame"]),
       limit=st.sampled_from([16 << 20, 200]))
def test_generated_streams(tmp_path_factory, monkeypatch, lane_counter, specs, cuts, deflate, limit):
    """With permessage-deflate the lane inflates one-frame messages; with deflate-frame (each
    frame compressed on its own) it must leave every RSV1 frame to the general path."""
    extension = f"Sec-WebSocket-Extensions: {deflate}\r\n" if deflate else ""
    conv = Conversation(client_port=50123, server_port=8765)
    conv.handshake()
    conv.send(0, upgrade_request(extra=extension))
    conv.send(1, upgrade_response(extra=extension))
    compressors = [zlib.compressobj(wbits=-15), zlib.compressobj(wbits=-15)]
    streams = [bytearray(), bytearray()]
    for from_client, (kind, payload) in specs:
        direction = 0 if from_client else 1
        streams[direction] += _encode(kind, payload, from_client, compressors[direction])
    # cut each direction's bytes into segments at the drawn sizes, alternating the directions
    pos = [0, 0]
    step = 0
    while pos[0] < len(streams[0]) or pos[1] < len(streams[1]):
        for direction in (0, 1):
            if pos[direction] < len(streams[direction]):
                size = cuts[step % len(cuts)] if cuts else 60_000     # an IPv4 packet holds < 64 KiB
                conv.send(direction, bytes(streams[direction][pos[direction]:pos[direction] + size]))
                pos[direction] += size
                step += 1
    conv.fin(0)
    conv.fin(1)
    path = tmp_path_factory.mktemp("lane") / "gen.pcap"
    write_pcap(path, conv.packets)
    fast, general = _both_ways(monkeypatch, path, max_message_bytes=limit, payloads=True)
    _assert_same(fast, general)


def test_generated_streams_reach_the_lane(tmp_path, monkeypatch, lane_counter):
    """The generator above does produce streams the lane takes (else it would prove nothing)."""
    conv = Conversation(client_port=50124, server_port=8765)
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(0, frame(0x1, b"hello", mask=MASK) + frame(0x2, b"\x00\x01", mask=MASK))
    conv.send(1, frame(0x1, b"caf\xc3\xa9") + frame(0x9, b"") + frame(0x1, b"after the ping"))
    write_pcap(tmp_path / "lane.pcap", conv.packets)
    fast, general = _both_ways(monkeypatch, tmp_path / "lane.pcap")
    _assert_same(fast, general)
    # the lane stops at the ping: the general path decodes it and the text after it
    assert lane_counter[0] == len(frame(0x1, b"hello", mask=MASK) + frame(0x2, b"\x00\x01", mask=MASK)) \
        + len(frame(0x1, b"caf\xc3\xa9"))
    assert list(fast.messages.preview) == ["hello", "0001", "café", "after the ping"]


@pytest.mark.parametrize("size", [199, 200, 201])
def test_frames_at_the_limit(tmp_path, monkeypatch, lane_counter, size):
    """A frame at max_message_bytes is the lane's; one byte more is the general path's (counted,
    not buffered: frame-too-large and message-over-limit)."""
    conv = Conversation(client_port=50125, server_port=8765)
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    conv.send(0, frame(0x2, b"z" * size, mask=MASK))
    conv.send(1, frame(0x1, b"z" * size))
    conv.fin(0)
    conv.fin(1)
    write_pcap(tmp_path / "limit.pcap", conv.packets)
    fast, general = _both_ways(monkeypatch, tmp_path / "limit.pcap", max_message_bytes=200)
    _assert_same(fast, general)
    assert list(fast.messages["size"]) == [size, size]
    assert (lane_counter[0] > 0) == (size <= 200)
    assert ("frame-too-large" in set(fast.problems.kind)) == (size > 200)
