"""Ring-buffer files read as one capture (issue 18): analyzer.ring, analyze(ring=...), --ring.

The real sets in captures/ring/ were cut by tcpdump -G, tcpdump -C and dumpcap -b while long-lived
WebSocket connections ran across the cuts (captures/make_ring.py); read as a ring they must give
what the same files merged by `mergecap -a` give, and what the senders logged. Crafted files
(tests/pcapgen.py) give the gaps, overlaps, missing files and link type changes.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pandas as pd
import pytest

import analyzer
import analyzer.api
from analyzer.capture import CaptureError, CaptureReader
from analyzer.ring import GAP_NS, RingReader, reading_order, ring_files, ring_name
from tests.pcapgen import Conversation, close_payload, frame, upgrade_request, upgrade_response, write_pcap

RING = Path(__file__).resolve().parent.parent / "captures" / "ring"
SETS = ["tcpdump_G", "tcpdump_C", "dumpcap_b"]
RING_KINDS = {"capture-gap", "capture-overlap", "capture-file-missing", "capture-linktype-change"}
TABLES = ("frames", "messages", "connections", "problems")


def _set(name: str) -> tuple[dict, list[str]]:
    exp = json.loads((RING / f"{name}.expected.json").read_text())
    return exp, [str(RING / name / f) for f in exp["files"]]


def _records(path: str) -> tuple[int, int | None, int | None]:
    """(records numbered, first ts, last ts) of one file, read alone."""
    first = None
    with CaptureReader(path) as reader:
        for record in reader:
            if first is None:
                first = record.ts_ns
        return reader.next_record_no - 1, first, reader.last_ts_ns


def _tshark_frames(path: Path, server_port: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("ring_tshark_frames", RING.parent / "tshark_frames.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frames: list[dict] = module.tshark_frames(path, [server_port])
    return frames


def _without_capture(a: analyzer.Analysis, table: str) -> pd.DataFrame:
    return getattr(a, table).drop(columns="capture")


# --- the real rotated captures -----------------------------------------------------------------

@pytest.mark.parametrize("name", SETS)
def test_real_ring_equals_mergecap(tmp_path, name):
    """The ring, given in any order, gives the tables of the files merged by `mergecap -a` (in the
    order of their first records), but for the capture name; no ring problem on these files."""
    if shutil.which("mergecap") is None:
        pytest.skip("mergecap (wireshark) is not installed")
    _, files = _set(name)
    order = reading_order(files)
    # the order is by first record time: the names say the same (the empty tcpdump -G file, a
    # header only, goes last)
    starts = [_records(p)[1] for p in order]
    known = [t for t in starts if t is not None]
    assert known == sorted(known) and starts[len(known):] == [None] * (len(starts) - len(known))
    merged = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-a", "-w", str(merged), *order], check=True)
    ring = analyzer.analyze(list(reversed(files)), ring=True, jobs=1, payloads=True)
    whole = analyzer.analyze(merged, jobs=1, payloads=True)
    for table in TABLES:
        pd.testing.assert_frame_equal(_without_capture(ring, table), _without_capture(whole, table),
                                      check_exact=True)
    assert set(ring.problems.kind) & RING_KINDS == set()
    assert ring.captures[0].name == ring_name(order) == f"{os.path.basename(order[0])}+{len(files) - 1}"
    assert set(ring.frames.capture) == {ring_name(order)}
    assert ring.captures[0].files == tuple(order)
    assert ring.captures[0].packets == whole.captures[0].packets
    assert list(ring.frames.frame_no) == sorted(ring.frames.frame_no)
    # tshark, the reference, on the merged file: the same frames at the same record numbers
    if shutil.which("tshark") is not None:
        server_port = int(ring.connections.server_port.iloc[0])
        port = dict(zip(ring.connections.conn_id, ring.connections.client_port))
        ours = [(int(f.frame_no), int(port[f.conn_id]), f.sender, int(f.opcode), bool(f.fin),
                 int(f.payload_len)) for f in ring.frames.itertuples()]
        theirs = [(f["frame_no"], f["client_port"], f["sender"], f["opcode"], bool(f["fin"]),
                   f["payload_len"]) for f in _tshark_frames(merged, server_port)]
        assert ours == theirs


@pytest.mark.parametrize("name", SETS)
def test_real_ring_has_every_message_the_senders_sent(name):
    """Every message each program sent, in order, byte for byte (sha256) after inflating: the
    deflate context, the fragments and the frames carried on from file to file."""
    exp, files = _set(name)
    a = analyzer.analyze(files, ring=True, jobs=1, payloads=True)
    port = dict(zip(a.connections.conn_id, a.connections.client_port))
    got = [(port[m.conn_id], m.sender, m.type, m.size, hashlib.sha256(m.payload).hexdigest())
           for m in a.messages.itertuples()]
    want = [(m["client_port"], m["sender"], m["type"], m["size"], m["sha256"]) for m in exp["messages"]]
    assert sorted(got) == sorted(want)
    for side in {w[:2] for w in want}:      # and in the order each side of each connection sent them
        assert [g for g in got if g[:2] == side] == [w for w in want if w[:2] == side]
    conns = a.connections.set_index("client_port")
    for c in exp["connections"]:
        row = conns.loc[c["client_port"]]
        assert row.handshake_ok and (str(row.compression) == "permessage-deflate") == c["compression"]
        assert row.close_status == c["close_status"]
        assert (pd.isna(row.close_code_client) and c["close_code_client"] is None) \
            or row.close_code_client == c["close_code_client"]
    # the chat connection spans the files: its handshake is in the first file with records,
    # its close in the last; it negotiated permessage-deflate and has compressed frames
    chat = a.connections[a.connections.path == "/chat"].iloc[0]
    frames = a.frames[a.frames.conn_id == chat.conn_id]
    counts = [_records(p)[0] for p in reading_order(files)]
    ends = [sum(counts[:i + 1]) for i in range(len(counts))]
    spanned = {bisect.bisect_left(ends, n) for n in frames.frame_no}
    assert len(spanned) >= 2 and chat.compression and frames.compressed.any()
    assert a.problems.empty, a.problems
    assert len(a.frames[(a.frames.opcode == 0)]) >= 1      # the fragmented text's continuation


@pytest.mark.parametrize("name", SETS)
def test_without_ring_later_files_lose_their_handshake(name):
    """Read one by one, a file loses every frame of a connection whose handshake is in an earlier
    file: exactly the frames the ring adds (nothing else differs)."""
    _, files = _set(name)
    order = list(reading_order(files))
    ring = analyzer.analyze(files, ring=True, jobs=1)
    apart = analyzer.analyze(order, ring=False, jobs=1)
    assert len(apart.captures) == len(files)
    stats = [_records(p) for p in order]
    offsets = dict(zip((os.path.basename(p) for p in order),
                       [sum(s[0] for s in stats[:i]) for i in range(len(stats))]))
    ends = [sum(s[0] for s in stats[:i + 1]) for i in range(len(stats))]
    firsts = [s[1] for s in stats]

    def file_of_frame(no: int) -> int:
        return bisect.bisect_left(ends, no)

    def file_of_time(ts: pd.Timestamp) -> int:
        ns = ts.value
        return max(i for i, t in enumerate(firsts) if t is not None and t <= ns)

    def keyed(a: analyzer.Analysis, frame_no: pd.Series) -> set[tuple[int, int, int]]:
        port = dict(zip(zip(a.connections.capture, a.connections.conn_id), a.connections.client_port))
        return {(port[(c, i)], n, size) for c, i, n, size
                in zip(a.frames.capture, a.frames.conn_id, frame_no, a.frames.payload_len)}

    apart_frames = keyed(apart, apart.frames.frame_no + apart.frames.capture.astype(object).map(offsets))
    start_file = {c.client_port: file_of_time(c.start) for c in ring.connections.itertuples()}
    ring_frames = keyed(ring, ring.frames.frame_no)
    same_file = {f for f in ring_frames if file_of_frame(f[1]) == start_file[f[0]]}
    assert apart_frames == same_file
    lost = ring_frames - apart_frames
    assert lost, "the ring must add the frames of connections that cross a file boundary"
    compressed = ring.frames[ring.frames.compressed]
    assert any(file_of_frame(n) != start_file[p] for n, p in zip(
        compressed.frame_no, compressed.conn_id.map(dict(zip(ring.connections.conn_id,
                                                             ring.connections.client_port)))))


def test_ring_on_two_processes_is_the_same(monkeypatch):
    """jobs=2: both processes read the chained records and keep their own connections (the paths
    relative: the worker runs elsewhere)."""
    exp, _ = _set("tcpdump_C")
    monkeypatch.chdir(RING)
    files = [f"tcpdump_C/{f}" for f in exp["files"]]
    one = analyzer.analyze(files, ring=True, jobs=1, payloads=True)
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    calls = []
    real = analyzer.api._run_worker
    monkeypatch.setattr(analyzer.api, "_run_worker", lambda *a, **k: calls.append(a) or real(*a, **k))
    two = analyzer.analyze(files, ring=True, jobs=2, payloads=True)
    assert calls, "a worker process analysed a shard"
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(one, table), getattr(two, table), check_exact=True)
    assert one.captures == two.captures


def test_names_auto_detect_a_ring(tmp_path):
    """ring=None: the dumpcap and tcpdump -C names are one capture; ring=False keeps them apart."""
    _, files = _set("dumpcap_b")
    auto = analyzer.analyze(files, jobs=1)
    assert [c.name for c in auto.captures] == [ring_name(reading_order(files))]
    assert len(analyzer.analyze(files, jobs=1, ring=False).captures) == len(files)
    _, files = _set("tcpdump_G")      # strftime names: not guessed
    assert len(analyzer.analyze(files, jobs=1).captures) == len(files)


# --- crafted files ----------------------------------------------------------------------------

def _deflate(compressor, text: bytes) -> bytes:
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def _conversation(parts: int = 3) -> list[list[tuple[float, bytes]]]:
    """One permessage-deflate WebSocket (context takeover: each message refers to the ones
    before) cut into `parts` lists of packets: handshake in the first, messages in each, close in
    the last."""
    conv = Conversation(client_port=50123)
    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    conv.handshake()
    conv.send(0, upgrade_request(extra=ext))
    conv.send(1, upgrade_response(extra=ext))
    compressor = zlib.compressobj(wbits=-15)
    cuts = [len(conv.packets)]
    for i in range(parts):
        for k in range(2):
            text = f"message {i}.{k}: the same words again and again, the same words".encode()
            conv.send(1, frame(1, _deflate(compressor, text), rsv=4))
            conv.send(0, frame(1, text, mask=b"\x01\x02\x03\x04"))
        cuts.append(len(conv.packets))
    conv.send(0, frame(8, close_payload(1000, "bye"), mask=b"abcd"))
    conv.send(1, frame(8, close_payload(1000, "bye")))
    conv.fin(0)
    conv.fin(1)
    cuts[-1] = len(conv.packets)
    return [conv.packets[a:b] for a, b in zip([0, *cuts[1:-1]], cuts[1:])]


def _shift(packets: list[tuple[float, bytes]], seconds: float) -> list[tuple[float, bytes]]:
    return [(t + seconds, p) for t, p in packets]


def _write(tmp_path: Path, names: list[str], parts: list[list[tuple[float, bytes]]],
           linktypes: list[int] | None = None) -> list[str]:
    paths = []
    for i, (name, packets) in enumerate(zip(names, parts)):
        lt = linktypes[i] if linktypes else 1
        if lt == 101:       # raw IP: the Ethernet header cut off
            packets = [(t, p[14:]) for t, p in packets]
        write_pcap(tmp_path / name, packets, linktype=lt)
        paths.append(str(tmp_path / name))
    return paths


def _check_whole(a: analyzer.Analysis) -> None:
    """The conversation understood from end to end: 12 messages inflated, closed cleanly."""
    assert len(a.connections) == 1
    c = a.connections.iloc[0]
    assert c.compression and c.close_status == "clean" and c.close_code == 1000
    assert len(a.messages) == 12
    server = a.messages[a.messages.sender == "server"]
    assert list(server.preview.str[:11]) == [f"message {i}.{k}" for i in range(3) for k in range(2)]
    assert not set(a.problems.kind) - RING_KINDS, a.problems


def test_crafted_ring_without_defects(tmp_path):
    parts = _conversation()
    files = _write(tmp_path, ["c_00001_20260101000000.pcap", "c_00002_20260101000001.pcap",
                              "c_00003_20260101000002.pcap"], parts)
    with RingReader(list(reversed(files))) as reader:
        numbers = [r.record_no for r in reader]
        assert reader.paths == files and not reader.ring_problems and not reader.problems
    assert numbers == list(range(1, sum(map(len, parts)) + 1))
    a = analyzer.analyze(files, jobs=1)
    _check_whole(a)
    assert a.problems.empty
    apart = analyzer.analyze(files, jobs=1, ring=False)
    # only the messages in the handshake's file
    assert len(apart.connections) == 1 and len(apart.messages) == 4


def test_gap_between_files(tmp_path):
    parts = _conversation()
    gap = GAP_NS / 1e9 + 30
    parts[1:] = [_shift(p, gap) for p in parts[1:]]
    files = _write(tmp_path, ["a-1.pcap", "a-2.pcap", "a-3.pcap"], parts)
    a = analyzer.analyze(files, ring=True, jobs=1)
    _check_whole(a)
    p = a.problems[a.problems.kind == "capture-gap"]
    assert len(p) == 1
    row = p.iloc[0]
    assert row.frame_no == len(parts[0]) + 1 and pd.isna(row.conn_id)
    assert row.ts == pd.Timestamp(_records(files[1])[1], tz="UTC")
    assert row.detail == (f"a-2.pcap: no record for {gap + 0.001:.6f} s after a-1.pcap ended: a file of "
                          "the ring may be missing (or the link was quiet)")
    # below the threshold, silence is not a gap
    parts = _conversation()
    parts[1:] = [_shift(p, GAP_NS / 1e9 - 1) for p in parts[1:]]
    quiet = analyzer.analyze(_write(tmp_path, ["b-1.pcap", "b-2.pcap", "b-3.pcap"], parts), ring=True, jobs=1)
    assert quiet.problems.empty


def test_overlap_between_files(tmp_path):
    """A file that starts before the previous ended is read after it (mergecap -a), and said so."""
    parts = _conversation()
    parts[1:] = [_shift(p, -0.0015) for p in parts[1:]]     # packets are 1 ms apart
    files = _write(tmp_path, ["o-1.pcap", "o-2.pcap", "o-3.pcap"], parts)
    a = analyzer.analyze(files, ring=True, jobs=1)
    _check_whole(a)
    p = a.problems[a.problems.kind == "capture-overlap"]
    assert len(p) == 1 and p.iloc[0].frame_no == len(parts[0]) + 1
    assert "o-2.pcap: starts 0.000500 s before o-1.pcap ended" in p.iloc[0].detail


def test_missing_numbered_file(tmp_path):
    parts = _conversation()
    files = _write(tmp_path, ["r_00001_20260101000000.pcap", "r_00002_20260101000001.pcap",
                              "r_00004_20260101000003.pcap"], parts)
    a = analyzer.analyze(files, jobs=1)           # recognised by the names
    p = a.problems[a.problems.kind == "capture-file-missing"]
    assert len(p) == 1 and "file number 3 of the ring missing" in p.iloc[0].detail
    assert p.iloc[0].frame_no == len(parts[0]) + len(parts[1]) + 1
    files = _write(tmp_path, ["t.pcap", "t.pcap3", "t.pcap4"], parts)      # tcpdump -C
    p = analyzer.analyze(files, jobs=1).problems
    assert list(p.kind) == ["capture-file-missing"] and "file numbers 1 to 2" in p.iloc[0].detail


def test_link_type_change_and_mixed_formats(tmp_path):
    """One file raw IP, one gzipped, one pcapng: read as one; the link type change is a row."""
    parts = _conversation()
    files = _write(tmp_path, ["m1.pcap", "m2.pcap", "m3.pcap"], parts, linktypes=[1, 101, 1])
    with open(files[1], "rb") as src, gzip.open(files[1] + ".gz", "wb") as dst:
        dst.write(src.read())
    if shutil.which("editcap") is None:
        pytest.skip("editcap (wireshark) is not installed")
    subprocess.run(["editcap", "-F", "pcapng", files[2], files[2] + "ng"], check=True)
    a = analyzer.analyze([files[0], files[1] + ".gz", files[2] + "ng"], ring=True, jobs=1)
    _check_whole(a)
    p = a.problems[a.problems.kind == "capture-linktype-change"]
    assert list(p.frame_no) == [len(parts[0]) + 1, len(parts[0]) + len(parts[1]) + 1]
    assert "link type 101 after m1.pcap's 1" in p.iloc[0].detail


def test_empty_file_and_bad_files(tmp_path):
    parts = _conversation()
    files = _write(tmp_path, ["e-1.pcap", "e-2.pcap", "e-3.pcap", "e-0.pcap"], [*parts, []])
    a = analyzer.analyze(files, ring=True, jobs=1)      # a header-only file (tcpdump -G's first)
    _check_whole(a)
    assert a.problems.empty and a.captures[0].name == "e-1.pcap+3"
    (tmp_path / "notes.txt").write_text("not a capture\n")
    with pytest.raises(CaptureError, match=r"notes\.txt: not a pcap or pcapng file"):
        analyzer.analyze([*files, str(tmp_path / "notes.txt")], ring=True, jobs=1)
    with pytest.raises(CaptureError, match="standard input"):
        analyzer.analyze([files[0], "-"], ring=True, jobs=1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CaptureError, match="fifo: a ring-buffer file must be a regular file"):
        analyzer.analyze([files[0], str(fifo)], ring=True, jobs=1)
    with pytest.raises(CaptureError, match=r"missing\.pcap: no such file"):
        analyzer.analyze([files[0], str(tmp_path / "missing.pcap")], ring=True, jobs=1)


def test_truncated_file_in_the_middle(tmp_path):
    """A file cut mid-record is a problem of that file; the next file is still read."""
    parts = _conversation()
    files = _write(tmp_path, ["x-1.pcap", "x-2.pcap", "x-3.pcap"], parts)
    data = Path(files[1]).read_bytes()
    Path(files[1]).write_bytes(data[:-10])
    a = analyzer.analyze(files, ring=True, jobs=1)
    p = a.problems[a.problems.kind == "capture-truncated"]
    assert len(p) == 1 and p.iloc[0].detail.startswith("x-2.pcap: file ends inside record")
    assert len(a.messages[a.messages.sender == "server"]) == 6      # file 3's messages too


def test_pcapng_secrets_of_every_file_and_progress(tmp_path):
    """Each file's Decryption Secrets Blocks reach on_secrets; position() ends at the total size."""
    injected = str(Path(__file__).resolve().parent.parent / "captures" / "wss_injected.pcapng")
    files = _write(tmp_path, ["s-1.pcap"], [_shift(_conversation(1)[0], -1e6)])
    secrets: list[bytes] = []
    with RingReader([injected, files[0]], on_secrets=secrets.append) as reader:
        assert reader.paths == [files[0], injected]
        sizes = []
        for _ in reader:
            sizes.append(reader.position())
        assert sizes[-1] == reader.size == os.path.getsize(files[0]) + os.path.getsize(injected)
    assert len(secrets) == 1 and b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in secrets[0]
    a = analyzer.analyze([files[0], injected], ring=True, jobs=1)
    assert a.connections.decrypted.fillna(False).astype(bool).any()


def test_ring_files_names():
    assert ring_files(["d/r_00001_20261129203939.pcapng", "d/r_00002_20261129203943.pcapng"])
    assert ring_files(["r.pcap.gz", "r.pcap1.gz", "r.pcap2"])      # tcpdump -C, -z gzip
    assert ring_files(["r.pcap0", "r.pcap1"])                       # tcpdump -C -W 2
    assert not ring_files(["r_00001_20261129203939.pcapng"])        # one file
    assert not ring_files(["a_00001_20261129203939.pcapng", "b_00002_20261129203943.pcapng"])
    assert not ring_files(["x/r_00001_20261129203939.pcapng", "y/r_00002_20261129203943.pcapng"])
    assert not ring_files(["r_00001_20261129203939.pcapng", "r_00001_20261129203939.pcapng"])
    assert not ring_files(["r-1795984757.pcap", "r-1795984758.pcap"])     # tcpdump -G: strftime
    assert not ring_files(["a.pcap", "b.pcap"]) and not ring_files(["r.pcap", "r.txt1"])


def test_cli_ring_option(tmp_path, capsys):
    from analyzer.cli import main

    files = _write(tmp_path, ["k-1.pcap", "k-2.pcap", "k-3.pcap"], _conversation())
    assert main(["messages", "-q", "--ring", "-T", "csv", "-e", "frame", "-e", "size", *files]) == 0
    ring_lines = capsys.readouterr().out.splitlines()
    assert len(ring_lines) == 1 + 12
    assert main(["messages", "-q", "--no-ring", "-T", "csv", "-e", "frame", "-e", "size", *files]) == 0
    apart_lines = capsys.readouterr().out.splitlines()
    assert apart_lines == ring_lines[:5]            # the first file's four messages only
    assert main(["messages", "-q", "-T", "csv", "-e", "frame", "-e", "size", *files]) == 0
    assert capsys.readouterr().out.splitlines() == apart_lines      # -G style names: not guessed
