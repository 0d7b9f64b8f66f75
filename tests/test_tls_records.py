"""records.py: record framing and handshake reassembly on the RFC 8448 trace and built records;
split-invariance (whole, byte by byte, random cuts); bad headers raise RecordError only."""

from __future__ import annotations

import random

import pytest

from analyzer.tls.records import (
    MAX_HANDSHAKE,
    MAX_RECORD,
    HandshakeReader,
    RecordError,
    RecordReader,
    looks_like_tls,
)
from tests import tls_helpers as T

SERVER_BYTES = b"".join(data for d, data in T.R8448_FLOW if d == 1)
SERVER_RECORDS = [data for d, data in T.R8448_FLOW if d == 1]


def _records(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
    reader = RecordReader()
    out = []
    for chunk in chunks:
        out += [(h, bytes(f)) for h, f in reader.feed(chunk)]
        assert reader.buffered <= max(len(r) for r in SERVER_RECORDS)
    assert reader.buffered == 0
    return out


def test_looks_like_tls() -> None:
    assert looks_like_tls(T.R8448_CH_REC)
    assert looks_like_tls(T.R8448_CH_REC[:3]) and looks_like_tls(T.R8448_SH_REC[:6])
    assert looks_like_tls(T.R8448_C_APP_REC)
    assert not looks_like_tls(b"GET / HTTP/1.1\r\n")
    assert not looks_like_tls(b"\x16\x03")                     # too short to say
    assert not looks_like_tls(b"\x16\x03\x00\x00\x10\x01")     # SSL 3.0 handshake record
    assert not looks_like_tls(b"\x16\x03\x01\x00\x10\x0b")     # a handshake record not starting with a hello
    assert not looks_like_tls(b"\x17\x03\x05")                 # no version 3.5
    assert not looks_like_tls(b"\x19\x03\x03")                 # content type 25


def test_records_whole_bytewise_and_random_cuts() -> None:
    expected = [(r[:5], r[5:]) for r in SERVER_RECORDS]
    assert _records([SERVER_BYTES]) == expected
    assert _records([SERVER_BYTES[i:i + 1] for i in range(len(SERVER_BYTES))]) == expected
    rng = random.Random(15)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(SERVER_BYTES)), 6))
        pieces = [SERVER_BYTES[a:b] for a, b in zip([0, *cuts], [*cuts, len(SERVER_BYTES)], strict=True)]
        assert _records(pieces) == expected


def test_partial_record_is_buffered_until_complete() -> None:
    reader = RecordReader()
    assert reader.feed(T.R8448_FLIGHT_REC[:3]) == [] and reader.pending_total == 0
    assert reader.feed(T.R8448_FLIGHT_REC[3:100]) == [] and reader.pending_total == 679
    assert reader.buffered == 100
    (header, fragment), = reader.feed(T.R8448_FLIGHT_REC[100:] + T.R8448_NST_REC[:10])
    assert header == T.R8448_FLIGHT_REC[:5] and bytes(fragment) == T.R8448_FLIGHT_REC[5:]
    assert reader.buffered == 10
    reader.reset()
    assert reader.buffered == 0 and reader.feed(T.R8448_S_APP_REC)[0][0] == T.R8448_S_APP_REC[:5]


@pytest.mark.parametrize(("header", "message"), [
    (b"\x17\x03\x03" + (MAX_RECORD + 1).to_bytes(2, "big"),
     f"record length <= {MAX_RECORD}, found={MAX_RECORD + 1}"),
    (b"\x30\x03\x03\x00\x10", "content type 20..24, found=48"),
    (b"\x17\x04\x03\x00\x10", "found=0x0403"),
])
def test_bad_headers(header: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        RecordReader().feed(T.R8448_S_APP_REC + header)
    reader = RecordReader()                                  # the same when the header arrives in pieces
    reader.feed(header[:2])
    with pytest.raises(RecordError, match=message):
        reader.feed(header[2:])


def test_max_record_accepted() -> None:
    rec = T.record(23, b"\x00" * MAX_RECORD)
    (_header, fragment), = RecordReader().feed(rec)
    assert len(fragment) == MAX_RECORD


def test_handshake_messages_across_records() -> None:
    msgs = T.client_hello() + T.certificate(5000) + T.finished()
    for size in (1, 3, 7, 1000, len(msgs)):
        hs = HandshakeReader()
        out = []
        for i in range(0, len(msgs), size):
            out += hs.feed(memoryview(msgs[i:i + size]))
        assert [(t, n) for t, _, n in out] == [(1, len(T.client_hello()) - 4), (11, 5000), (20, 32)]
        assert out[2][1] == b"\xf1" * 32
        assert not hs.partial


def test_handshake_message_over_the_limit_is_skipped() -> None:
    big = T.handshake(11, b"\xab" * (MAX_HANDSHAKE + 10))
    stream = big + T.finished(12)
    hs = HandshakeReader()
    out = []
    for i in range(0, len(stream), 16384):
        out += hs.feed(stream[i:i + 16384])
        assert len(hs._buf) <= 16384 + 4                     # never buffered whole
    assert out == [(11, None, MAX_HANDSHAKE + 10), (20, b"\xf1" * 12, 12)]
