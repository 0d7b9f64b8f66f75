"""Hostile captures: time and peak memory of the command on each shape outside testers reported.

Each module in `tests/hostile/` exposes SHAPES (name → writer of one capture at a scale); this
script writes every shape at the scales asked for and runs the command on it in a fresh process,
taking wall time around it and CPU time and peak RSS from wait4(2). A run that passes --timeout is
killed and shown as such: that is what a hang looks like here.

    python benchmarks/hostile.py                       # every shape at scale 1 and 20
    python benchmarks/hostile.py --scale 50 --only ooo # shapes whose name contains "ooo"
    python benchmarks/hostile.py --issue               # each shape at the size the issue reported
    python benchmarks/hostile.py --tree /tmp/old       # the same shapes against another checkout
    python benchmarks/hostile.py --markdown            # a table for the README

A shape writer may set `command` on itself: the arguments after `ws-analyzer`, with {capture} and
{out} (a fresh directory) filled in; the default is `summary {capture}`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ShapeWriter = Callable[[Path, float], Path]

#: The scale at which each shape is the size the outside testers reported (issue 13); shapes not
#: named are correctness shapes, run at scale 1.
ISSUE_SCALES = {
    "capture/gzip-zeros": 32,               # 64 MiB of zeros, 65 KB of .gz
    "capture/pcapng-empty-packets": 16,     # 1M empty packet blocks
    "capture/idb-options": 32,              # a 128 MB interface block of options
    "capture/tiny-blocks": 10,              # 2M 12-byte blocks
    "capture/many-interfaces": 60,          # ~4M interface blocks
    "capture/gzip-runts": 10,               # 2M tiny records of each kind (127-476 KB of .gz)
    "capture/gzip-malformed-ipv4": 10,
    "capture/gzip-bad-tcp-offset": 10,
    "capture/gzip-udp": 10,
    "capture/gzip-arp": 10,
    "handshake/pipelined-requests": 40,     # 80 connections x 64 pipelined 63 KB requests
    "memory/tiny-frames": 80,               # 4M 2-byte frames, 8 MB of pcap
    "memory/problem-flood": 25,             # 2.2M frames, 2M problems before the caps
    "memory/deflate-bombs": 16,             # 64 bombs, export --payloads
    "outputs/report-tiny-frames": 50,       # report on 1M frames
    "processes/busy": 5,
    "session/short-connections": 400,       # 80,000 short connections, one process
    "streams/ooo-many-flows": 50,           # 90,000 flows x 3 out-of-order segments
    "streams/overlap-conflict": 5,          # ~1 MB of conflicting retransmissions
    "streams/overlap-identical": 5,
}


@dataclass
class Result:
    shape: str
    scale: float
    file_mb: float
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit: str           # the exit status, "timeout" or "signal N"
    stderr: str


def shapes(only: list[str]) -> dict[str, ShapeWriter]:
    import tests.hostile as pkg

    found: dict[str, ShapeWriter] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tests.hostile.{info.name}")
        for name, writer in getattr(module, "SHAPES", {}).items():
            if not only or any(o in name for o in only):
                found[f"{info.name}/{name}"] = writer
    return found


def run(cmd: list[str], env: dict[str, str], cwd: Path,
        timeout: float) -> tuple[float, float, float, str, str]:
    """(wall s, cpu s, peak RSS MB, exit, last stderr line) of one child process and its children."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd,
                                start_new_session=True)
        deadline = start + timeout
        status = None
        while status is None:
            pid, st, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = st
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, st, usage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").strip().splitlines()
    cpu = usage.ru_utime + usage.ru_stime
    rss = usage.ru_maxrss / 1024
    if status is None:
        verdict = "timeout"
    elif os.WIFSIGNALED(status):
        verdict = f"signal {os.WTERMSIG(status)}"
    else:
        verdict = str(os.WEXITSTATUS(status))
    return wall, cpu, rss, verdict, (lines[-1] if lines else "")[:200]


def bench(writer_name: str, writer: ShapeWriter, scale: float, tree: Path, timeout: float,
          workdir: Path) -> Result:
    shape_dir = workdir / f"{writer_name.replace('/', '_')}-{scale:g}"
    shape_dir.mkdir(parents=True, exist_ok=True)
    capture = writer(shape_dir, scale)
    out = shape_dir / "out"
    args = [a.format(capture=capture, out=out)
            for a in getattr(writer, "command", ["summary", "{capture}"])]
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "analyzer", *args, "--no-progress"]
    size = capture.stat().st_size / 1e6 if capture.is_file() else 0.0
    wall, cpu, rss, verdict, last = run(cmd, env, tree, timeout)  # cwd: that tree's analyzer/ first
    shutil.rmtree(shape_dir, ignore_errors=True)
    return Result(writer_name, scale, round(size, 2), round(wall, 2), round(cpu, 2), round(rss, 1),
                  verdict, last)


def markdown(results: list[Result]) -> str:
    lines = ["| shape | scale | capture MB | wall s | CPU s | peak RSS MB | exit |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        lines.append(f"| {r.shape} | {r.scale:g} | {r.file_mb:.2f} | {r.wall_s:.2f} | {r.cpu_s:.2f} | "
                     f"{r.peak_rss_mb:.0f} | {r.exit} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, action="append", help="scales to run (default: 1 and 20)")
    ap.add_argument("--issue", action="store_true",
                    help="each shape once, at the size issue 13 reported (ISSUE_SCALES)")
    ap.add_argument("--only", action="append", default=[], help="shapes whose name contains this")
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose analyzer/ is run")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as a hang")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table at the end")
    ap.add_argument("--list", action="store_true", help="list the shapes and stop")
    args = ap.parse_args(argv)
    found = shapes(args.only)
    if args.list:
        print("\n".join(found))
        return 0
    results = []
    print(f"{'shape':44} {'scale':>6} {'MB':>8} {'wall s':>8} {'cpu s':>8} {'RSS MB':>8}  exit")
    with tempfile.TemporaryDirectory(prefix="ws-hostile-") as tmp:
        for name, writer in found.items():
            scales = [ISSUE_SCALES.get(name, 1.0)] if args.issue else args.scale or [1.0, 20.0]
            for scale in scales:
                r = bench(name, writer, scale, args.tree.resolve(), args.timeout, Path(tmp))
                results.append(r)
                note = f"  ({r.stderr})" if r.exit not in ("0", "2") else ""
                print(f"{r.shape:44} {r.scale:>6g} {r.file_mb:>8.2f} {r.wall_s:>8.2f} {r.cpu_s:>8.2f} "
                      f"{r.peak_rss_mb:>8.0f}  {r.exit}{note}", flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    if args.markdown:
        print(markdown(results))
    return 0 if all(r.exit in ("0", "2") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
