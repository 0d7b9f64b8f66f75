"""One capture on 1 and 2 processes (analyze(jobs=1) against analyze(jobs=2)), on an idle machine
and with one core kept busy, wall and CPU time.

    python benchmarks/scaling.py [CAPTURE ...] [--rounds 3] [--load none,one-core]
                                 [--baseline DIR] [--json OUT.json]

CAPTURE defaults to /tmp/bench/bench.pcap and /tmp/bench/bench-100k.pcap (benchmarks/make_capture.py).
Each run is a fresh `python -c "analyzer.analyze(CAPTURE, jobs=J)"` child (imports, the four
DataFrames and, with jobs=2, the worker process included); wall time around it, CPU time from its
rusage and its children's (the worker's), and each process's own CPU (the child prints its own
and its worker's). The variants alternate within each round (jobs=1, jobs=2, then the baseline's
jobs=2 when --baseline names the `analyzer` package of another commit, e.g. from
`git archive OLD analyzer | tar -x -C DIR`), so a change in the machine's load touches them all.
`--load one-core` runs `python3 -c "while 1: pass"` meanwhile (started before each series, stopped
after it). The table gives the best and the spread (min to max) of the rounds, and the load
average before and after; Markdown, for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
import analyzer
a = analyzer.analyze(sys.argv[1], jobs=int(sys.argv[2]))
own = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"frames": len(a.frames), "messages": len(a.messages),
                  "parent_cpu": own.ru_utime + own.ru_stime,
                  "worker_cpu": kids.ru_utime + kids.ru_stime,
                  "seconds_inside": time.perf_counter() - start}))
"""


def run_once(capture: str, jobs: int, package_root: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(package_root))
    env.pop("SSLKEYLOGFILE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, capture, str(jobs)], env=env, cwd=package_root,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} ({min(values):.2f}-{max(values):.2f}, median {statistics.median(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captures", nargs="*",
                        default=["/tmp/bench/bench.pcap", "/tmp/bench/bench-100k.pcap"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", default="none,one-core",
                        help="comma-separated: none (as the machine is), one-core (a busy loop meanwhile)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a folder holding another commit's analyzer/ package: its jobs=2 runs too")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    variants = [("jobs=1", 1, ROOT), ("jobs=2", 2, ROOT)]
    if args.baseline is not None:
        variants.append(("baseline jobs=2", 2, args.baseline.resolve()))
    report: list[dict[str, Any]] = []
    print("| capture | load | variant | wall s best (spread, median) | CPU s best (spread) "
          "| parent / worker CPU s (median) | load avg before → after |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for capture in args.captures:
        for load in args.load.split(","):
            busy = (subprocess.Popen([sys.executable, "-c", "while 1: pass"])
                    if load == "one-core" else None)
            try:
                time.sleep(1.0 if busy else 0)
                load_before = os.getloadavg()[0]
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
                frames = set()
                for _ in range(args.rounds):
                    for name, jobs, root in variants:
                        result = run_once(capture, jobs, root)
                        runs[name].append(result)
                        frames.add(result["frames"])
                load_after = os.getloadavg()[0]
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            assert len(frames) == 1, f"the variants found different frame counts: {frames}"
            for name, _, _ in variants:
                rs = runs[name]
                walls, cpus = [r["wall"] for r in rs], [r["cpu"] for r in rs]
                parent = statistics.median(r["parent_cpu"] for r in rs)
                worker = statistics.median(r["worker_cpu"] for r in rs)
                print(f"| {os.path.basename(capture)} | {load} | {name} | {_spread(walls)} | "
                      f"{_spread(cpus)} | {parent:.2f} / {worker:.2f} | "
                      f"{load_before:.1f} → {load_after:.1f} |", flush=True)
                report.append({"capture": capture, "load": load, "variant": name, "runs": rs,
                               "loadavg": [load_before, load_after]})
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
