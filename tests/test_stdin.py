"""`-` reads the capture from standard input (as tcpdump -r - and tshark -r - do): a pipe, a
redirected file, gzip through a pipe; a terminal or device on stdin is one error line, exit 2."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

import analyzer
from analyzer.capture import CaptureError, CaptureReader

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
CMD = [sys.executable, "-m", "analyzer"]


def _run(args: list[str], stdin: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *args], stdin=stdin, capture_output=True, text=True, timeout=120)


def test_summary_from_a_pipe_equals_the_file() -> None:
    """cat captures/demo.pcapng | ws-analyzer summary -"""
    cat = subprocess.Popen(["cat", str(CAPTURES / "demo.pcapng")], stdout=subprocess.PIPE)
    piped = _run(["summary", "--json", "-"], cat.stdout)
    cat.stdout.close()
    cat.wait()
    direct = _run(["summary", "--json", str(CAPTURES / "demo.pcapng")], subprocess.DEVNULL)
    assert piped.returncode == direct.returncode == 0, piped.stderr
    import json

    ours, theirs = json.loads(piped.stdout), json.loads(direct.stdout)
    for d in (ours, theirs):
        d.pop("captures", None)
        d.pop("capture_bytes", None)       # a pipe has no size
    assert ours == theirs and ours["websocket_connections"] == 13


def test_frames_from_gzip_through_a_pipe(tmp_path: Path) -> None:
    data = gzip.compress((CAPTURES / "ipv6.pcap").read_bytes())
    piped = subprocess.run([*CMD, "frames", "-"], input=data, capture_output=True, timeout=120)
    direct = subprocess.run([*CMD, "frames", str(CAPTURES / "ipv6.pcap")], capture_output=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == direct.stdout and piped.stdout.count(b"\n") > 5


def test_redirected_file_in_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    with open(CAPTURES / "ws_fragments_ping.pcap", "rb") as fh:
        saved = os.dup(0)
        os.dup2(fh.fileno(), 0)
        try:
            a = analyzer.analyze("-", progress=False)
        finally:
            os.dup2(saved, 0)
            os.close(saved)
    b = analyzer.analyze(CAPTURES / "ws_fragments_ping.pcap", progress=False)
    assert a.frames.drop(columns="capture").equals(b.frames.drop(columns="capture"))


def test_a_device_on_stdin_is_refused() -> None:
    proc = _run(["summary", "-"], subprocess.DEVNULL)           # /dev/null: a character device
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "ws-analyzer: error: stdin: is a character device, not a capture file\n"


def test_reader_names_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    r, w = os.pipe()
    os.write(w, b"not a capture at all")
    os.close(w)
    saved = os.dup(0)
    os.dup2(r, 0)
    os.close(r)
    try:
        with pytest.raises(CaptureError, match=r"^stdin: "):
            CaptureReader("-")
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_stdin_among_other_captures_is_read_by_this_process() -> None:
    """`-` beside a file with --jobs 2: standard input cannot be handed to a worker process."""
    with open(CAPTURES / "node_ws.pcap", "rb") as stdin:
        both = _run(["summary", "--json", "--jobs", "2", str(CAPTURES / "demo.pcapng"), "-"], stdin)
    assert both.returncode == 0, both.stderr
    import json

    summary = json.loads(both.stdout)
    assert summary["websocket_connections"] == 13 + 2
