"""Memory per connection: peak RSS beyond the imports and the four tables, on many short connections.

Issue 14's goal: on a capture of >= 80,000 short connections (TCP handshake, upgrade, one text
message each way, a clean close, both FINs: `tests/hostile/session.py`'s `short_connections`),
the memory an analysis needs beyond its output is flat in the number of connections, <= 1 KB a
connection. Each size runs `analyzer.analyze(capture, jobs=1)` in a fresh process, which reports:

* the RSS after `import analyzer, pandas, pyarrow` and after a warm-up analysis of a
  one-connection capture (analyze() imports some modules, ours and pandas', only when first
  called: ~9 MB, which would otherwise count as memory of the connections); the baseline is
  the latter (the former with --no-warmup);
* its peak RSS (VmHWM, read right after analyze() returns) and its RSS at that moment;
* the deep size of the four DataFrames (`memory_usage(deep=True)`).

beyond = peak - baseline - tables; per connection = beyond / connections (fixed costs such as
the reader's buffers included); the slope between two sizes = the growth of `beyond` divided by
the connections added: what one more connection costs, which is what "flat" is about. The default
sizes are both above 32,768 connections: the reassembler remembers that many closed flows (65,536
directional keys, `streams._RECENT_MAX`, ~20 MiB when full), a fixed cost that a smaller size would
count as growth. Wall time is taken around the child process, CPU time and peak RSS (as a check)
from wait4(2).

    python benchmarks/connections.py                              # 40,000 and 80,000 connections
    python benchmarks/connections.py -n 40000 -n 80000 -n 160000  # the slope over more sizes
    python benchmarks/connections.py --tree /work/base --tree .   # before and after, side by side
    python benchmarks/connections.py --markdown --json out.json   # a table for the README

Captures are written once under --dir (default /tmp/ws-bench; 80,000 connections ~90 MB) and
reused while the generator's source is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.hostile import run as run_child  # noqa: E402  (needs ROOT on the path)

#: the goal of issue 14: memory beyond the tables, per connection (and per extra connection)
GOAL_BYTES = 1024
DEFAULT_SIZES = (40_000, 80_000)
GENERATOR_SOURCES = (ROOT / "tests" / "hostile" / "session.py", ROOT / "tests" / "pcapgen.py")
CAPTURE_NAME = "short-connections.pcap"
MIB = 1 << 20

CHILD = r"""
import json, sys, time
out_path, capture, warmup = sys.argv[1], sys.argv[2], sys.argv[3]
def rss(field="VmRSS:"):   # VmHWM: the peak, from the same counters as VmRSS (ru_maxrss may lag it)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
t0 = time.perf_counter()
import analyzer, pandas, pyarrow
analyze = analyzer.analyze        # the package loads its API lazily
out = {"import_s": time.perf_counter() - t0, "imports_rss": rss()}
if warmup:
    analyze(warmup, jobs=1)
out["baseline_rss"] = rss()
t1 = time.perf_counter()
a = analyze(capture, jobs=1)
out["analyze_s"] = time.perf_counter() - t1
out["peak_rss"] = rss("VmHWM:")
out["end_rss"] = rss()
tables = [a.connections, a.frames, a.messages, a.problems]
out["tables_bytes"] = sum(int(df.memory_usage(deep=True).sum()) for df in tables)
out["rows"] = [len(df) for df in tables]
with open(out_path, "w") as f:
    json.dump(out, f)
"""


class BenchError(Exception):
    """A bad option or an unusable directory: one line, exit 2."""


@dataclass
class Result:
    """One analysis of `connections` short connections by the checkout `tree`."""

    tree: str
    commit: str
    connections: int
    capture_mb: float
    exit: str                   # "0", "timeout", "signal N", or the exit status
    error: str = ""             # the child's last line of stderr when it failed
    wall_s: float = 0.0
    cpu_s: float = 0.0
    analyze_s: float = 0.0
    wait4_peak: int = 0         # bytes: ru_maxrss of the child from wait4
    imports_rss: int = 0        # bytes: RSS after import analyzer, pandas, pyarrow
    baseline_rss: int = 0       # bytes: RSS after the imports and the warm-up (if any)
    peak_rss: int = 0           # bytes: the child's VmHWM right after analyze() returned
    end_rss: int = 0            # bytes: RSS after analyze() returned, the tables alive
    tables_bytes: int = 0       # deep size of the four DataFrames
    rows: tuple[int, ...] = ()  # connections, frames, messages, problems

    @property
    def ok(self) -> bool:
        return self.exit == "0"

    @property
    def beyond(self) -> int:
        """Peak RSS beyond the baseline and the tables, in bytes."""
        return self.peak_rss - self.baseline_rss - self.tables_bytes

    @property
    def per_connection(self) -> float:
        return self.beyond / self.connections

    @property
    def retained(self) -> int:
        """RSS after analyze() beyond the baseline and the tables: an upper bound on what the
        analysis kept (freed memory is not always given back to the system)."""
        return self.end_rss - self.baseline_rss - self.tables_bytes


def generator_digest() -> str:
    digest = hashlib.sha256()
    for source in GENERATOR_SOURCES:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def capture(directory: Path, connections: int) -> Path:
    """The capture of `connections` short connections under `directory`, written once: a sidecar
    records its size and the generator's digest, and a capture that does not match is rewritten
    (written under a temporary name, so that an interrupted run leaves no half capture)."""
    from tests.hostile.session import SHORT_CONNECTIONS, short_connections

    folder = directory / f"short-{connections}"
    path = folder / CAPTURE_NAME
    sidecar = folder / (CAPTURE_NAME + ".json")
    digest = generator_digest()
    try:
        known = json.loads(sidecar.read_text())
        if known == {"connections": connections, "bytes": path.stat().st_size, "generator": digest}:
            return path
    except (OSError, ValueError):
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            written = short_connections(Path(tmp), connections / SHORT_CONNECTIONS)
            os.replace(written, path)
        sidecar.write_text(json.dumps({"connections": connections, "bytes": path.stat().st_size,
                                       "generator": digest}))
    except OSError as exc:
        raise BenchError(f"cannot write the capture under {directory}: {exc.strerror or exc}") from exc
    return path


def commit_of(tree: Path) -> str:
    """The short commit of a checkout, "+changes" when its analyzer/ differs from it."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                             check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "?"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no", "--",
                                     "analyzer") else "")


def check_tree(tree: Path) -> Path:
    tree = tree.resolve()
    if not (tree / "analyzer" / "__init__.py").is_file():
        raise BenchError(f"{tree} is not a checkout of ws-analyzer (no analyzer/__init__.py)")
    return tree


def measure(tree: Path, path: Path, connections: int, warmup: Path | None,
            timeout: float) -> Result:
    """Analyse `path` with the checkout `tree` in a fresh process (cwd and PYTHONPATH that tree,
    as benchmarks/hostile.py runs one) and collect what the child reports."""
    result = Result(tree=str(tree), commit=commit_of(tree), connections=connections,
                    capture_mb=round(path.stat().st_size / 1e6, 1), exit="")
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        report = Path(tmp) / "child.json"
        cmd = [sys.executable, "-c", CHILD, str(report), str(path), str(warmup or "")]
        env = dict(os.environ, PYTHONPATH=str(tree))
        wall, cpu, rss_mb, result.exit, last = run_child(cmd, env, tree, timeout)
        result.wall_s, result.cpu_s = round(wall, 2), round(cpu, 2)
        result.wait4_peak = int(rss_mb * MIB)
        if not result.ok or not report.is_file():
            result.exit = result.exit if not result.ok else "no report"
            result.error = last
            return result
        info = json.loads(report.read_text())
    result.analyze_s = round(info["analyze_s"], 2)
    for name in ("imports_rss", "baseline_rss", "peak_rss", "end_rss", "tables_bytes"):
        setattr(result, name, int(info[name]))
    result.rows = tuple(info["rows"])
    return result


def slopes(results: list[Result]) -> list[tuple[Result, Result, float]]:
    """(smaller, larger, bytes per extra connection) for each tree's consecutive sizes."""
    out = []
    for tree in dict.fromkeys(r.tree for r in results):
        runs = sorted((r for r in results if r.tree == tree and r.ok), key=lambda r: r.connections)
        for small, large in itertools.pairwise(runs):
            if large.connections > small.connections:
                out.append((small, large,
                            (large.beyond - small.beyond) / (large.connections - small.connections)))
    return out


def verdict(value: float) -> str:
    return f"goal ≤ {GOAL_BYTES:,} B   {'MET' if value <= GOAL_BYTES else 'NOT MET'}"


def mib(n: int) -> str:
    return f"{n / MIB:,.0f}"


HEAD = (f"{'tree':<22} {'commit':<16} {'conns':>8} {'cap MB':>6} {'wall s':>7} {'cpu s':>7} "
        f"{'peak':>6} {'imports':>7} {'base':>6} {'tables':>6} {'beyond':>6} {'B/conn':>7} "
        f"{'kept':>5}")


def row(r: Result) -> str:
    start = f"{r.tree[-22:]:<22} {r.commit:<16} {r.connections:>8,} {r.capture_mb:>6.1f} "
    if not r.ok:
        return start + f"FAILED ({r.exit}) after {r.wall_s:.1f} s: {r.error}"
    return start + (f"{r.wall_s:>7.1f} {r.cpu_s:>7.1f} {mib(r.peak_rss):>6} {mib(r.imports_rss):>7} "
                    f"{mib(r.baseline_rss):>6} {mib(r.tables_bytes):>6} {mib(r.beyond):>6} "
                    f"{r.per_connection:>7,.0f} {mib(r.retained):>5}")


LEGEND = ("memory in MiB: peak RSS, RSS after the imports, baseline (imports + warm-up), deep size of\n"
          "the four tables, beyond = peak - baseline - tables; B/conn = beyond / connections;\n"
          "kept = RSS after analyze() returned - baseline - tables")


def report(results: list[Result]) -> str:
    """The goal lines: the slope between each tree's sizes, and beyond / connections at its
    largest size; plus a warning for any analysis that did not find one row a connection."""
    lines = [f"  {r.tree} at {r.connections:,}: the connections table has {r.rows[0]:,} rows, not one "
             "a connection: these figures do not measure what they claim"
             for r in results if r.ok and r.rows[:1] != (r.connections,)]
    lines += [f"goal: memory beyond the tables flat in the number of connections, "
              f"≤ {GOAL_BYTES:,} B a connection"]
    for small, large, slope in slopes(results):
        lines.append(f"  {large.tree[-22:]:<22} {small.connections:>7,} → {large.connections:<7,}  "
                     f"{slope:7,.0f} B per extra connection   {verdict(slope)}")
    largest: dict[str, Result] = {}
    for r in results:
        if r.ok and r.connections >= largest.get(r.tree, r).connections:
            largest[r.tree] = r
    for r in largest.values():
        lines.append(f"  {r.tree[-22:]:<22} at {r.connections:<7,}     {r.per_connection:7,.0f} B a "
                     f"connection, fixed costs included   {verdict(r.per_connection)}")
    if any(r.ok and abs(r.wait4_peak - r.peak_rss) > 8 * MIB for r in results):
        lines.append("  note: wait4's peak is more than 8 MiB above the child's own "
                     "(measuring the tables' deep size raised it)")
    return "\n".join(lines)


def markdown(results: list[Result]) -> str:
    lines = ["| tree | commit | connections | wall s | CPU s | peak MiB | baseline MiB | tables MiB "
             "| beyond MiB | B / connection |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        if r.ok:
            lines.append(f"| {r.tree} | {r.commit} | {r.connections:,} | {r.wall_s:.1f} | {r.cpu_s:.1f} "
                         f"| {mib(r.peak_rss)} | {mib(r.baseline_rss)} | {mib(r.tables_bytes)} "
                         f"| {mib(r.beyond)} | {r.per_connection:,.0f} |")
        else:
            lines.append(f"| {r.tree} | {r.commit} | {r.connections:,} | failed: {r.exit} "
                         "| | | | | | |")
    lines += ["", "| tree | connections | B per extra connection | goal ≤ 1,024 |",
              "| --- | --- | ---: | --- |"]
    for small, large, slope in slopes(results):
        lines.append(f"| {large.tree} | {small.connections:,} → {large.connections:,} | {slope:,.0f} "
                     f"| {'met' if slope <= GOAL_BYTES else 'not met'} |")
    return "\n".join(lines)


def positive(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--connections", type=positive, action="append",
                    help=f"connections in the capture, repeatable (default: "
                         f"{' and '.join(f'{n:,}' for n in DEFAULT_SIZES)})")
    ap.add_argument("--tree", type=Path, action="append",
                    help="checkout whose analyzer/ is run, repeatable (default: this one)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/ws-bench"),
                    help="where the captures are written and reused (default: /tmp/ws-bench)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="baseline = RSS after the imports alone, no warm-up analysis")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is killed")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table at the end")
    args = ap.parse_args(argv)
    try:
        trees = [check_tree(t) for t in args.tree or [ROOT]]
        sizes = sorted(set(args.connections or DEFAULT_SIZES))
        warmup = None if args.no_warmup else capture(args.dir, 1)
        captures = {n: capture(args.dir, n) for n in sizes}
    except BenchError as exc:
        print(f"connections.py: error: {exc}", file=sys.stderr)
        return 2
    results = []
    print(LEGEND + "\n\n" + HEAD + "\n" + "-" * len(HEAD), flush=True)
    for tree in trees:
        for n in sizes:
            results.append(measure(tree, captures[n], n, warmup, args.timeout))
            print(row(results[-1]), flush=True)
    print("\n" + report(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    if args.markdown:
        print("\n" + markdown(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

