"""capture.py: pcap / pcapng / gzip files → PacketRecord, built byte by byte in the tests."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.capture import MAX_RECORD_BYTES, CaptureError, CaptureReader
from analyzer.events import PacketRecord
from analyzer.protocol import ProblemKind

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import pcapgen_link as g

DATA = Path(__file__).parent / "data"
LOOPBACK_LARGE = DATA / "loopback_large.pcap"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def read_all(path: Path, **kw: int) -> tuple[list[PacketRecord], CaptureReader]:
    with CaptureReader(path, **kw) as r:
        recs = list(r)
    return recs, r


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(256)) * (n // 256) + bytes(range(n % 256))


# --- pcap --------------------------------------------------------------------------------------

@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, endian: str, nano: bool) -> None:
    frac1 = 123_456_789 if nano else 123_456
    recs_in = [(1_700_000_000, frac1, b"\x01" * 60), (1_700_000_001, 7, b"\x02" * 1514, 1600)]
    p = write(tmp_path, "a.pcap", g.pcap_file(1, recs_in, endian=endian, nano=nano))
    recs, r = read_all(p)
    assert [x.record_no for x in recs] == [1, 2]
    mult = 1 if nano else 1000
    assert recs[0].ts_ns == 1_700_000_000 * 10**9 + frac1 * mult
    assert recs[1].ts_ns == 1_700_000_001 * 10**9 + 7 * mult
    assert all(x.linktype == 1 for x in recs)
    assert (recs[0].caplen, recs[0].wirelen, recs[0].data) == (60, 60, b"\x01" * 60)
    assert (recs[1].caplen, recs[1].wirelen, recs[1].data) == (1514, 1600, b"\x02" * 1514)
    assert r.problems == []
    assert r.records_read == 2
    assert r.size == p.stat().st_size


def test_nanoseconds_are_exact_not_float(tmp_path: Path) -> None:
    # 2**53 ns is ~104 days: any float on the way would lose the last digits of this timestamp.
    p = write(tmp_path, "ns.pcap", g.pcap_file(101, [(4_000_000_000, 999_999_999, b"\x45")], nano=True))
    (rec,), _ = read_all(p)
    assert rec.ts_ns == 4_000_000_000_999_999_999
    assert isinstance(rec.ts_ns, int)


def test_linktype_fcs_bits_are_masked(tmp_path: Path) -> None:
    lt = 1 | (1 << 26) | (4 << 28)           # Ethernet with "FCS present, 4 bytes" bits
    p = write(tmp_path, "fcs.pcap", g.pcap_file(lt, [(1, 0, b"x" * 64)]))
    (rec,), _ = read_all(p)
    assert rec.linktype == 1


def test_first_record_no_and_capture_order_kept(tmp_path: Path) -> None:
    # tcpdump on several CPUs writes records out of time order: they must stay in file order.
    recs_in = [(10, 0, b"a"), (9, 0, b"b"), (11, 0, b"c")]
    p = write(tmp_path, "order.pcap", g.pcap_file(1, recs_in))
    recs, _ = read_all(p, first_record_no=100)
    assert [(x.record_no, x.ts_ns // 10**9, x.data) for x in recs] == [
        (100, 10, b"a"), (101, 9, b"b"), (102, 11, b"c")]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("size", [65_535, 65_536, 65_549, 200_000, 300_000])
def test_pcap_large_records_arrive_whole(tmp_path: Path, endian: str, size: int) -> None:
    # scapy's RawPcapReader cuts at 65,535 by default and at 262,140 bytes at most.
    big = payload(size, seed=3)
    p = write(tmp_path, "big.pcap", g.pcap_file(0, [(1, 0, big), (2, 0, b"tail")], endian=endian))
    recs, r = read_all(p)
    assert len(recs) == 2
    assert recs[0].caplen == recs[0].wirelen == len(recs[0].data) == size
    assert recs[0].data == big
    assert recs[1].data == b"tail"
    assert r.problems == []


# --- pcapng ------------------------------------------------------------------------------------

def two_interface_pcapng(endian: str = "<") -> bytes:
    """Interface 0: Ethernet, if_tsresol 10^-9. Interface 1: SLL, if_tsresol 2^-20, if_tsoffset 100 s.
    Interface 2: raw IP, default microseconds. NRB/ISB blocks between the packets."""
    e = endian
    return b"".join([
        g.ng_shb(e),
        g.ng_idb(1, snaplen=262144, tsresol=9, name=b"eth0", endian=e),
        g.ng_nrb(e),
        g.ng_idb(113, tsresol=0x80 | 20, tsoffset=100, endian=e),
        g.ng_epb(0, 1_700_000_000_123_456_789, b"\xaa" * 61, endian=e, comment=b"first"),
        g.ng_isb(0, 5, e),
        g.ng_epb(1, (3 << 20) | 1, b"\xbb" * 70, wirelen=90, endian=e),
        g.ng_idb(101, endian=e),
        g.ng_epb(2, 1_700_000_000_000_001, b"\x45" * 20, endian=e),
        g.ng_epb(0, 5, payload(65_549), endian=e),
    ])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_interfaces_linktypes_and_resolutions(tmp_path: Path, endian: str) -> None:
    p = write(tmp_path, "two.pcapng", two_interface_pcapng(endian))
    recs, r = read_all(p)
    assert r.problems == []
    assert [x.record_no for x in recs] == [1, 2, 3, 4]       # NRB/ISB/IDB are not numbered
    assert [x.linktype for x in recs] == [1, 113, 101, 1]
    assert recs[0].ts_ns == 1_700_000_000_123_456_789
    # 3 s + 1/2^20 s = 3.000000953674… s, floored to the nanosecond, plus the 100 s offset
    assert recs[1].ts_ns == 103_000_000_953
    assert recs[2].ts_ns == 1_700_000_000_000_001_000
    assert (recs[1].caplen, recs[1].wirelen, recs[1].data) == (70, 90, b"\xbb" * 70)
    assert recs[0].data == b"\xaa" * 61                       # padding bytes not included
    assert recs[3].caplen == len(recs[3].data) == 65_549
    assert recs[3].data == payload(65_549)


@pytest.mark.parametrize("size", [65_549, 200_000, 300_000])
def test_pcapng_large_records_arrive_whole(tmp_path: Path, size: int) -> None:
    big = payload(size, seed=9)
    data = g.ng_shb() + g.ng_idb(0) + g.ng_epb(0, 1, big) + g.ng_epb(0, 2, b"next")
    recs, r = read_all(write(tmp_path, "big.pcapng", data))
    assert [len(x.data) for x in recs] == [size, 4]
    assert recs[0].caplen == recs[0].wirelen == size
    assert recs[0].data == big
    assert r.problems == []


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path: Path) -> None:
    data = (g.ng_shb() + g.ng_idb(1, snaplen=64) + g.ng_pb(0, 2_000_000, b"p" * 40)
            + g.ng_spb(b"s" * 64, wirelen=100) + g.ng_epb(0, 3_000_000, b"e" * 10))
    recs, r = read_all(write(tmp_path, "spb.pcapng", data))
    assert r.problems == []
    assert [(x.record_no, x.data[:1], x.caplen, x.wirelen) for x in recs] == [
        (1, b"p", 40, 40), (2, b"s", 64, 100), (3, b"e", 10, 10)]
    assert recs[0].ts_ns == 2 * 10**9
    assert recs[1].ts_ns == recs[0].ts_ns                      # an SPB has no timestamp of its own
    assert recs[2].ts_ns == 3 * 10**9


def test_pcapng_second_section_resets_interfaces_and_byte_order(tmp_path: Path) -> None:
    data = (g.ng_shb("<") + g.ng_idb(1, endian="<") + g.ng_epb(0, 1, b"A" * 20, endian="<")
            + g.ng_shb(">") + g.ng_idb(276, tsresol=3, endian=">") + g.ng_epb(0, 7, b"B" * 30, endian=">"))
    recs, r = read_all(write(tmp_path, "sections.pcapng", data))
    assert r.problems == []
    assert [(x.record_no, x.linktype, x.ts_ns, x.data) for x in recs] == [
        (1, 1, 1000, b"A" * 20), (2, 276, 7_000_000, b"B" * 30)]


def test_pcapng_unknown_interface_id_is_reported_and_skipped(tmp_path: Path) -> None:
    data = g.ng_shb() + g.ng_idb(1) + g.ng_epb(5, 1, b"x" * 10) + g.ng_epb(0, 2, b"y" * 10)
    recs, r = read_all(write(tmp_path, "badif.pcapng", data))
    assert [(x.record_no, x.data) for x in recs] == [(2, b"y" * 10)]
    assert [p.kind for p in r.problems] == [ProblemKind.CAPTURE_UNREADABLE]
    assert r.problems[0].record_no == 1


def test_pcapng_malformed_interface_block(tmp_path: Path) -> None:
    data = g.ng_shb() + g.ng_block(1, b"\x01\x00") + g.ng_epb(0, 1, b"x" * 10)
    recs, r = read_all(write(tmp_path, "badidb.pcapng", data))
    assert [p.kind for p in r.problems] == [ProblemKind.CAPTURE_UNREADABLE]
    assert [(x.record_no, x.data) for x in recs] == [(1, b"x" * 10)]
    assert recs[0].linktype not in (0, 1)          # not mistaken for a real link type


# --- gzip --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_detected_by_magic_not_extension(tmp_path: Path, kind: str) -> None:
    if kind == "pcap":
        raw = g.pcap_file(1, [(1, 2, b"x" * 100), (3, 4, payload(65_549))], endian=">", nano=True)
    else:
        raw = two_interface_pcapng()
    plain_recs, _ = read_all(write(tmp_path, "plain.gz", raw))          # misleading extension
    gz = gzip.compress(raw)
    p = write(tmp_path, "compressed.pcap", gz)                          # misleading extension
    with CaptureReader(p) as r:
        recs = list(r)
        assert r.position() == len(gz) == r.size                        # compressed offset
    assert recs == plain_recs
    assert r.problems == []
    assert any(x.caplen == 65_549 for x in recs)


def test_gzip_truncated_keeps_records_and_reports(tmp_path: Path) -> None:
    raw = g.pcap_file(1, [(i, 0, payload(3000, i)) for i in range(200)])
    gz = gzip.compress(raw, compresslevel=1)
    p = write(tmp_path, "cut.pcap.gz", gz[: len(gz) * 2 // 3])
    recs, r = read_all(p)
    assert 50 < len(recs) < 200
    assert all(x.data == payload(3000, x.record_no - 1) for x in recs)
    assert len(r.problems) == 1
    assert r.problems[0].kind in (ProblemKind.CAPTURE_TRUNCATED, ProblemKind.CAPTURE_UNREADABLE)
    assert r.problems[0].record_no == recs[-1].record_no


def test_gzip_corrupt_midway_keeps_records_and_reports(tmp_path: Path) -> None:
    raw = g.pcap_file(1, [(i, 0, payload(3000, i)) for i in range(200)])
    gz = bytearray(gzip.compress(raw, compresslevel=1))
    mid = len(gz) // 2
    gz[mid:mid + 64] = bytes(64)                      # zeroed block inside the deflate stream
    recs, r = read_all(write(tmp_path, "corrupt.pcap.gz", bytes(gz)))
    assert 0 < len(recs) < 200
    # whatever was yielded is byte-exact (a CRC mismatch is only noticed at the end of the member)
    good = [x for x in recs if x.data == payload(3000, x.record_no - 1)]
    assert len(good) >= len(recs) - 2
    assert len(r.problems) == 1
    assert r.problems[0].kind in (ProblemKind.CAPTURE_UNREADABLE, ProblemKind.CAPTURE_TRUNCATED)


# --- bad input ---------------------------------------------------------------------------------

def test_not_a_capture(tmp_path: Path) -> None:
    p = write(tmp_path, "notes.txt", b"hello world\nthis is text\n")
    with pytest.raises(CaptureError) as ei:
        CaptureReader(p)
    msg = str(ei.value)
    assert msg == "notes.txt: not a pcap or pcapng file (starts with 'hello wo')"
    assert "\n" not in msg


def test_binary_garbage_and_gzipped_text(tmp_path: Path) -> None:
    with pytest.raises(CaptureError,
                       match=r"^junk\.bin: not a pcap or pcapng file \(starts with bytes 00 01"):
        CaptureReader(write(tmp_path, "junk.bin", bytes(range(16))))
    with pytest.raises(CaptureError, match=r"gzip-compressed file holds no pcap or pcapng"):
        CaptureReader(write(tmp_path, "text.gz", gzip.compress(b"just some text")))
    with pytest.raises(CaptureError, match=r"gzip stream is corrupt"):
        CaptureReader(write(tmp_path, "bad.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 40))


@pytest.mark.parametrize("case", ["empty", "directory", "missing", "short-header", "gzip-empty"])
def test_unreadable_files_raise_one_line(tmp_path: Path, case: str) -> None:
    if case == "empty":
        p = write(tmp_path, "empty.pcap", b"")
    elif case == "directory":
        p = tmp_path / "dir.pcap"
        p.mkdir()
    elif case == "missing":
        p = tmp_path / "missing.pcap"
    elif case == "short-header":
        p = write(tmp_path, "short.pcap", g.pcap_header(1)[:10])
    else:
        p = write(tmp_path, "e.pcap.gz", gzip.compress(b""))
    with pytest.raises(CaptureError) as ei:
        CaptureReader(p)
    msg = str(ei.value)
    assert msg.startswith(p.name + ": ")
    assert "\n" not in msg
    expected = {"empty": "empty", "directory": "directory", "missing": "no such file",
                "short-header": "cut short", "gzip-empty": "empty"}[case]
    assert expected in msg


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "secret.pcap", g.pcap_file(1, []))
    if os.geteuid() != 0:
        p.chmod(0)
    else:   # root reads anything: simulate the refusal where the file is opened
        import analyzer.capture as capture

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(p))
        monkeypatch.setattr(capture, "open", denied, raising=False)
    with pytest.raises(CaptureError, match=r"^secret\.pcap: permission denied$"):
        CaptureReader(p)


def test_kuznetzov_pcap_is_named(tmp_path: Path) -> None:
    hdr = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    with pytest.raises(CaptureError, match="Kuznetzov"):
        CaptureReader(write(tmp_path, "k.pcap", hdr))


@pytest.mark.parametrize("cut", [3, 16 + 10])
def test_pcap_truncated_mid_record(tmp_path: Path, cut: int) -> None:
    raw = g.pcap_file(1, [(5, 1, b"a" * 100), (6, 2, b"b" * 100), (7, 3, b"c" * 100)])
    p = write(tmp_path, "trunc.pcap", raw[:-(116 - cut)])          # cut inside the third record
    recs, r = read_all(p)
    assert [x.data[:1] for x in recs] == [b"a", b"b"]
    assert len(r.problems) == 1
    prob = r.problems[0]
    assert prob.kind is ProblemKind.CAPTURE_TRUNCATED
    assert prob.record_no == 2 and prob.ts_ns == 6 * 10**9 + 2000
    assert "trunc.pcap" in prob.detail


def test_pcapng_truncated_mid_block(tmp_path: Path) -> None:
    raw = g.ng_shb() + g.ng_idb(1) + g.ng_epb(0, 1, b"a" * 100) + g.ng_epb(0, 2, b"b" * 100)
    for cut in (1, 5, 30, 100):
        recs, r = read_all(write(tmp_path, f"t{cut}.pcapng", raw[:-cut]))
        assert [x.data for x in recs] == [b"a" * 100]
        assert [p.kind for p in r.problems] == [ProblemKind.CAPTURE_TRUNCATED]
        assert r.problems[0].record_no == 1


def test_absurd_caplen_is_not_allocated(tmp_path: Path) -> None:
    raw = g.pcap_file(1, [(1, 0, b"ok" * 30)]) + struct.pack("<IIII", 2, 0, 0xFFFFFFF0, 0xFFFFFFF0)
    raw += b"z" * 1000
    tracemalloc.start()
    try:
        recs, r = read_all(write(tmp_path, "absurd.pcap", raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert [x.data for x in recs] == [b"ok" * 30]
    assert [p.kind for p in r.problems] == [ProblemKind.CAPTURE_UNREADABLE]
    assert str(MAX_RECORD_BYTES) in r.problems[0].detail
    # the same in pcapng: a block length of ~4 GiB
    ng = g.ng_shb() + g.ng_idb(1) + g.ng_epb(0, 1, b"x" * 8) + struct.pack("<II", 6, 0xFFFFFF00) + b"y" * 64
    recs, r = read_all(write(tmp_path, "absurd.pcapng", ng))
    assert [x.data for x in recs] == [b"x" * 8]
    assert [p.kind for p in r.problems] == [ProblemKind.CAPTURE_UNREADABLE]
    # an EPB whose caplen overruns its own block
    bad = bytearray(g.ng_epb(0, 1, b"q" * 16))
    struct.pack_into("<I", bad, 8 + 12, 10_000)
    path = write(tmp_path, "overrun.pcapng", g.ng_shb() + g.ng_idb(1) + bytes(bad))
    with pytest.raises(CaptureError, match=r"^overrun\.pcapng: nothing readable: record 1: packet block "
                                           r"claims caplen=10000 beyond its block length"):
        read_all(path)                        # nothing before it: not a capture one can read


def test_absurd_section_header_length_is_an_error(tmp_path: Path) -> None:
    shb = bytearray(g.ng_shb())
    struct.pack_into("<I", shb, 4, 0xFFFFFF00)
    with pytest.raises(CaptureError, match="corrupt"):
        CaptureReader(write(tmp_path, "shb.pcapng", bytes(shb) + b"\x00" * 64))


def test_streaming_memory_is_constant(tmp_path: Path) -> None:
    n, size = 3000, 3000                        # a ~9 MB file read through with ~1 record in memory
    rec = g.pcap_record(1, 0, b"\x5a" * size)
    p = tmp_path / "stream.pcap"
    with open(p, "wb") as f:
        f.write(g.pcap_header(1))
        for _ in range(n):
            f.write(rec)
    tracemalloc.start()
    try:
        count = 0
        with CaptureReader(p) as r:
            last = 0
            for _ in r:
                count += 1
                pos = r.position()
                assert pos >= last
                last = pos
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == n
    assert last == p.stat().st_size
    assert peak < 1024 * 1024


def test_iterates_once_and_closes(tmp_path: Path) -> None:
    p = write(tmp_path, "once.pcap", g.pcap_file(1, [(1, 0, b"x")]))
    r = CaptureReader(p)
    assert len(list(r)) == 1
    with pytest.raises(RuntimeError):
        iter(r)
    r.close()
    r.close()
    assert r.position() == r.size


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=400), ng=st.booleans())
def test_garbage_after_header_gives_records_and_problems(tmp_path: Path, tail: bytes, ng: bool) -> None:
    """Garbage after a good file header: records and problems, or one CaptureError line when
    reading stopped on damage before any record was numbered."""
    head = g.ng_shb() + g.ng_idb(1) if ng else g.pcap_header(1)
    p = write(tmp_path, "fuzz.pcapng" if ng else "fuzz.pcap", head + tail)
    with CaptureReader(p) as r:
        try:
            recs = list(r)
        except CaptureError as exc:
            assert "\n" not in str(exc) and "nothing readable" in str(exc)
            assert r._next_no == 1 and r.records_read == 0
            return
    for x in recs:
        assert isinstance(x, PacketRecord)
        assert len(x.data) == x.caplen <= len(tail)
    assert len(r.problems) <= len(tail) + 1
    for prob in r.problems:
        assert prob.kind in (ProblemKind.CAPTURE_TRUNCATED, ProblemKind.CAPTURE_UNREADABLE)


# --- a real capture ----------------------------------------------------------------------------

def test_real_loopback_capture_has_whole_large_records() -> None:
    recs, r = read_all(LOOPBACK_LARGE)
    assert r.problems == []
    assert LOOPBACK_LARGE.stat().st_size < 2 * 1024 * 1024
    large = [x for x in recs if x.caplen > 65_535]
    assert large, "the capture must hold a record over 65,535 bytes"
    for x in large:
        assert x.linktype == 1
        assert len(x.data) == x.caplen == x.wirelen
        assert x.caplen == 65_549                     # 14-byte Ethernet + a 65,535-byte IP datagram
        assert struct.unpack_from("!H", x.data, 16)[0] == 65_535
    times = [x.ts_ns for x in recs]
    assert times[0] > 1_600_000_000 * 10**9


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_real_loopback_capture_matches_tshark() -> None:
    out = subprocess.run(
        ["tshark", "-r", str(LOOPBACK_LARGE), "-T", "fields", "-e", "frame.number", "-e", "frame.cap_len",
         "-e", "frame.len", "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [line.split("\t") for line in out.splitlines() if line]
    recs, _ = read_all(LOOPBACK_LARGE)
    assert [(x.record_no, x.caplen, x.wirelen) for x in recs] == [
        (int(a), int(b), int(c)) for a, b, c, _ in rows]
    assert [len(x.data) for x in recs] == [int(b) for _, b, _, _ in rows]
    for x, (*_, t) in zip(recs, rows):
        sec, frac = t.split(".")
        assert x.ts_ns == int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
    assert max(int(b) for _, b, _, _ in rows) > 65_535
