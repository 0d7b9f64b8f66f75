"""Scaling of analyze_many on a Dask LocalCluster: 1 and 2 worker processes on 20 captures, and the
scheduler's overhead per task.

    python benchmarks/cluster.py [--source FILE] [--packets 5000] [--captures 20] [--tiny 60]
                                 [--rounds 1] [--json OUT.json]

The 20 captures are copies of one slice of real traffic: the first --packets records of --source
(default /tmp/bench/bench-100k.pcap, made by make_capture.py --packets 100000 --scale 0.1; else
captures/ws_fragments_ping.pcap), cut with editcap. Measured, each on a fresh LocalCluster of
processes with one thread each, after one warm-up task per worker (imports):

* local:   analyze_capture + tables_from_rows of one copy in this process (what one task does);
* N workers: analyze_many(20 paths, client) until every task is done and the infos are back, then
  .compute() (gather into this process + merge_captures) and .to_parquet(DIR) (written by the workers);
* overhead: analyze_many on --tiny copies of a capture of one record (a pcap header and one ARP
  frame, built here): wall time × workers per task, minus the time the task's function ran on its
  worker (dask's task stream); and --tiny no-op tasks (submit + gather), the scheduler's floor.
  The captures' run reports the mean time of a task on its worker too: against the local figure,
  it shows what the workers lose to each other and to the machine's other load.

Every timed run is done --rounds times (the minimum is kept: the machine is shared). The load
average before and after is printed with the table; the table is Markdown, for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.api import analyze_capture  # noqa: E402
from analyzer.cluster import analyze_many, capture_tables, cluster_client  # noqa: E402
from analyzer.merge import tables_from_rows  # noqa: E402
from analyzer.websocket import Options  # noqa: E402

DEFAULT_SOURCE = Path("/tmp/bench/bench-100k.pcap")
FALLBACK_SOURCE = ROOT / "captures" / "ws_fragments_ping.pcap"


def one_record_pcap(path: Path) -> Path:
    """A classic pcap (Ethernet) holding one ARP request: a capture with nothing to analyse."""
    arp = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06"
           + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + b"\x02\x00\x00\x00\x00\x01" + bytes([10, 0, 0, 1])
           + b"\x00" * 6 + bytes([10, 0, 0, 2]))
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 1_700_000_000, 0, len(arp), len(arp)) + arp
    path.write_bytes(header + record)
    return path


def sliced(source: Path, packets: int, out: Path) -> Path:
    if shutil.which("editcap") is None:
        shutil.copy(source, out)
    else:
        subprocess.run(["editcap", "-r", str(source), str(out), f"1-{packets}"], check=True)
    return out


def log(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def best(fn: Any, rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def local_task(path: str) -> float:
    """One task's work in this process (warm): the analysis and the tables."""
    options = Options()
    analyze_capture(path, "warm", options)
    t = time.perf_counter()
    rows, _ = analyze_capture(path, "x", options)
    tables_from_rows([rows])
    return time.perf_counter() - t


def compute_seconds(stream: Any) -> list[float]:
    """Per task of a recorded task stream, the seconds its function ran on a worker."""
    return [sum(ss["stop"] - ss["start"] for ss in task["startstops"] if ss["action"] == "compute")
            for task in stream.data]


def on_cluster(workers: int, paths: list[str], tiny: list[str], rounds: int, out: Path) -> dict[str, Any]:
    from distributed import get_task_stream

    result: dict[str, Any] = {"workers": workers}
    log(f"{workers} worker(s)")
    t = time.perf_counter()
    with cluster_client("local", workers) as client:
        result["start_s"] = time.perf_counter() - t
        # one warm-up task per worker: the imports of analyzer, pandas, pyarrow
        client.gather([client.submit(capture_tables, tiny[0], "w", Options(), ["w"], pure=False,
                                     workers=[w]) for w in client.scheduler_info()["workers"]])
        log("captures")
        with get_task_stream(client) as stream:
            result["analyze_many_s"], many = best(lambda: analyze_many(paths, client), rounds)
        result["task_compute_s"] = compute_seconds(stream)[-len(paths):]
        result["compute_s"], a = best(many.compute, rounds)
        result["frames"] = len(a.frames)

        def write() -> list[str]:
            shutil.rmtree(out, ignore_errors=True)
            return many.to_parquet(out)

        result["to_parquet_s"], _ = best(write, rounds)
        del a
        log("tiny captures")
        with get_task_stream(client) as stream:
            result["tiny_s"], _ = best(lambda: analyze_many(tiny, client), rounds)
        result["tiny_compute_s"] = compute_seconds(stream)[-len(tiny):]
        result["noop_s"], _ = best(lambda: client.gather([client.submit(len, [i], pure=False)
                                                          for i in range(len(tiny))]), rounds)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path,
                    default=DEFAULT_SOURCE if DEFAULT_SOURCE.exists() else FALLBACK_SOURCE)
    ap.add_argument("--packets", type=int, default=5_000)
    ap.add_argument("--captures", type=int, default=20)
    ap.add_argument("--tiny", type=int, default=60, help="tasks of the overhead measurement")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ws-analyzer-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        first = sliced(args.source, args.packets, tmp / "c00.pcap")
        paths = [str(first)]
        for i in range(1, args.captures):
            shutil.copy(first, tmp / f"c{i:02}.pcap")
            paths.append(str(tmp / f"c{i:02}.pcap"))
        empty = one_record_pcap(tmp / "t000.pcap")
        tiny = [str(empty)]
        for i in range(1, args.tiny):
            os.link(empty, tmp / f"t{i:03}.pcap")
            tiny.append(str(tmp / f"t{i:03}.pcap"))
        size = first.stat().st_size
        local = min(local_task(paths[0]) for _ in range(args.rounds))
        local_tiny = min(local_task(tiny[0]) for _ in range(args.rounds))
        runs = [on_cluster(w, paths, tiny, args.rounds, tmp / f"out{w}") for w in (1, 2)]
    load_after = os.getloadavg()

    report = {"source": str(args.source), "packets": args.packets, "captures": args.captures,
              "capture_bytes": size, "local_task_s": local, "local_tiny_s": local_tiny, "runs": runs,
              "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count(),
              "python": sys.version.split()[0]}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print_markdown(report, args.tiny)
    return 0


def print_markdown(r: dict[str, Any], tiny: int) -> None:
    n = r["captures"]
    mb = r["capture_bytes"] * n / 1e6
    print(f"{n} captures of {r['packets']:,} packets ({r['capture_bytes'] / 1e6:.1f} MB each, "
          f"{r['runs'][0]['frames']:,} frames in all); one task's work in this process: "
          f"{r['local_task_s']:.3f} s; load average before {r['load_before'][0]:.2f}, after "
          f"{r['load_after'][0]:.2f} ({r['cpus']} cores)\n")
    print("| workers | cluster start s | analyze_many s | captures/s | MB/s | speed-up | mean task on its "
          "worker s | compute() s | to_parquet s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    one = r["runs"][0]["analyze_many_s"]
    for run in r["runs"]:
        s = run["analyze_many_s"]
        print(f"| {run['workers']} | {run['start_s']:.1f} | {s:.2f} | {n / s:.2f} | {mb / s:.1f} "
              f"| {one / s:.2f} | {statistics.mean(run['task_compute_s']):.3f} | {run['compute_s']:.2f} "
              f"| {run['to_parquet_s']:.2f} |")
    print(f"\nOverhead, {tiny} captures of one record (one task each; local work "
          f"{1000 * r['local_tiny_s']:.1f} ms) and {tiny} no-op tasks:\n")
    print("| workers | wall per tiny capture ms | its task on the worker ms | overhead per task ms "
          "| wall per no-op task ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for run in r["runs"]:
        wall = 1000 * run["tiny_s"] / tiny
        on_worker = 1000 * statistics.mean(run["tiny_compute_s"])
        overhead = wall * run["workers"] - on_worker
        print(f"| {run['workers']} | {wall:.1f} | {on_worker:.1f} | {overhead:.1f} "
              f"| {1000 * run['noop_s'] / tiny:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
