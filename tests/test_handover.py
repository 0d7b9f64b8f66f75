"""analyzer.handover: one capture on several processes, read once by the calling process, each
worker given its connections' segments through a pipe (issue 18).

The tables equal one process's; the worker never opens the capture; the times of the others'
segments, the TLS secrets of a pcapng and the segments themselves reach it in capture order;
the hand-over applies back-pressure; a worker that dies is one clear error, not a hang.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

import pandas as pd
import pytest

import analyzer
import analyzer.api
import analyzer.handover as handover
from analyzer.api import analyze_capture
from analyzer.events import Segment
from analyzer.handover import HandoverBroken, Receiver, Sender, SplitCapture
from analyzer.merge import merge_captures, tables_from_rows
from analyzer.websocket import Options
from tests.helpers.pcapgen_link import ng_epb
from tests.pcapgen import tcp_ipv4_packet

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
TABLES = ("connections", "frames", "messages", "problems")


def _equal(one: analyzer.Analysis, two: analyzer.Analysis) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name), check_exact=True)
    assert [(c.packets, c.tcp_connections, c.bytes) for c in one.captures] == \
        [(c.packets, c.tcp_connections, c.bytes) for c in two.captures]


@pytest.fixture
def streamed_tasks(monkeypatch):
    """Every capture is split (SHARD_MIN_BYTES 0); the tasks given to workers are collected, and
    each worker is told a path that does not exist: it must never need the file."""
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    tasks = []
    real = analyzer.api._run_worker

    def run(result_path, task, workers=None):
        tasks.append(dict(task))
        task["path"] = "/nonexistent/ws-analyzer-test.pcap"
        return real(result_path, task, workers)
    monkeypatch.setattr(analyzer.api, "_run_worker", run)
    return tasks


@pytest.mark.parametrize("capture", ["demo.pcapng", "incident.pcapng", "interleaved_9123.pcap",
                                     "ipv6.pcap", "any_interface_sll.pcap", "h2_node.pcap"])
def test_workers_given_segments_give_the_tables_of_one_process(streamed_tasks, capture):
    one = analyzer.analyze(CAPTURES / capture, jobs=1, payloads=True)
    for jobs in (2, 3):
        streamed_tasks.clear()
        many = analyzer.analyze(CAPTURES / capture, jobs=jobs, payloads=True)
        assert len(streamed_tasks) == jobs - 1 and all(t["stream"] for t in streamed_tasks)
        _equal(one, many)


def test_a_ring_read_once_gives_the_same_tables(streamed_tasks):
    files = sorted(str(p) for p in (CAPTURES / "ring" / "dumpcap_b").iterdir())
    one = analyzer.analyze(files, ring=True, jobs=1, payloads=True)
    two = analyzer.analyze(files, ring=True, jobs=2, payloads=True)
    assert streamed_tasks and streamed_tasks[0]["stream"]
    _equal(one, two)
    assert one.captures == two.captures


def test_a_key_log_reaches_the_worker(streamed_tasks):
    keylog = CAPTURES / "wss_tls13.keylog"
    one = analyzer.analyze(CAPTURES / "wss_tls13.pcap", keylog=keylog, jobs=1)
    two = analyzer.analyze(CAPTURES / "wss_tls13.pcap", keylog=keylog, jobs=2)
    assert streamed_tasks
    _equal(one, two)


def _run_split(path, shards: int = 2, options: Options | None = None):
    """shard 0 here, the others' streams written to files, then read back by Receivers in this
    process: (rows of every shard, bytes each worker was sent)."""
    options = options or Options()
    streams = tempfile.mkdtemp(prefix="ws-analyzer-streams-")    # never beside the capture (captures/)
    files = [open(os.path.join(streams, f"stream{k}"), "wb") for k in range(1, shards)]     # noqa: SIM115
    senders = [Sender() for _ in files]
    for sender, f in zip(senders, files):
        sender.attach(f)
    name = os.path.basename(path)
    rows = [analyze_capture(SplitCapture(str(path), senders), name, options, (0, shards))[0]]
    sizes = []
    for k, (sender, f) in enumerate(zip(senders, files), 1):
        sender.drain()
        sender.fail(RuntimeError("all sent"))
        f.close()
        sizes.append(os.path.getsize(f.name))
        fd = os.open(f.name, os.O_RDONLY)
        try:
            rows.append(analyze_capture(Receiver(fd, k, str(path), 1), name, options, (k, shards))[0])
        finally:
            os.close(fd)
    shutil.rmtree(streams, ignore_errors=True)
    return rows, sizes


def test_pcapng_secrets_reach_the_worker_that_owns_the_tls_connection(tmp_path):
    """wss_injected.pcapng carries its TLS keys in a Decryption Secrets Block. One SYN of another
    connection is put before its packets, so that process 0 owns that one and the worker the TLS
    connection: the worker decrypts it with the secrets the parent read and handed on."""
    data = (CAPTURES / "wss_injected.pcapng").read_bytes()
    off, blocks = 0, []
    while off < len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        blocks.append((btype, data[off:off + blen]))
        off += blen
    first_epb = next(i for i, (t, _) in enumerate(blocks) if t == 6)
    assert {t for t, _ in blocks[:first_epb]} == {0x0A0D0D0A, 0x0A, 1}       # SHB, DSB, IDB
    _, _, hi, lo = struct.unpack_from("<IIII", blocks[first_epb][1], 4)
    syn = ng_epb(0, ((hi << 32) | lo) - 1, tcp_ipv4_packet("10.9.9.9", "10.9.9.8", 1111, 2222, 7, 0, 0x02))
    path = tmp_path / "injected-after-a-syn.pcapng"
    path.write_bytes(b"".join(b for _, b in blocks[:first_epb]) + syn
                     + b"".join(b for _, b in blocks[first_epb:]))

    rows, _ = _run_split(path)          # (tables_from_rows takes the rows' columns: once each)
    shard0, worker = tables_from_rows([rows[0]]), tables_from_rows([rows[1]])
    assert len(shard0["connections"]) == 0 and len(worker["connections"]) == 1
    assert worker["connections"].decrypted.all() and len(worker["frames"]) == 12
    one = analyzer.analyze(path, jobs=1)
    both = merge_captures([tables_from_rows(_run_split(path)[0])], [path.name])
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(one, name), both[name], check_exact=True)


def test_three_shards_each_get_their_own_segments_and_everyone_s_times(tmp_path):
    rows, sizes = _run_split(CAPTURES / "demo.pcapng", shards=3, options=Options(payloads=True))
    assert all(r.tcp_connections for r in rows), "a shard was given nothing: nothing was compared"
    one = analyzer.analyze(CAPTURES / "demo.pcapng", jobs=1, payloads=True)
    both = merge_captures([tables_from_rows(rows)], ["demo.pcapng"])
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(one, name), both[name], check_exact=True)
    # each worker got its share of the payload, not the whole capture
    assert max(sizes) < 0.9 * os.path.getsize(CAPTURES / "demo.pcapng")


def _segments(rng: random.Random, n: int) -> list[Segment]:
    out = []
    for k in range(n):
        v6 = rng.random() < 0.3
        size = 16 if v6 else 4
        out.append(Segment(k + 1, rng.randrange(-2**40, 2**62), 6 if v6 else 4,
                           rng.choice([b"\x0a" * size, bytes(range(size))]), rng.randbytes(size),
                           rng.randrange(65536), rng.randrange(65536), rng.randrange(2**32),
                           rng.randrange(2**32), rng.randrange(256),
                           rng.randbytes(rng.choice([0, 1, 7, 1400, 70000])), rng.random() < 0.2))
    return out


def test_batches_carry_segments_times_and_secrets_exactly(tmp_path):
    """Encoded, sent through a real pipe and read back: the worker's items are its own segments
    (equal to the originals, field by field and type) and the others' times, in order, with each
    secret handed over before the item it preceded."""
    rng = random.Random(7)
    segments = _segments(rng, 3000)
    owners = bytes(rng.randrange(3) for _ in segments)
    ts = array("q", (s.ts_ns for s in segments))
    secrets = [(0, b"CLIENT_RANDOM a b\n"), (1500, b"CLIENT_RANDOM c d\n"), (3000, b"last\n")]
    read_fd, write_fd = os.pipe()
    sender = Sender()

    def send() -> None:
        sender.put(handover._encode(ts, owners, [s for s, o in zip(segments, owners) if o == 1], secrets))
        sender.put(handover._encode(array("q"), b"", [], []))     # an empty batch
        sender.put(None)
        sender.drain()
    with open(write_fd, "wb") as w:
        sender.attach(w)
        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        got: list[object] = []
        receiver = Receiver(read_fd, 1, "x.pcap", 0)
        receiver.on_secrets = lambda text: got.append(text)
        got.extend(receiver)
        thread.join(10)
        sender.fail(RuntimeError("done"))
    os.close(read_fd)
    expected: list[object] = []
    for k, (seg, owner) in enumerate(zip(segments, owners)):
        expected.extend(text for at, text in secrets if at == k)
        expected.append(seg if owner == 1 else seg.ts_ns)
    expected.append(b"last\n")
    assert got == expected
    assert all(type(g) is Segment and type(g.truncated) is bool for g in got if isinstance(g, tuple))


def test_a_full_hand_over_waits_and_a_failure_releases_it():
    """Nobody reads the pipe: put() waits once QUEUED_BYTES are queued (memory stays bounded);
    fail() ends the wait with HandoverBroken."""
    read_fd, write_fd = os.pipe()
    sender = Sender()
    blob = b"x" * (1 << 20)
    with open(write_fd, "wb") as w:
        sender.attach(w)
        sent = [0]
        outcome: list[BaseException] = []

        def fill() -> None:
            try:
                while True:
                    sender.put((b"", blob))
                    sent[0] += 1
            except HandoverBroken as exc:
                outcome.append(exc)
        thread = threading.Thread(target=fill, daemon=True)
        thread.start()
        time.sleep(1.0)
        waiting = sent[0]
        time.sleep(0.5)
        assert sent[0] == waiting, "put() did not wait"
        assert waiting * len(blob) <= handover.QUEUED_BYTES + 2 * (1 << 20) + handover.PIPE_BYTES
        sender.fail(RuntimeError("the worker is gone"))
        thread.join(5)
        assert not thread.is_alive() and isinstance(outcome[0], HandoverBroken)
        os.close(read_fd)


#: A worker (only) kills itself this long after it started: mid-stream on the capture below.
DYING_SITE = """
import os, signal, sys, threading
if "analyzer.worker" in sys.orig_argv:
    threading.Timer(float(os.environ["DIE_AFTER"]), os.kill, (os.getpid(), signal.SIGKILL)).start()
"""


@pytest.mark.parametrize("die_after", ["0", "2.5"])
def test_a_worker_killed_while_it_is_given_segments_is_one_error(tmp_path, die_after):
    """The parent reads on while its worker is gone: it stops at once with the worker's status,
    kills nothing else, hangs on no full pipe, and leaves no temporary folder."""
    from tests.hostile.processes import busy
    captures = busy(tmp_path, 4.0)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DYING_SITE)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    script = ("import sys, analyzer, analyzer.api; analyzer.api.SHARD_MIN_BYTES = 0\n"
              "try:\n    analyzer.analyze(sys.argv[1], jobs=2)\n"
              "except RuntimeError as exc:\n    print(exc); sys.exit(3)\n")
    env = dict(os.environ, TMPDIR=str(tmpdir), DIE_AFTER=die_after,
               PYTHONPATH=os.pathsep.join([str(ROOT), str(site)]))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, str(captures)], env=env, cwd=ROOT,
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr.decode()[-2000:]
    assert "worker for busy.pcap failed (exit -9)" in proc.stdout.decode()
    assert time.monotonic() - start < 60
    assert [p.name for p in tmpdir.iterdir()] == []


def test_a_parent_killed_while_it_hands_over_takes_its_worker_along(tmp_path):
    """SIGKILL of the reading parent: its worker, waiting for segments on the pipe, sees the end
    of the pipe (or the kernel's SIGTERM), removes the temporary folder and exits."""
    from tests.hostile.processes import busy
    from tests.test_hostile_processes import _poll, _state, _workers_of
    capture = busy(tmp_path, 4.0)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    script = "import sys, analyzer, analyzer.api; analyzer.api.SHARD_MIN_BYTES = 0; " \
             "analyzer.analyze(sys.argv[1], jobs=2)"
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script, str(capture)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[int] = []
    try:
        assert _poll(lambda: bool(workers.extend(_workers_of(proc.pid)) or workers), 60)
        time.sleep(3.0)             # its imports done, it reads its stream
        assert proc.poll() is None, "the analysis ended before the parent could be killed"
        os.kill(proc.pid, 9)
        proc.wait()
        assert _poll(lambda: _state(workers[0]) is None, 5), "the worker outlived its parent"
        assert _poll(lambda: [p.name for p in tmpdir.iterdir()] == [], 5)
    finally:
        for pid in (*workers, proc.pid):
            if _state(pid):
                os.kill(pid, 9)
        proc.wait()
