"""Tests of the ws-analyzer command line, run as a subprocess (`python -m analyzer`): exit statuses,
one-line errors without tracebacks, pipe safety, and the output of each subcommand on real captures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
ENV.pop("WS_ANALYZER_DEBUG", None)


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=120, **kw)


def need(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"{name} not generated")
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[str], status: int = 2) -> str:
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ws-analyzer: error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def test_help_and_version() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("report", "summary", "frames", "messages", "connections", "problems", "follow", "export",
                 "examples:", "ws-analyzer frames capture.pcap"):
        assert word in proc.stdout
    proc = run("frames", "--help")
    assert proc.returncode == 0 and "--decode-as PORT" in proc.stdout and "--max-message-bytes" in proc.stdout
    assert "-Y EXPR" in proc.stdout and "--payload" in proc.stdout
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ws-analyzer ")


@pytest.mark.parametrize("args", [(), ("bogus",), ("summary",), ("summary", "x.pcap", "--port", "70000"),
                                  ("frames", "x.pcap", "--jobs", "0"), ("report", "x.pcap")])
def test_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error:" in proc.stderr.strip().splitlines()[-1]


def test_not_a_capture(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n" * 10)
    line = assert_one_line_error(run("summary", str(text)))
    assert "notes.txt" in line
    assert_one_line_error(run("frames", str(tmp_path / "missing.pcap")))
    assert_one_line_error(run("summary", str(tmp_path)))  # a directory
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert_one_line_error(run("report", str(empty), "-o", str(tmp_path / "r")))


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    cap = need("ws_fragments_ping.pcap")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run("export", str(cap), "-o", str(blocker / "sub")))


def test_summary_text_and_json() -> None:
    cap = need("ws_close_codes_client.pcap")
    proc = run("summary", str(cap))
    assert proc.returncode == 0 and proc.stderr == ""
    assert "WebSocket connections  12 (rfc6455 12); 0 failed handshakes" in proc.stdout
    assert "Frames                 48 — text 24, close 24 — by client 24, server 24" in proc.stdout
    proc = run("summary", "--json", str(cap))
    d = json.loads(proc.stdout)
    # counted by hand from the generator's description: 12 connections, one per close code
    # 1000-1003 and 1007-1014, each one text message each way and a close each way
    assert d["websocket_connections"] == 12 and d["messages"] == 24
    assert [c["code"] for c in d["close_codes"]] == [1000, 1001, 1002, 1003, *range(1007, 1015)]
    assert d["close_status"]["clean"] == 12 and d["close_initiator"]["client"] == 12


def test_frames_listing() -> None:
    cap = need("ws_fragments_ping.pcap")
    proc = run("frames", str(cap))
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["frame", "time", "conn", "direction", "opcode", "flags", "length", "info"]
    # columns are aligned: the 'length' header ends where every length value ends
    end = lines[0].index("length") + len("length")
    assert all(line[end - 1].isdigit() and line[end:end + 1] in ("", " ") for line in lines[1:])
    text = proc.stdout
    assert "client→server  ping" in text and "rtt " in text and " ms" in text
    assert "fragment of message 1" in text
    assert "text message 1, 20 B: “Hello, fragments ✓”" in text
    assert "1000 Normal closure" in text


def test_frames_escapes_terminal_controls() -> None:
    cap = need("html_hostile.pcap")
    proc = run("frames", str(cap))
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "\x00" not in proc.stdout and "\u202e" not in proc.stdout
    assert "\\u202e\\x00nul" in proc.stdout


def test_frames_pipe_to_head_is_quiet(tmp_path: Path) -> None:
    demo = need("demo.pcapng")
    copies = []
    for i in range(6):  # enough lines to overflow the pipe buffer after head has gone
        copy = tmp_path / f"d{i}.pcapng"
        shutil.copy(demo, copy)
        copies.append(str(copy))
    proc = subprocess.Popen([sys.executable, "-m", "analyzer", "frames", *copies], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read().decode()
    status = proc.wait(timeout=120)
    assert first.startswith(b"capture")
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    assert status == 0


def test_report_and_export(tmp_path: Path) -> None:
    cap = need("ws_fragments_ping.pcap")
    proc = run("report", str(cap), "-o", str(tmp_path / "rep"), "--no-progress")
    assert proc.returncode == 0
    assert proc.stdout.strip() == str(tmp_path / "rep" / "index.html")
    assert (tmp_path / "rep" / "figures" / "traffic.svg").exists()
    proc = run("export", str(cap), "--format", "json", "-o", str(tmp_path / "all.json"), "-q")
    assert proc.returncode == 0 and proc.stdout == ""
    data = json.loads((tmp_path / "all.json").read_text())
    assert len(data["frames"]) == 33
    proc = run("export", str(cap), "--format", "parquet", "-o", str(tmp_path / "pq"))
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 6
    assert (tmp_path / "pq" / "messages.parquet").exists()


def test_same_capture_twice_is_read_once() -> None:
    cap = need("ws_close_codes_client.pcap")
    proc = run("summary", "--json", str(cap), str(cap))
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["websocket_connections"] == 12
    assert "given more than once" in proc.stderr


def test_speed_options_skip_utf8_checks_and_previews():
    import json

    base = json.loads(run("summary", "--json", "-q", "captures/incident.pcapng").stdout)
    fast = json.loads(run("summary", "--json", "-q", "--no-utf8-check", "--preview-chars", "0",
                          "captures/incident.pcapng").stdout)
    assert base["problems_by_kind"].get("invalid-utf8", 0) >= 1
    assert "invalid-utf8" not in fast["problems_by_kind"]
    assert base["frames"] == fast["frames"] == 72
    listing = run("frames", "--preview-chars", "0", "captures/demo.pcapng").stdout
    assert "text message" in listing and "“{" not in listing
