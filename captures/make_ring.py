"""Record rotated (ring-buffer) captures of long-lived WebSocket connections: captures/ring/.

    python captures/make_ring.py [--only tcpdump_G,tcpdump_C,dumpcap_b] [--out captures/ring]

Needs root, tcpdump, dumpcap (tshark's package) and python websockets. Each set is one recording cut
into files by the capture program itself while the traffic runs across the cuts:

* `tcpdump_G/`: `tcpdump -G 1 -w 'r-%s.pcap'` (a new file every second, named by epoch seconds);
* `tcpdump_C/`: `tcpdump -C 1 -w r.pcap` (a new file past 1,000,000 bytes: r.pcap, r.pcap1…); the
  files are gzipped afterwards (`gzip -9`, as `tcpdump -z gzip` would) to keep the corpus small;
* `dumpcap_b/`: `dumpcap -b filesize:15 -w r.pcapng` (pcapng, a new file past 15 kB:
  r_00001_YYYYMMDDhhmmss.pcapng…).

The traffic, a python websockets 17 server and clients on loopback: a permessage-deflate connection
(context takeover) opened first and closed last, chatting every 0.1 s, with a fragmented text whose
two fragments are sent 1.3 s apart (so they fall in different files); a connection without
compression carrying large, compressible texts (`tcpdump -C` needs megabytes) opened in the
middle; short connections that open and close within a file. Every message sent is logged (type,
size, sha256) into `<set>.expected.json`, with the connection facts and the file names in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_captures import CONN_KEYS, Log, connect_kw, send_logged, ws_conn_facts, ws_server  # noqa: E402

SETS = {
    # name: (port, how long the chat lasts in seconds)
    "tcpdump_G": (9301, 3.5),
    "tcpdump_C": (9302, 3.0),
    "dumpcap_b": (9303, 3.0),
}


def _command(name: str, out: Path, port: int) -> list[str]:
    flt = f"tcp port {port}"
    if name == "tcpdump_G":
        return ["tcpdump", "-i", "lo", "--immediate-mode", "-s", "0", "-U", "-Z", "root", "-G", "1",
                "-w", str(out / "r-%s.pcap"), flt]
    if name == "tcpdump_C":
        return ["tcpdump", "-i", "lo", "--immediate-mode", "-s", "0", "-U", "-Z", "root", "-C", "1",
                "-w", str(out / "r.pcap"), flt]
    return ["dumpcap", "-q", "-i", "lo", "-f", flt, "-b", "filesize:15", "-w", str(out / "r.pcapng")]


class Recorder:
    """The capture program running while the block runs."""

    def __init__(self, name: str, out: Path, port: int) -> None:
        self.cmd = _command(name, out, port)

    def __enter__(self) -> Recorder:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        if self.cmd[0] == "tcpdump":
            line = self.proc.stderr.readline().decode(errors="replace")
            if "listening on" not in line:
                self.proc.kill()
                raise RuntimeError(f"tcpdump failed: {line}")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        time.sleep(1.5)         # dumpcap says nothing with -q: give it time to start
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _chat(i: int) -> str:
    words = "the quick brown fox jumps over the lazy dog " * (1 + i % 4)
    return json.dumps({"type": "chat", "seq": i, "user": "alice", "text": f"message {i}: {words}"})


def _bulk(i: int, size: int) -> str:
    line = f"bulk line {i} lorem ipsum dolor sit amet consectetur adipiscing elit\n"
    return (line * (size // len(line) + 1))[:size]


async def _traffic(log: Log, port: int, seconds: float, bulk_bytes: int, bulk_size: int) -> None:
    from websockets.asyncio.client import connect

    server = await ws_server(port, log, compression="deflate")
    url = f"ws://127.0.0.1:{port}"

    async def short(k: int) -> None:
        async with connect(f"{url}/short{k}", compression=None, **connect_kw()) as ws:
            cport = ws.local_address[1]
            await send_logged(ws, log, cport, "client", f"short connection {k}")
            await ws.recv()
        log.conn(cport, **ws_conn_facts(ws, port))

    async def bulk() -> None:
        async with connect(f"{url}/bulk", compression=None, **connect_kw()) as ws:
            cport = ws.local_address[1]
            sent = 0
            i = 0
            while sent < bulk_bytes:
                data = _bulk(i, bulk_size)
                await send_logged(ws, log, cport, "client", data)
                await ws.recv()
                sent += 2 * len(data)
                i += 1
                await asyncio.sleep(0.05)
            await ws.close(1001, "bulk done")
        log.conn(cport, **ws_conn_facts(ws, port))

    async with connect(f"{url}/chat", compression="deflate", **connect_kw()) as ws:
        cport = ws.local_address[1]
        await short(0)
        start = time.monotonic()
        i = 0
        bulk_task = None
        while time.monotonic() - start < seconds:
            await send_logged(ws, log, cport, "client", _chat(i))
            await ws.recv()
            if i == 5:
                # a fragmented text whose fragments are 1.3 s apart: another file for each
                async def fragments():
                    yield "first fragment of a message cut across files; "
                    await asyncio.sleep(1.3)
                    yield "second fragment, after the rotation"
                await ws.send(fragments())
                log.sent(cport, "client", "first fragment of a message cut across files; "
                         "second fragment, after the rotation")
                await ws.recv()
            if i == 8:
                bulk_task = asyncio.create_task(bulk())
            if i == 12:
                await short(1)
            i += 1
            await asyncio.sleep(0.1)
        if bulk_task is not None:
            await bulk_task
        await ws.close(1000, "chat done")
    log.conn(cport, **ws_conn_facts(ws, port))
    server.close()
    await server.wait_closed()


def record(name: str, out_root: Path) -> dict:
    port, seconds = SETS[name]
    out = out_root / name
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        os.chmod(tmpdir, 0o755)
        log = Log()
        # tcpdump -C cuts at 1,000,000 bytes at the least: megabytes of compressible text
        bulk_bytes, bulk_size = (2_300_000, 100_000) if name == "tcpdump_C" else (40_000, 10_000)
        with Recorder(name, tmpdir, port):
            asyncio.run(_traffic(log, port, seconds, bulk_bytes, bulk_size))
        files = sorted(tmpdir.iterdir())
        if len(files) < 2:
            raise RuntimeError(f"{name}: the capture was not rotated ({[f.name for f in files]})")
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        names = []
        for f in files:
            if name == "tcpdump_C":
                subprocess.run(["gzip", "-9", "-n", str(f)], check=True)
                f = f.with_name(f.name + ".gz")
            shutil.copy(f, out / f.name)
            os.chmod(out / f.name, 0o644)
            names.append(f.name)
    conns = [{k: c[k] for k in CONN_KEYS if k in c} for c in log.conns.values()]
    conns.sort(key=lambda c: c["client_port"])
    expected = {"set": name, "command": " ".join(_command(name, Path("."), port)),
                "files": names, "connections": conns, "messages": log.messages}
    (out_root / f"{name}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SETS), help="comma-separated sets")
    parser.add_argument("--out", default=str(HERE / "ring"), help="output folder")
    args = parser.parse_args()
    for name in args.only.split(","):
        exp = record(name, Path(args.out))
        print(f"{name}: {len(exp['files'])} files, {len(exp['connections'])} connections, "
              f"{len(exp['messages'])} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
