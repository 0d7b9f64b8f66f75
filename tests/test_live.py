"""`ws-analyzer live -i lo FILTER` (issue 17): rows printed while the capture runs, a status line,
Ctrl-C ends with the summary, -w saves exactly what was analysed; a capture program that cannot
start is one error line. Needs tcpdump and the right to capture (root here)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CMD = [sys.executable, "-m", "analyzer"]
PORT = 9471

pytestmark = pytest.mark.skipif(shutil.which("tcpdump") is None or os.geteuid() != 0,
                                reason="live capture needs tcpdump and root")


def _talk(port: int, ready: threading.Event) -> None:
    """A python `websockets` echo server and client on loopback: five text messages 0.2 s apart,
    one binary message, a normal close."""
    import websockets

    async def echo(ws: object) -> None:
        async for message in ws:            # type: ignore[attr-defined]
            await ws.send(message)          # type: ignore[attr-defined]

    async def main() -> None:
        async with websockets.serve(echo, "127.0.0.1", port), \
                websockets.connect(f"ws://127.0.0.1:{port}/live") as ws:
            for i in range(5):
                await ws.send(f"hello {i}")
                await ws.recv()
                await asyncio.sleep(0.2)
            ready.set()
            await asyncio.sleep(1.0)        # the test reads the first rows meanwhile
            await ws.send(b"\x00\x01binary")
            await ws.recv()

    asyncio.run(main())


def _lines_until(fd: int, deadline: float, want: int) -> list[str]:
    buf = b""
    while time.monotonic() < deadline and buf.count(b"\n") < want:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            piece = os.read(fd, 65536)
            if not piece:
                break
            buf += piece
    return buf.decode().splitlines()


def _wait_for(path: Path, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path.read_text(errors='replace') if path.exists() else ''}")


def test_live_rows_come_while_capturing_and_ctrl_c_ends_with_the_summary(tmp_path: Path) -> None:
    saved, err = tmp_path / "live.pcap", tmp_path / "stderr.txt"
    with open(err, "wb") as err_file:
        proc = subprocess.Popen([*CMD, "live", "-i", "lo", "-T", "jsonl", "-w", str(saved), "--status-every",
                                 "0.5", "tcp", "port", str(PORT)], stdout=subprocess.PIPE, stderr=err_file)
    try:
        assert proc.stdout is not None
        _wait_for(err, "listening on lo", 20)
        ready = threading.Event()
        talker = threading.Thread(target=_talk, args=(PORT, ready))
        talker.start()
        assert ready.wait(30)
        # the ten text frames are printed while the connection is still open
        first = _lines_until(proc.stdout.fileno(), time.monotonic() + 20, 10)
        rows = [json.loads(line) for line in first]
        assert [r["info"] for r in rows if r["direction"] == "client→server"][:5] == \
            [f"text message {2 * i + 1}, 7 B: “hello {i}”" for i in range(5)]
        talker.join(30)
        time.sleep(1.0)             # the last packets reach tcpdump and us
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read().decode().splitlines()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    rows = [json.loads(line) for line in first + rest]
    assert [r["opcode_name"] for r in rows].count("text") == 10
    assert [r["opcode_name"] for r in rows][-4:] == ["binary", "binary", "close", "close"]
    log = err.read_text()
    assert "connections," in log and "frames," in log                  # a status line came
    assert "WebSocket connections  1" in log and "Close codes" in log  # the summary at the end
    assert "packets captured" in log                                   # tcpdump's own count
    # -w FILE holds exactly what was analysed: the file's listing is the live one
    again = subprocess.run([*CMD, "frames", "-q", "-T", "jsonl", str(saved)], capture_output=True, text=True,
                           timeout=120)
    assert again.stdout.splitlines() == first + rest


def test_a_capture_program_that_cannot_start_is_one_error_line() -> None:
    proc = subprocess.run([*CMD, "live", "-i", "no-such-interface0"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("ws-analyzer: error: tcpdump failed:") and "no-such-interface0" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_tcpdump_piped_into_frames_prints_rows_as_they_come() -> None:
    """`tcpdump -i lo -U -w - 'tcp port P' | ws-analyzer frames -` on loopback traffic: the rows of
    the open connection are printed while tcpdump still runs; stopping tcpdump ends the listing."""
    port = PORT + 1
    tcpdump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-s", "0", "-w", "-",
                                f"tcp port {port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tcpdump.stdout is not None and tcpdump.stderr is not None
    frames = subprocess.Popen([*CMD, "frames", "-q", "-T", "jsonl", "-"], stdin=tcpdump.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tcpdump.stdout.close()
    try:
        assert frames.stdout is not None
        assert b"listening on lo" in tcpdump.stderr.readline()
        time.sleep(0.5)
        ready = threading.Event()
        talker = threading.Thread(target=_talk, args=(port, ready))
        talker.start()
        assert ready.wait(30)
        first = _lines_until(frames.stdout.fileno(), time.monotonic() + 20, 10)
        assert len(first) >= 10 and tcpdump.poll() is None      # while tcpdump still captures
        talker.join(30)
        time.sleep(1.0)
        tcpdump.send_signal(signal.SIGINT)
        rest = frames.stdout.read().decode().splitlines()
        assert frames.wait(timeout=30) == 0 and tcpdump.wait(timeout=30) == 0
    finally:
        tcpdump.kill()
        frames.kill()
    rows = [json.loads(line) for line in first + rest]
    assert [r["opcode_name"] for r in rows] == ["text"] * 10 + ["binary", "binary", "close", "close"]
    assert rows[0]["info"] == "text message 1, 7 B: “hello 0”"
