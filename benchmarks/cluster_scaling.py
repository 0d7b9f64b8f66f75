"""Scaling of analyze_many on a Dask LocalCluster against the local path, with CPU time and load.

    python benchmarks/cluster_scaling.py [--dir /tmp/bench/many] [--rounds 3] [--tiny 100]
                                         [--json OUT.json] [--print OUT.json]

The captures are DIR/many-*.pcap (record them with benchmarks/make_many.py: 20 captures of ~20k
packets, five shapes, their own seeds; DIR/*.keylog are the TLS ones' key logs, given to every run).
What is measured:

* per file, in this process (warm): the task's function (analyzer.cluster.capture_tables) → wall and
  CPU seconds, frames, and the size of its pickled result (what a worker sends when the tables are
  gathered): the per-file cost and the transfer of the model;
* --rounds rounds, each running four configurations in turn (the order reversed every other round,
  so that none always runs first or last): a fresh LocalCluster (processes, one thread each) of 1 and
  of 2 workers, and analyze(paths, jobs=1) and analyze(paths, jobs=2) in this process. A cluster run
  times its start, warms each worker with one tiny task (the imports), then times analyze_many until
  every task is done, to_parquet (written by the workers), compute() (gathered here and merged), a
  gather of the raw results alone, and the overhead: --tiny captures of one record (one task each) and
  --tiny no-op tasks (client.map(len) + gather), both per task from the client's view;
* CPU seconds of each timed step: this process (which runs the LocalCluster's scheduler) and every
  process under it (nannies, workers, analyze()'s worker processes, reaped or alive);
* the load average (1 min) before each run, and `uptime` at the start and the end.

The figures are printed as Markdown tables (best, median and worst of the rounds), for
benchmarks/README.md; --json writes every raw figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analyzer.api import analyze  # noqa: E402
from analyzer.cluster import analyze_many, capture_tables, cluster_client  # noqa: E402
from benchmarks.cluster import compute_seconds, log, one_record_pcap  # noqa: E402

CONFIGS = ("dask-1", "dask-2", "local-1", "local-2")


def tree_cpu() -> float:
    """CPU seconds (user + system) of this process and every process under it: the live ones, and
    those already ended (counted in whichever process reaped them)."""
    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:        # ended meanwhile: its parent counts it once reaped
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def timed(fn: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    """fn() → ({wall, cpu}, its result)."""
    cpu, wall = tree_cpu(), time.perf_counter()
    result = fn()
    return {"wall": time.perf_counter() - wall, "cpu": tree_cpu() - cpu}, result


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def per_file(paths: list[str], keylogs: list[str]) -> list[dict[str, Any]]:
    """Each capture's task run here: the per-file unit's cost and its result's size."""
    options = analyze([], jobs=1, keylog=keylogs).options
    names = [Path(p).stem for p in paths]
    capture_tables(paths[0], names[0], options, names)          # warm: imports, first-call costs
    rows = []
    for path, name in zip(paths, names):
        wall, cpu = time.perf_counter(), time.process_time()
        tables, info = capture_tables(path, name, options, names)
        rows.append({"name": name, "bytes": os.path.getsize(path), "packets": info.packets,
                     "frames": len(tables["frames"]), "connections": len(tables["connections"]),
                     "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                     "result_bytes": len(pickle.dumps((tables, info), protocol=5))})
    return rows


def dask_run(workers: int, paths: list[str], keylogs: list[str], tiny: list[str],
             out: Path) -> dict[str, Any]:
    from distributed import get_task_stream

    run: dict[str, Any] = {"load": os.getloadavg()[0]}
    t = time.perf_counter()
    with cluster_client("local", workers) as client:
        run["start"] = time.perf_counter() - t
        options = analyze([], jobs=1).options
        client.gather([client.submit(capture_tables, tiny[0], "w", options, ["w"], pure=False, workers=[w])
                       for w in client.scheduler_info()["workers"]])
        with get_task_stream(client) as stream:
            run["many"], many = timed(lambda: analyze_many(paths, client, keylog=keylogs))
        run["task_s"] = compute_seconds(stream)
        shutil.rmtree(out, ignore_errors=True)
        run["to_parquet"], _ = timed(lambda: many.to_parquet(out))
        shutil.rmtree(out, ignore_errors=True)
        run["gather"], _ = timed(lambda: client.gather(many._results))   # the raw transfer alone
        run["compute"], a = timed(many.compute)
        run["frames"] = len(a.frames)
        del a
        client.cancel(many._results)        # the workers' memory freed for the overhead runs
        with get_task_stream(client) as stream:
            run["tiny"], _ = timed(lambda: analyze_many(tiny, client))
        run["tiny_task_s"] = compute_seconds(stream)
        run["noop"], _ = timed(lambda: client.gather(client.map(len, [[i] for i in range(len(tiny))],
                                                                pure=False)))
    return run


def local_run(jobs: int, paths: list[str], keylogs: list[str]) -> dict[str, Any]:
    run: dict[str, Any] = {"load": os.getloadavg()[0]}
    run["many"], a = timed(lambda: analyze(paths, jobs=jobs, keylog=keylogs, ring=False))
    run["frames"] = len(a.frames)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench/many"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", type=int, default=100, help="tasks of each overhead measurement")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    ap.add_argument("--print", type=Path, metavar="JSON", help="print the tables of an earlier --json")
    args = ap.parse_args()
    if args.print:
        earlier = json.loads(args.print.read_text())
        print_markdown(earlier, earlier.get("tiny", args.tiny))
        return 0
    paths = sorted(str(p) for p in args.dir.glob("many-*.pcap"))
    keylogs = sorted(str(p) for p in args.dir.glob("*.keylog"))
    if not paths:
        print(f"no {args.dir}/many-*.pcap: record them with benchmarks/make_many.py", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"uptime_start": uptime(), "cpus": os.cpu_count(), "tiny": args.tiny,
                              "python": sys.version.split()[0]}
    log(f"{len(paths)} captures; {report['uptime_start']}")
    report["files"] = per_file(paths, keylogs)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="ws-analyzer-scaling-") as tmp_dir:
        tmp = Path(tmp_dir)
        empty = one_record_pcap(tmp / "t000.pcap")
        tiny = [str(empty)]
        for i in range(1, args.tiny):
            os.link(empty, tmp / f"t{i:03}.pcap")
            tiny.append(str(tmp / f"t{i:03}.pcap"))
        for r in range(args.rounds):
            for config in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):
                log(f"round {r + 1}: {config}")
                kind, n = config.split("-")
                runs[config].append(dask_run(int(n), paths, keylogs, tiny, tmp / "out") if kind == "dask"
                                    else local_run(int(n), paths, keylogs))
    report["runs"] = runs
    report["uptime_end"] = uptime()
    frames = {run["frames"] for rs in runs.values() for run in rs}
    if len(frames) != 1:
        raise SystemExit(f"the runs disagree on the number of frames: {sorted(frames)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print_markdown(report, args.tiny)
    return 0


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """best / median / worst."""
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def print_markdown(r: dict[str, Any], tiny: int) -> None:
    files = r["files"]
    total_mb = sum(f["bytes"] for f in files) / 1e6
    print(f"{len(files)} captures, {total_mb:.0f} MB, {sum(f['packets'] for f in files):,} packets, "
          f"{sum(f['frames'] for f in files):,} frames; {r['cpus']} cores, Python {r['python']}")
    print(f"\nuptime at the start: `{r['uptime_start']}`; at the end: `{r['uptime_end']}`\n")
    print("Per file, the task's function in this process (warm):\n")
    print("| capture | MB | packets | frames | wall s | CPU s | MB/s (CPU) | result pickled MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for f in files:
        print(f"| {f['name']} | {f['bytes'] / 1e6:.1f} | {f['packets']:,} | {f['frames']:,} "
              f"| {f['wall']:.2f} | {f['cpu']:.2f} | {f['bytes'] / 1e6 / f['cpu']:.1f} "
              f"| {f['result_bytes'] / 1e6:.2f} |")
    cpu = sum(f["cpu"] for f in files)
    print(f"| all | {total_mb:.0f} | | | {sum(f['wall'] for f in files):.1f} | {cpu:.1f} "
          f"| {total_mb / cpu:.1f} | {sum(f['result_bytes'] for f in files) / 1e6:.1f} |")
    runs = r["runs"]
    one = min(run["many"]["wall"] for run in runs["dask-1"])
    print(f"\nThe {len(files)} captures, {len(runs['dask-1'])} rounds (best / median / worst; "
          "speed-up: best against the best of dask-1):\n")
    print("| configuration | load (1 min) before | wall s | CPU s | captures/s (best) | speed-up "
          "| mean task on its worker s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for config, rs in runs.items():
        walls = [run["many"]["wall"] for run in rs]
        task = (f"{statistics.mean(t for run in rs for t in run['task_s'][-len(files):]):.2f}"
                if "task_s" in rs[0] else "")
        print(f"| {config} | {spread([run['load'] for run in rs])} | {spread(walls)} "
              f"| {spread([run['many']['cpu'] for run in rs])} | {len(files) / min(walls):.2f} "
              f"| {one / min(walls):.2f} | {task} |")
    print("\nAfter analyze_many, on the cluster (best / median / worst of wall s; CPU s best):\n")
    print("| workers | cluster start s | to_parquet s | gather of the results s | compute() s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for config in ("dask-1", "dask-2"):
        rs = runs[config]
        cells = [spread([run[k]["wall"] for run in rs]) + f" (CPU {min(run[k]['cpu'] for run in rs):.2f})"
                 for k in ("to_parquet", "gather", "compute")]
        print(f"| {config[-1]} | {spread([run['start'] for run in rs], '{:.1f}')} | {' | '.join(cells)} |")
    print(f"\nOverhead per task, from the client's view: {tiny} captures of one record, {tiny} no-op tasks "
          "(ms per task, best / median / worst; CPU of every process per task, best):\n")
    print("| workers | one-record capture: wall per task | its task on the worker | CPU per task "
          "| no-op: wall per task | CPU per task |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for config in ("dask-1", "dask-2"):
        rs = runs[config]
        ms = "{:.1f}"
        on_worker = [1000 * statistics.mean(run["tiny_task_s"][-tiny:]) for run in rs]
        print(f"| {config[-1]} | {spread([1000 * run['tiny']['wall'] / tiny for run in rs], ms)} "
              f"| {spread(on_worker, ms)} | {min(1000 * run['tiny']['cpu'] / tiny for run in rs):.1f} "
              f"| {spread([1000 * run['noop']['wall'] / tiny for run in rs], ms)} "
              f"| {min(1000 * run['noop']['cpu'] / tiny for run in rs):.1f} |")


if __name__ == "__main__":
    sys.exit(main())
