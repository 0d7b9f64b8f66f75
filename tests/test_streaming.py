"""Streamed listings (issue 16): frames, messages and problems print as the capture is read, in
capture order, with the connection ids, columns and formats of the listing made after the whole
analysis; a pipe's rows appear while the pipe is still open."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import analyzer.pipeline
from analyzer import cli
from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
CMD = [sys.executable, "-m", "analyzer"]
RING = sorted(str(p) for p in (CAPTURES / "ring" / "tcpdump_C").glob("r.pcap*"))

CASES = [
    [str(CAPTURES / "incident.pcapng")],
    [str(CAPTURES / "interleaved_9123.pcap")],
    [str(CAPTURES / "demo.pcapng")],
    [str(CAPTURES / "h2_node.pcap")],
    [str(CAPTURES / "wss_chromium.pcap"), "--keylog", str(CAPTURES / "wss_chromium.keylog")],
    [str(CAPTURES / "abnormal_ends.pcap")],
    RING,
]


def _listing(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


def _both(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
          argv: list[str]) -> tuple[str, str]:
    """(streamed, after the analysis) output of one listing, with a compaction every 8 records."""
    monkeypatch.setattr(analyzer.pipeline, "COMPACT_EVERY", 8)
    streamed = _listing(capsys, argv)
    with monkeypatch.context() as m:
        m.setattr(cli, "_streamable", lambda _args: False)
        batch = _listing(capsys, argv)
    assert streamed[0] == batch[0] == 0
    return streamed[1], batch[1]


@pytest.mark.parametrize("case", CASES, ids=lambda c: os.path.basename(c[0]).split(".")[0])
@pytest.mark.parametrize("view", ["frames", "messages", "problems"])
def test_streamed_listing_equals_the_listing_after_the_analysis(
        case: list[str], view: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small stretches: rows, order and connection ids are those of the listing made from the
    whole analysis (TLS, HTTP/2 streams, ring files, gaps and problems included)."""
    streamed, batch = _both(capsys, monkeypatch, [view, "-q", "-T", "jsonl", *case])
    assert streamed == batch
    assert view == "problems" or streamed.count("\n") > 3


@pytest.mark.parametrize("fmt", ["json", "csv", "tsv", "text"])
def test_every_format_streams_as_it_prints_after_the_analysis(
        fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """One JSON array over all stretches, one CSV/TSV header, the time since the previous line
    (-t d) carried across stretches; text columns may be narrower in the first stretches, so text
    is compared word by word (problem lines among the frames as in the batch)."""
    streamed, batch = _both(capsys, monkeypatch, ["frames", "-q", "-T", fmt, "-t", "d",
                                                  str(CAPTURES / "incident.pcapng")])
    if fmt == "text":
        words = [line.split() for line in streamed.splitlines()]
        assert words == [line.split() for line in batch.splitlines()]
        assert "tcp-gap" in streamed
    elif fmt == "json":         # one array; where lines break differs (parts vs 5,000 rows)
        assert json.loads(streamed) == json.loads(batch)
    else:
        assert streamed == batch


def test_an_unknown_connection_is_an_error_after_the_stream(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _listing(capsys, ["frames", "-q", "-T", "jsonl", "--conn", "99",
                                         str(CAPTURES / "demo.pcapng")])
    assert status == 2 and out == "" and "no connection 99" in err


def test_the_shown_id_is_the_final_one_unless_an_earlier_connection_upgrades_later(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A opens first but upgrades after B's first frames were shown: the streamed listing gave B
    id 1 (all it could know), the final tables give A id 1; a note says so on stderr."""
    a = Conversation(client_port=40001, t=1_700_000_000.0)
    b = Conversation(client_port=40002, t=1_700_000_000.0005)
    a.handshake()
    b.handshake()
    b.send(0, upgrade_request())
    b.send(1, upgrade_response())
    for i in range(20):
        b.send(0, frame(1, f"b{i}".encode(), mask=b"abcd"))
    a.t = b.t + 0.01
    a.send(0, upgrade_request())
    a.send(1, upgrade_response())
    a.send(0, frame(1, b"a0", mask=b"abcd"))
    path = tmp_path / "late.pcap"
    write_pcap(path, sorted(a.packets + b.packets))
    monkeypatch.setattr(analyzer.pipeline, "COMPACT_EVERY", 8)
    status, out, err = _listing(capsys, ["frames", "-T", "jsonl", "-e", "conn", "-e", "info", str(path)])
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    assert {r["conn_id"] for r in rows if r["info"].startswith("text message") and "b0" in r["info"]} == {1}
    assert {r["conn_id"] for r in rows if "a0" in r["info"]} == {2}
    assert "2 connection ids in this listing were given before an earlier-opened connection upgraded" in err
    monkeypatch.setattr(cli, "_streamable", lambda _args: False)
    _, out, _ = _listing(capsys, ["frames", "-T", "jsonl", "-e", "conn", "-e", "info", str(path)])
    assert {json.loads(line)["conn_id"] for line in out.splitlines() if "a0" in line} == {1}


def _read_line(stream: object, deadline: float) -> str | None:
    fd = stream.fileno()  # type: ignore[attr-defined]
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                return None
            buf += chunk
            if chunk == b"\n":
                return buf.decode()
    return None


def test_rows_of_a_pipe_are_printed_while_it_is_still_open() -> None:
    """`tcpdump -w - | ws-analyzer frames -`: the first half of a capture is written and the pipe
    left open: its frames are printed (after a quiet spell of IDLE_FLUSH_S) before the rest comes;
    then the whole output equals the listing of the file."""
    data = (CAPTURES / "interleaved_9123.pcap").read_bytes()
    proc = subprocess.Popen([*CMD, "frames", "-q", "-T", "jsonl", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(data[:len(data) // 2])
        proc.stdin.flush()
        first = _read_line(proc.stdout, time.monotonic() + 60)
        assert first is not None and json.loads(first)["frame_no"] >= 1       # before the pipe ends
        assert proc.poll() is None
        proc.stdin.write(data[len(data) // 2:])
        proc.stdin.close()
        rest = proc.stdout.read().decode()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    whole = subprocess.run([*CMD, "frames", "-q", "-T", "jsonl", str(CAPTURES / "interleaved_9123.pcap")],
                           capture_output=True, text=True, timeout=120)
    assert first + rest == whole.stdout
