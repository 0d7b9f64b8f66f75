"""Hostile captures for the capture reader (issue 13, items 2, 4, 7, 21, 22), built by
tests/hostile/capture.py: CPU bombs in gzip, FIFOs and devices as the capture path, interface
tables without end, nothing readable after a good header, scapy's warnings on stderr."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import analyzer
from analyzer import capture as capture_mod
from analyzer.capture import CaptureError, CaptureReader
from analyzer.events import PacketRecord
from tests.hostile.capture import FRAMES, OVER_CAP, SHAPES, conversation
from tests.pcapgen import write_pcap

ROOT = Path(__file__).resolve().parent.parent
MAX_INTERFACES = getattr(capture_mod, "MAX_INTERFACES", 65_536)
SUBPROCESS_TIMEOUT = 60      # seconds: a hang fails the test instead of hanging it


class CountingStream:
    """Stands in for the reader's stream and counts the calls that read from it."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.calls = 0

    def read(self, n: int = -1) -> bytes:
        self.calls += 1
        return self._f.read(n)

    def peek(self, n: int = 0) -> bytes:
        self.calls += 1
        return self._f.peek(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def read_counting(path: Path) -> tuple[list[PacketRecord], CaptureReader, int]:
    with CaptureReader(path) as r:
        counter = CountingStream(r._f)
        r._f = counter
        recs = list(r)
    return recs, r, counter.calls


def ws_text_frames(a: analyzer.Analysis) -> list[int]:
    return a.frames.loc[a.frames["opcode"] == 1, "frame_no"].tolist()


# --- item 2: gzip CPU bombs ----------------------------------------------------------------------

def test_zero_filled_pcap_is_skipped_in_bulk_and_reported_once(tmp_path: Path) -> None:
    path = SHAPES["gzip-zeros"](tmp_path, 1.0)
    zeros = (2 << 20) // 16
    packets = len(conversation())
    recs, r, calls = read_counting(path)
    # the two conversations, numbered as Wireshark does (every empty record counts)
    assert [x.record_no for x in recs] == (list(range(1, packets + 1))
                                           + list(range(packets + zeros + 1, 2 * packets + zeros + 1)))
    assert r.records_read == 2 * packets
    # the 131,072 empty records cost a few reads of a buffer each, not two reads per record
    assert calls < 4 * packets + 200, calls
    assert len(r.problems) == 1
    detail = r.problems[0].detail
    assert f"{zeros} records with no captured bytes (caplen 0)" in detail
    assert f"from record {packets + 1} to record {packets + zeros} (a zero-filled stretch" in detail
    assert r.problems[0].record_no == packets + 1


def test_zero_filled_pcap_through_the_api_keeps_both_sides(tmp_path: Path) -> None:
    a = analyzer.analyze(SHAPES["gzip-zeros"](tmp_path, 1.0))
    packets, zeros = len(conversation()), (2 << 20) // 16
    first = list(range(6, 6 + FRAMES))                 # records 6..10 carry the text frames
    assert ws_text_frames(a) == first + [n + packets + zeros for n in first]
    assert a.problems["kind"].tolist() == ["capture-unreadable"]      # one row, not one per record
    assert a.captures[0].packets == 2 * packets


def test_zero_run_ending_the_file_and_cut_mid_record(tmp_path: Path) -> None:
    """Zeros up to the end, the last empty record cut short: both reported, the records before kept."""
    path = tmp_path / "zero-tail.pcap"
    whole = Path(SHAPES["gzip-zeros"](tmp_path, 0.01))
    data = gzip.decompress(whole.read_bytes())
    cut = data.index(bytes(64)) + 16 * 62 + 8                         # 8 bytes into an empty record
    path.write_bytes(data[:cut])
    with CaptureReader(path) as r:
        recs = list(r)
    assert len(recs) == len(conversation())
    kinds = sorted(p.kind.value for p in r.problems)
    assert kinds == ["capture-truncated", "capture-unreadable"]
    assert "62 records with no captured bytes" in " ".join(p.detail for p in r.problems)


def test_empty_pcapng_packet_blocks_are_counted_not_yielded(tmp_path: Path) -> None:
    recs, r, _ = read_counting(SHAPES["pcapng-empty-packets"](tmp_path, 1.0))
    packets = len(conversation())
    assert len(recs) == 2 * packets
    assert recs[packets].record_no == packets + 65_536 + 1
    assert [p.detail.split(": ", 1)[1] for p in r.problems] == [
        f"65536 records with no captured bytes (caplen 0) skipped, from record {packets + 1} to record "
        f"{packets + 65_536}"]


def test_idb_full_of_options_is_read_in_part(tmp_path: Path) -> None:
    path = SHAPES["idb-options"](tmp_path, 1.0)                 # 4 MiB of options in one block
    tracemalloc.start()
    try:
        with CaptureReader(path) as r:
            recs = list(r)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the block is skipped in pieces, never held whole (nor parsed option by option)
    assert peak < 2 << 20, peak
    assert r.problems == []
    packets = conversation()
    # if_tsresol (the first option) is honoured: nanosecond ticks
    assert [x.ts_ns for x in recs] == [round(ts * 10**9) for ts, _ in packets]
    a = analyzer.analyze(path)
    assert ws_text_frames(a) == list(range(6, 6 + FRAMES))
    assert a.problems.empty


def test_repeated_small_blocks_are_skipped_in_bulk(tmp_path: Path) -> None:
    recs, r, calls = read_counting(SHAPES["tiny-blocks"](tmp_path, 1.0))
    packets = len(conversation())
    # not packets, not numbered: the second conversation follows the first
    assert [x.record_no for x in recs] == list(range(1, 2 * packets + 1))
    assert r.problems == []
    assert calls < 4 * packets + 200, calls          # 200,000 blocks, not 2 reads each


def test_copies_are_counted_exactly_around_other_blocks(tmp_path: Path) -> None:
    """Runs of one block broken by others (and by an empty packet block between copies of
    another) are skipped exactly: every packet after them arrives with its own number."""
    from tests.helpers.pcapgen_link import ng_block, ng_epb, ng_idb, ng_shb

    a, b = ng_block(0x0BAD, b"A" * 4), ng_block(0x0BAD, b"B" * 8)
    empty = ng_epb(0, 7, b"")
    pkt = ng_epb(0, 9, b"\x00" * 60)
    data = (ng_shb() + ng_idb(1) + a * 1000 + b + a * 5 + pkt + empty * 3 + b + empty * 20_001 + pkt
            + a * 70_000 + b * 3 + pkt)
    path = tmp_path / "runs.pcapng"
    path.write_bytes(data)
    with CaptureReader(path) as r:
        recs = list(r)
    assert [x.record_no for x in recs] == [1, 1 + 3 + 20_001 + 1, 1 + 3 + 20_001 + 2]
    assert [p.detail.split(": ", 1)[1] for p in r.problems] == [
        "20004 records with no captured bytes (caplen 0) skipped, from record 2 to record 20005"]


# --- item 7: interface tables --------------------------------------------------------------------

def test_interface_table_is_capped_and_the_excess_reported_once(tmp_path: Path) -> None:
    path = SHAPES["many-interfaces"](tmp_path, 1.0)
    tracemalloc.start()
    try:
        with CaptureReader(path) as r:
            recs = list(r)
            table = len(r._ifaces)
            kinds = len(r._iface_ids)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table == MAX_INTERFACES and kinds == 1        # 65,536 slots, one tuple shared
    assert peak < 4 << 20, peak
    packets = len(conversation())
    assert [x.record_no for x in recs] == list(range(1, packets + 1))
    details = [p.detail.split(": ", 1)[1] for p in r.problems]
    assert details == [
        f"record {packets + 1} names interface {MAX_INTERFACES + OVER_CAP - 1} but only {MAX_INTERFACES} "
        "are described; record skipped",
        f"{OVER_CAP} interface description blocks beyond the limit of {MAX_INTERFACES} per section "
        "ignored; packets naming them are skipped"]
    a = analyzer.analyze(path)
    assert ws_text_frames(a) == list(range(6, 6 + FRAMES))


# --- item 21: nothing readable is an error; damage after records is a row ------------------------

@pytest.mark.parametrize(("shape", "says"), [
    ("first-record-caplen-2g", "caplen-2g.pcap: nothing readable: record 1 header claims caplen=2147483647"),
    ("truncated-pcapng", "truncated.pcapng: nothing readable: file ends inside a pcapng block "
                         "(type=0x00000006) before any record"),
])
def test_nothing_readable_is_one_capture_error(tmp_path: Path, shape: str, says: str) -> None:
    path = SHAPES[shape](tmp_path, 1.0)
    with pytest.raises(CaptureError) as info:
        analyzer.analyze(path)
    assert str(info.value).startswith(says) and "\n" not in str(info.value)
    cli = run_cli("frames", path)
    assert cli.returncode == 2
    assert cli.stdout == ""
    lines = cli.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0]


def test_damage_after_records_is_a_row_not_an_error(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pcap"
    write_pcap(whole, conversation())
    data = whole.read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data + (2**31 - 1).to_bytes(4, "little") * 4)        # a record header claiming 2 GiB
    a = analyzer.analyze(path)
    assert ws_text_frames(a) == list(range(6, 6 + FRAMES))
    rows = a.problems[a.problems["kind"] == "capture-unreadable"]
    assert len(rows) == 1 and "caplen=2147483647" in rows.iloc[0]["detail"]


# --- item 22: no scapy line on stderr; one-line errors -------------------------------------------

def test_bad_section_header_is_one_line_and_no_scapy_warning(tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    path = SHAPES["bad-section-header"](tmp_path, 1.0)
    with pytest.raises(CaptureError, match=r"^bad-shb\.pcapng: pcapng section header block has no "
                                           r"byte-order magic \(found 01 02 03 04\): corrupt$"):
        analyzer.analyze(path)
    assert capfd.readouterr().err == ""
    cli = run_cli("summary", path)
    assert cli.returncode == 2
    assert len(cli.stderr.splitlines()) == 1 and "WARNING" not in cli.stderr, cli.stderr


@pytest.mark.parametrize("damage", ["bom", "version", "length"])
def test_every_section_header_defect_is_quiet(tmp_path: Path, damage: str) -> None:
    shb = bytearray(SHAPES["bad-section-header"](tmp_path, 1.0).read_bytes()[:28])
    shb[8:12] = b"\x4d\x3c\x2b\x1a"
    if damage == "bom":
        shb[8:12] = b"\xff\xff\xff\xff"
    elif damage == "version":
        shb[12:14] = b"\x09\x00"
    else:
        shb[4:8] = (13).to_bytes(4, "little")
    path = tmp_path / f"{damage}.pcapng"
    path.write_bytes(bytes(shb))
    # scapy's logger does not propagate to the root: listen on it directly
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    scapy_logger = logging.getLogger("scapy")
    scapy_logger.addHandler(handler)
    try:
        with pytest.raises(CaptureError) as info:
            CaptureReader(path)
    finally:
        scapy_logger.removeHandler(handler)
    assert str(info.value).startswith(f"{damage}.pcapng: pcapng section header block")
    assert seen == []


def test_capture_error_is_one_line_even_for_a_name_with_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines\x1b[2J.pcap"
    path.write_bytes(b"not a capture at all")
    with pytest.raises(CaptureError) as info:
        analyzer.analyze(path)
    text = str(info.value)
    assert "\n" not in text and "\x1b" not in text
    assert text.startswith("two lines\\x1b[2J.pcap: not a pcap or pcapng file")


# --- item 4: FIFOs and other files that are not files ---------------------------------------------

def run_cli(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT, cwd=ROOT, check=False)


def analyze_in_subprocess(path: Path) -> subprocess.CompletedProcess[str]:
    """analyze() in a child process: a hang becomes TimeoutExpired (a failure), not a stuck suite."""
    code = ("import sys, analyzer\n"
            "try:\n"
            "    a = analyzer.analyze(sys.argv[1], jobs=1)\n"
            "except analyzer.CaptureError as exc:\n"
            "    print('CaptureError:', exc)\n"
            "else:\n"
            "    print('frames', (a.frames['opcode'] == 1).sum())\n")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, cwd=ROOT, check=False)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_with_no_writer_is_an_error_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "capture.pcap"
    os.mkfifo(fifo)
    out = analyze_in_subprocess(fifo)
    assert out.stdout.strip() == ("CaptureError: capture.pcap: a pipe nothing was written to (no writer), "
                                  "not a capture"), out
    cli = run_cli("summary", fifo)
    assert cli.returncode == 2 and len(cli.stderr.splitlines()) == 1 and "no writer" in cli.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("compressed", [False, True])
def test_fifo_with_a_writer_is_read_as_a_stream(tmp_path: Path, compressed: bool) -> None:
    """As `ws-analyzer summary <(zcat x.pcap.gz)` does: a pipe, read once, never seeked."""
    source = tmp_path / "source.pcap"
    # an ARP packet of 200 KB of random bytes after the conversation: more than a pipe holds, so
    # the writer's last write returns only once the reader has opened the FIFO and is draining it
    arp = b"\xff" * 6 + b"\x02" + b"\x00" * 5 + b"\x08\x06" + os.urandom(200_000)
    write_pcap(source, [*conversation(), (1_700_000_001.0, arp)])
    data = source.read_bytes()
    if compressed:
        data = gzip.compress(data)
    assert len(data) > 2 * 65536
    fifo = tmp_path / "stream.pcap"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)      # a writer from now on (O_RDWR never blocks on Linux)

    def write() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]    # blocks while the pipe is full
        finally:
            os.close(fd)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    out = analyze_in_subprocess(fifo)
    writer.join(SUBPROCESS_TIMEOUT)
    assert out.stdout.strip() == f"frames {FRAMES}", out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="poll() on a FIFO as Linux does it")
def test_fifo_whose_writer_comes_after_the_reader_opened(tmp_path: Path) -> None:
    """`mkfifo f; ws-analyzer summary f & cat x.pcap > f`: the writer opens once the reader has."""
    source = tmp_path / "source.pcap"
    write_pcap(source, conversation())
    fifo = tmp_path / "late.pcap"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as f:    # blocks until the reader has opened the FIFO
            f.write(source.read_bytes())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    out = analyze_in_subprocess(fifo)
    writer.join(SUBPROCESS_TIMEOUT)
    assert out.stdout.strip() == f"frames {FRAMES}", out


def test_devices_and_sockets_are_refused_unopened(tmp_path: Path) -> None:
    if os.path.exists("/dev/null"):
        with pytest.raises(CaptureError, match=r"^null: is a character device, not a capture file$"):
            analyzer.analyze("/dev/null")
    if hasattr(socket, "AF_UNIX"):
        path = tmp_path / "s.pcap"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(path))
            with pytest.raises(CaptureError, match=r"^s\.pcap: is a socket, not a capture file$"):
                analyzer.analyze(path)
