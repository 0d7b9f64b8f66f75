"""Files that are not (whole) captures, through the public API: each raises `analyzer.CaptureError`
with one clear line, or (truncation, unknown link type) returns what could be read plus a problems
row. Never any other exception type."""

from __future__ import annotations

import gzip
import os
import shutil
import struct

import pandas as pd
import pytest

import analyzer
from analyzer import capture as capture_mod
from tests.helpers.pcapgen_link import ng_block, ng_epb, ng_idb, ng_shb
from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

CAPTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "captures")
SAMPLE = os.path.join(CAPTURES, "ws_close_codes_server.pcap")


def one_clear_line(exc: BaseException, name: str) -> str:
    text = str(exc)
    assert type(exc) is analyzer.CaptureError
    assert "\n" not in text and text.strip() == text and len(text) < 300
    assert name in text
    return text


def refuse(path, name: str | None = None) -> str:
    with pytest.raises(analyzer.CaptureError) as info:
        analyzer.analyze(path)
    return one_clear_line(info.value, name or os.path.basename(os.fspath(path)))


def test_not_a_capture(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert "not a pcap or pcapng file" in refuse(path)


def test_random_binary_is_not_a_capture(tmp_path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4)
    assert "not a pcap or pcapng file" in refuse(path)


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert "empty" in refuse(path)


def test_pcap_header_cut_short(tmp_path) -> None:
    path = tmp_path / "short.pcap"
    with open(SAMPLE, "rb") as f:
        path.write_bytes(f.read(10))
    assert "cut short" in refuse(path)


def test_gzip_of_nothing_and_of_text(tmp_path) -> None:
    empty = tmp_path / "empty.pcap.gz"
    empty.write_bytes(gzip.compress(b""))
    assert "empty" in refuse(empty)
    text = tmp_path / "text.pcap.gz"
    text.write_bytes(gzip.compress(b"hello, world\n" * 10))
    assert "gzip-compressed file holds no pcap or pcapng" in refuse(text)


def test_missing_file(tmp_path) -> None:
    assert "no such file" in refuse(tmp_path / "nowhere.pcap")


def test_directory(tmp_path) -> None:
    folder = tmp_path / "captures.pcap"
    folder.mkdir()
    assert "is a directory" in refuse(folder)


def test_permission_denied_simulated(tmp_path, monkeypatch) -> None:
    """Root reads a chmod 000 file anyway, so the refusal is simulated at open()."""
    path = tmp_path / "secret.pcap"
    shutil.copy(SAMPLE, path)

    def denied(file, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(file))

    monkeypatch.setattr(capture_mod, "open", denied, raising=False)
    assert "permission denied" in refuse(path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can read a chmod 000 file; covered by the simulated test")
def test_permission_denied_for_real(tmp_path) -> None:
    path = tmp_path / "secret.pcap"
    shutil.copy(SAMPLE, path)
    os.chmod(path, 0)
    try:
        assert "permission denied" in refuse(path)
    finally:
        os.chmod(path, 0o644)


def test_one_bad_file_in_a_list_is_a_capture_error(tmp_path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"nonsense")
    with pytest.raises(analyzer.CaptureError) as info:
        analyzer.analyze([SAMPLE, bad])
    one_clear_line(info.value, "bad.pcap")


# --- damaged but readable: results plus a problems row ------------------------------------------

def _ws_capture(path) -> None:
    conv = Conversation()
    conv.handshake()
    conv.send(0, upgrade_request())
    conv.send(1, upgrade_response())
    for i in range(10):
        conv.send(1, frame(1, f"message {i}".encode()))
    conv.fin(0)
    conv.fin(1)
    write_pcap(path, conv.packets)


@pytest.mark.parametrize("where", ["record-header", "record-data"])
def test_truncated_mid_record_keeps_what_was_read(tmp_path, where: str) -> None:
    whole_path = tmp_path / "whole.pcap"
    _ws_capture(whole_path)
    data = whole_path.read_bytes()
    # find the start of the 12th record (the 7th data frame) and cut inside it
    pos = 24
    for _ in range(11):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    cut = pos + 7 if where == "record-header" else pos + 16 + 30
    cut_path = tmp_path / "cut.pcap"
    cut_path.write_bytes(data[:cut])
    whole = analyzer.analyze(whole_path)
    a = analyzer.analyze(cut_path)
    before = whole.frames[whole.frames["frame_no"] < 12].reset_index(drop=True)
    assert len(before) == 6
    cols = ["frame_no", "opcode", "payload_len", "sender"]
    pd.testing.assert_frame_equal(a.frames[cols].reset_index(drop=True), before[cols])
    assert a.messages["preview"].tolist() == [f"message {i}" for i in range(6)]
    truncated = a.problems[a.problems["kind"] == "capture-truncated"]
    assert len(truncated) == 1
    expected = "after record 11" if where == "record-header" else "inside record 12"
    assert expected in truncated.iloc[0]["detail"]
    assert a.connections["close_status"].tolist() == ["open-at-end"]


def test_truncated_gzip_keeps_what_was_read(tmp_path) -> None:
    raw = tmp_path / "whole.pcap"
    _ws_capture(raw)
    packed = gzip.compress(raw.read_bytes())
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[:len(packed) * 9 // 10])
    a = analyzer.analyze(path)
    whole = analyzer.analyze(raw)
    n = len(a.frames)
    assert 1 <= n < len(whole.frames)         # every whole record the gzip stream still held
    assert a.frames["payload_len"].tolist() == whole.frames["payload_len"].tolist()[:n]
    rows = a.problems[a.problems["kind"] == "capture-truncated"]
    assert len(rows) == 1 and "gzip stream ends early" in rows.iloc[0]["detail"]


def test_unknown_link_type_returns_with_a_problem_row(tmp_path) -> None:
    path = tmp_path / "linktype.pcap"
    conv = Conversation()
    conv.handshake()
    write_pcap(path, conv.packets, linktype=147)       # LINKTYPE_USER0: nobody can dissect it
    a = analyzer.analyze(path)
    assert len(a.frames) == 0 and len(a.connections) == 0
    rows = a.problems[a.problems["kind"] == "unknown-linktype"]
    assert len(rows) == 1 and "147" in rows.iloc[0]["detail"]
    assert a.captures[0].packets == 3


def test_pcapng_with_a_corrupt_block_keeps_the_records_before(tmp_path) -> None:
    path = tmp_path / "corrupt.pcapng"
    conv = Conversation()
    conv.handshake()
    blocks = [ng_shb(), ng_idb(1)] + [ng_epb(0, int(ts * 1e6), pkt) for ts, pkt in conv.packets]
    path.write_bytes(b"".join(blocks) + struct.pack("<II", 6, 7) + b"\x00" * 40)
    a = analyzer.analyze(path)
    assert a.captures[0].packets == 3
    rows = a.problems[a.problems["kind"] == "capture-unreadable"]
    assert len(rows) == 1 and "length=7" in rows.iloc[0]["detail"]


def test_pcapng_packet_block_shorter_than_its_header_is_skipped(tmp_path) -> None:
    """A fuzz crasher: struct.error escaped the reader for an EPB of 12 bytes."""
    path = tmp_path / "shortepb.pcapng"
    path.write_bytes(ng_shb() + ng_idb(1) + ng_block(6, b"") + ng_epb(0, 1, b"\x00" * 60))
    a = analyzer.analyze(path)
    assert a.captures[0].packets == 1
    rows = a.problems[a.problems["kind"] == "capture-unreadable"]
    assert len(rows) == 1 and "shorter than its 32-byte header" in rows.iloc[0]["detail"]
    assert rows.iloc[0]["frame_no"] == 1


def test_pcapng_timestamp_out_of_range_is_a_problem_not_a_crash(tmp_path) -> None:
    """A fuzz crasher: a timestamp past year 2262 made building the DataFrames overflow."""
    path = tmp_path / "future.pcapng"
    conv = Conversation()
    conv.handshake()
    (t0, p0), (_t1, p1), (t2, p2) = conv.packets
    blocks = [ng_shb(), ng_idb(1), ng_epb(0, int(t0 * 1e6), p0), ng_epb(0, (1 << 64) - 1, p1),
              ng_epb(0, int(t2 * 1e6), p2)]
    path.write_bytes(b"".join(blocks))
    a = analyzer.analyze(path)
    rows = a.problems[a.problems["kind"] == "capture-unreadable"]
    assert len(rows) == 1 and "out of range" in rows.iloc[0]["detail"] and rows.iloc[0]["frame_no"] == 2
