"""The cost of wss:// (issue 15's speed goal): the analyzer, and tshark for reference, on a plain
capture and a TLS capture of the same traffic, their runs alternated.

    python benchmarks/tls_pair.py PLAIN TLS [--rounds 3] [--jobs default --jobs 1]
                                  [--tshark-rounds 1] [--keylog KEYS] [--json OUT]

PLAIN and TLS are recorded by `make_capture.py` with the same mix, seeds and endings, TLS with
`--tls` (its key log, `TLS.keylog`, is found through TLS's sidecar unless --keylog is given). Each
run is a fresh process, as in `run.py` (same children): wall time around it, CPU time (user +
system, worker processes included) from wait4(2), and the child's own analyze() time. Every round
runs each jobs setting on both captures, plain first in even rounds and TLS first in odd ones, so
a slow minute of the shared machine falls on both.

The two recordings stop at a packet target, so they hold nearly, not exactly, the same frames
(TLS records and handshakes take packets too): the ratio TLS / plain is given on the best times
and per frame found (seconds per frame, TLS over plain); the goal, ≤ 1.5, is judged per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402  (needs ROOT on the path)

GOAL = 1.5          # TLS seconds / plain seconds on the same traffic, at most (issue 15)
CAPTURES = ("plain", "tls")


@dataclass(frozen=True)
class Spread:
    """Best, median and worst of a few runs of one measure."""

    best: float
    median: float
    worst: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no runs to summarise")
        ordered = sorted(values)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return cls(ordered[0], median, ordered[-1])

    def __str__(self) -> str:
        return f"{self.best:7.2f} ({self.median:.2f}, {self.worst:.2f})"


@dataclass(frozen=True)
class Ratio:
    """TLS over plain for one measure: on the best times, and per frame found."""

    whole: float
    per_frame: float

    @classmethod
    def of(cls, plain: float, tls: float, plain_frames: int, tls_frames: int) -> Ratio:
        if plain <= 0 or plain_frames <= 0 or tls_frames <= 0:
            raise ValueError(f"cannot compare: plain {plain} s, frames {plain_frames} / {tls_frames}")
        whole = tls / plain
        return cls(whole, whole * plain_frames / tls_frames)

    @property
    def met(self) -> bool:
        return self.per_frame <= GOAL

    def __str__(self) -> str:
        return (f"{self.whole:5.2f}  per frame {self.per_frame:5.2f}   goal ≤ {GOAL:g}   "
                f"{'MET' if self.met else 'NOT MET'}")


def jobs_label(jobs: int | None) -> str:
    return "jobs=default" if jobs is None else f"jobs={jobs}"


def parse_jobs(text: str) -> int | None:
    if text == "default":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'default', found {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, found {n}")
    return n


def plan(rounds: int, variants: list[str]) -> list[tuple[str, str]]:
    """(variant, capture) in the order they run: each round every variant on both captures,
    plain first in even rounds, TLS first in odd ones."""
    order = []
    for r in range(rounds):
        captures = CAPTURES if r % 2 == 0 else CAPTURES[::-1]
        order += [(variant, capture) for variant in variants for capture in captures]
    return order


def measure_pair(files: dict[str, Path], keylogs: list[Path], args: argparse.Namespace) -> dict:
    """Run everything; returns {variant: {capture: [Run, ...]}}."""
    variants = {jobs_label(j): j for j in args.jobs}
    runs: dict[str, dict[str, list[bench.Run]]] = {}
    steps = plan(args.rounds, list(variants))
    if not args.skip_tshark:
        steps += plan(args.tshark_rounds, ["tshark"])
    with tempfile.TemporaryDirectory(prefix=".tls-pair-", dir=files["plain"].parent) as tmp:
        tmpdir = Path(tmp)
        for step, (variant, capture) in enumerate(steps, 1):
            path = files[capture]
            print(f"  [{step}/{len(steps)}] {variant:<14} {capture:<5} …", end="", flush=True)
            if variant == "tshark":
                rules = bench.decode_as(bench.sidecar(path), [])
                run = bench.run_tshark(path, rules, tmpdir, keylogs if capture == "tls" else [])
            else:
                kwargs: dict = {} if variants[variant] is None else {"jobs": variants[variant]}
                if capture == "tls":
                    kwargs["keylog"] = [str(p) for p in keylogs]
                run = bench.run_python(bench.ANALYZER_CHILD, path, tmpdir, kwargs)
            print(f" {run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s CPU"
                  + ("" if run.returncode == 0 else f", exit {run.returncode}"), flush=True)
            if run.returncode != 0:
                print(run.stderr_tail.rstrip()[-2000:])
                raise SystemExit(1)
            runs.setdefault(variant, {}).setdefault(capture, []).append(run)
    return runs


def frames_of(run: bench.Run) -> int:
    return int(run.info.get("frames", 0))


def report(files: dict[str, Path], runs: dict[str, dict[str, list[bench.Run]]]) -> str:
    """The table (best, then median and worst in brackets) and the TLS / plain ratios."""
    head = (f"{'tool':<14} {'capture':<7} {'frames':>9} {'wall s best (median, worst)':>28} "
            f"{'CPU s best (median, worst)':>28} {'analyze() s best':>17}")
    lines = [f"plain: {files['plain']}", f"tls:   {files['tls']}", "", head, "-" * len(head)]
    ratios = []
    for variant, by_capture in runs.items():
        best = {}
        for capture in CAPTURES:
            rs = by_capture.get(capture, [])
            if not rs:
                continue
            wall, cpu = Spread.of([r.seconds for r in rs]), Spread.of([r.cpu_seconds for r in rs])
            inner = [r.info["analyze_s"] for r in rs if "analyze_s" in r.info]
            best[capture] = (wall.best, cpu.best, min(inner) if inner else None, frames_of(rs[-1]))
            lines.append(f"{variant:<14} {capture:<7} {frames_of(rs[-1]):>9,} {wall!s:>28} {cpu!s:>28} "
                         + (f"{min(inner):17.2f}" if inner else f"{'':>17}"))
        if len(best) == 2 and best["plain"][3] and best["tls"][3]:
            (pw, pc, pa, pf), (tw, tc, ta, tf) = best["plain"], best["tls"]
            ratios.append(f"  {variant:<14} wall      {Ratio.of(pw, tw, pf, tf)}")
            ratios.append(f"  {variant:<14} CPU       {Ratio.of(pc, tc, pf, tf)}")
            if pa is not None and ta is not None:
                ratios.append(f"  {variant:<14} analyze() {Ratio.of(pa, ta, pf, tf)}")
    lines += ["", "TLS / plain (best times; per frame = seconds per frame found, TLS over plain):", *ratios]
    tls_info = next((rs["tls"][-1].info for v, rs in runs.items() if v != "tshark" and rs.get("tls")), {})
    tshark_tls = runs.get("tshark", {}).get("tls")
    if tls_info:
        lines += ["", "analyzer on the TLS capture: " + ", ".join(
            f"{tls_info.get(k, 0):,} {k}" for k in ("frames", "messages", "connections", "problems"))]
        lines += bench.kinds_lines(tls_info)
        if tshark_tls:
            found, ref = tls_info.get("frames", 0), tshark_tls[-1].info.get("frames", 0)
            lines.append(f"  frames: analyzer {found:,} vs tshark {ref:,} ({found - ref:+,})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plain", type=Path, help="the ws:// capture")
    ap.add_argument("tls", type=Path, help="the wss:// capture of the same traffic")
    ap.add_argument("--rounds", type=int, default=3, help="analyzer runs per capture and jobs setting")
    ap.add_argument("--jobs", type=parse_jobs, action="append", metavar="N|default",
                    help="the analyzer's jobs= settings to measure (repeatable; default: default and 1)")
    ap.add_argument("--tshark-rounds", type=int, default=1, help="tshark runs per capture")
    ap.add_argument("--skip-tshark", action="store_true")
    ap.add_argument("--keylog", type=Path, action="append", metavar="KEYS",
                    help="key log of the TLS capture (repeatable; default: the one its sidecar names)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write every run here")
    args = ap.parse_args(argv)
    args.jobs = args.jobs or [None, 1]
    files = {"plain": args.plain.resolve(), "tls": args.tls.resolve()}
    for f in files.values():
        if not f.is_file():
            print(f"tls_pair.py: {f}: no such file (make it with benchmarks/make_capture.py)",
                  file=sys.stderr)
            return 2
    keylogs = bench.keylogs_for(files["tls"], args.keylog)
    if not keylogs:
        print(f"tls_pair.py: no key log for {files['tls']}: give --keylog", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"analyzer at {bench.code_version()}; key log {', '.join(map(str, keylogs))}")
    runs = measure_pair(files, keylogs, args)
    print("\n" + report(files, runs))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({v: {c: [asdict(r) for r in rs] for c, rs in by.items()}
                                         for v, by in runs.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
