"""Time ws-analyzer against tshark and the raw-reader floor on the same capture, side by side.

    python benchmarks/run.py [FILE ...] [--skip-tshark] [--repeat N] [--profile [--profiler NAME]]
                             [--keylog KEYS] [--jobs N]
    python benchmarks/run.py --shapes [DIR] [--sizes 100k,1m] [--repeat N] [--json OUT]

Each tool runs in a fresh subprocess; its wall time is measured around it and its peak RSS is the
child's `ru_maxrss` from wait4(2), so every figure belongs to that one tool:

* analyzer: `analyzer.analyze(FILE[, keylog=KEYS][, jobs=N])` end to end, file → four DataFrames
  (interpreter start and imports included; the child also reports its own import and analyze()
  times, the peak RSS of its worker process and the deep size of the four DataFrames; the RSS of
  the imports alone is measured in a separate process);
* tshark:   `tshark -r FILE -o tcp.reassemble_out_of_order:TRUE -Y websocket -T fields -e …`,
  with `-d tcp.port==P,http` for the ports named in FILE's make_capture.py sidecar (`FILE.json`;
  `-d tcp.port==P,tls` for a `make_capture.py --tls` capture) and `-o tls.keylog_file:KEYS`;
* floor:    scapy `RawPcapReader` asked for whole records, `struct` decoding of Ethernet/IPv4/TCP
  and a slice of each payload, nothing else: what any Python pipeline on scapy must pay at least.

The table gives seconds, packets/s, MB/s, peak RSS and frames found for each, then the ratios
against the goals of the performance issue. Results are kept in `FILE.results.json`: with
--skip-tshark the last tshark measurement of the same file is shown, marked as cached.
--profile runs the analyzer once more under pyinstrument (else cProfile) and prints the top
functions by cumulative and by own time.

--shapes (issue 21) measures every capture shape of DIR (default /tmp/bench/shapes: files named
SHAPE-SIZE.pcap, made by `make_capture.py --shape SHAPE`), end to end (process start to exit), four
commands a round, their order turned by one each round (alternating the tools run by run):
`python -c "import analyzer; analyzer.analyze(F)"`, the same with jobs=1 (one process), `ws-analyzer
summary F` and tshark's command above. Per shape and round it prints wall and CPU seconds (user+sys
of the child and its children, from wait4) and the ratios against tshark's in the same round: end to
end for analyze() and summary (goal <= 1/3) and one-process CPU (jobs=1's CPU / tshark's; goal
<= 1/3); then, over the rounds, the best and the spread. The load average is printed beside each round.

TLS: `--keylog KEYS` (repeatable) goes to the analyzer (`keylog=`) and to tshark (`-o
tls.keylog_file:`, the files joined into one, as tshark takes one); without it, the key log named
in FILE's sidecar (`make_capture.py --tls` writes `FILE.keylog`) is used.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_FILE = HERE / "data" / "bench.pcap"

# Goals from the performance issue.
GOAL_SPEEDUP = 3.0        # tshark seconds / analyzer seconds, at least
GOAL_FLOOR = 3.0          # analyzer seconds / floor seconds, at most
GOAL_RSS = 0.5            # analyzer peak RSS / tshark peak RSS, at most

TSHARK_FIELDS = ["frame.number", "websocket.opcode", "websocket.fin", "websocket.payload_length",
                 "websocket.mask"]

ANALYZER_CHILD = r"""
import json, resource, sys, time
kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}   # keylog=, jobs=
t0 = time.perf_counter()
import analyzer
analyze = analyzer.analyze   # the package loads its API lazily: pay for those imports here
# (pandas is left to analyze(), which loads it while its worker processes already read the file)
t1 = time.perf_counter()
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
rss_imports = rss_mb()
a = analyze(sys.argv[1], **kwargs)
t2 = time.perf_counter()
tables = {n: getattr(a, n) for n in ("connections", "frames", "messages", "problems")}
out = {"frames": len(a.frames), "messages": len(a.messages), "connections": len(a.connections),
       "problems": len(a.problems), "import_s": t1 - t0, "analyze_s": t2 - t1,
       "rss_after_import_mb": rss_imports, "rss_end_mb": rss_mb(),
       "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
       "packets": sum(getattr(c, "packets", 0) for c in getattr(a, "captures", []) or [])}
print("BENCH " + json.dumps(out), flush=True)
out["tables_mb"] = sum(int(df.memory_usage(deep=True).sum()) for df in tables.values()) / 1e6
out["problem_kinds"] = {str(k): int(v) for k, v in a.problems["kind"].value_counts().head(8).items()} \
    if len(a.problems) else {}
if "transport" in a.connections:
    out["transports"] = {str(k): int(v) for k, v in a.connections["transport"].value_counts().items()}
print("BENCH " + json.dumps(out), flush=True)
"""

FLOOR_CHILD = r"""
import json, struct, sys, time
t0 = time.perf_counter()
from scapy.utils import RawPcapReader
# scapy's _read_packet(size) keeps data[:size] (default MTU = 65,535) of each record: ask for all of
# it (it reads at most 4 x 65,535 bytes of a record, more than a loopback packet's 65,549).
WHOLE = 1 << 20
ETHERTYPE = struct.Struct("!H")
IPV4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
reader = RawPcapReader(sys.argv[1])
read = reader._read_packet
unpack_eth, unpack_ip, unpack_tcp = ETHERTYPE.unpack_from, IPV4.unpack_from, TCP.unpack_from
records = segments = payload_bytes = 0
try:
    while True:
        try:
            data, _meta = read(WHOLE)
        except EOFError:
            break
        records += 1
        if len(data) < 34 or unpack_eth(data, 12)[0] != 0x0800:
            continue
        vihl, _tos, total, _id, _frag, _ttl, proto, _sum, src, dst = unpack_ip(data, 14)
        if proto != 6:
            continue
        ihl = (vihl & 15) * 4
        sport, dport, seq, ack, off, flags, _win, _csum, _urg = unpack_tcp(data, 14 + ihl)
        start = 14 + ihl + (off >> 4) * 4
        payload = data[start:14 + total]
        segments += 1
        payload_bytes += len(payload)
finally:
    reader.close()
print("BENCH " + json.dumps({"packets": records, "segments": segments, "payload_bytes": payload_bytes,
                             "elapsed_inner_s": time.perf_counter() - t0}), flush=True)
"""


@dataclass
class Run:
    """One measured subprocess."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    returncode: int
    info: dict = field(default_factory=dict)
    stderr_tail: str = ""


@dataclass
class Result:
    """All runs of one tool on one file, summarised: best time, highest peak RSS."""

    tool: str
    runs: list[Run]
    cached: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.returncode == 0 for r in self.runs)

    @property
    def seconds(self) -> float:
        return min(r.seconds for r in self.runs)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def rss(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    @property
    def info(self) -> dict:
        return self.runs[-1].info if self.runs else {}


def measure(cmd: list[str], *, stdout=subprocess.DEVNULL, env: dict | None = None) -> Run:
    """Run `cmd` to completion; wall time around it, CPU time and peak RSS from wait4(2)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-4000:].decode(errors="replace")
    return Run(seconds=seconds, cpu_seconds=usage.ru_utime + usage.ru_stime,
               peak_rss_mb=usage.ru_maxrss / 1024, returncode=proc.returncode, stderr_tail=tail)


def bench_lines(path: Path) -> dict:
    """The last `BENCH {json}` line a child printed."""
    info: dict = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("BENCH "):
            info = json.loads(line[6:])
    return info


#: compiled modules of the children, kept outside the checkout
PYCACHE = Path(tempfile.gettempdir()) / "ws-analyzer-bench-pycache"


def child_env() -> dict[str, str]:
    """The environment for Python children: this checkout first on the path, and bytecode cached
    (in PYCACHE) even where PYTHONDONTWRITEBYTECODE is set: an installed package has its .pyc
    files, and compiling the analyzer's modules at every start cost ~0.2 s CPU (issue 21)."""
    path = [str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    return env


def run_python(script: str, capture: Path, tmpdir: Path, kwargs: dict | None = None) -> Run:
    """`script` on `capture` in a fresh interpreter; `kwargs` (JSON) go to analyze() in the analyzer's
    child, as its second argument."""
    out = tmpdir / "child.out"
    argv = [sys.executable, "-c", script, str(capture)] + ([json.dumps(kwargs)] if kwargs else [])
    with out.open("wb") as f:
        run = measure(argv, stdout=f, env=child_env())
    run.info = bench_lines(out)
    out.unlink()
    return run


IMPORTS_CHILD = r"""
import analyzer.api, analyzer.merge, pandas, pyarrow   # everything analyze() loads
with open("/proc/self/status") as f:
    print([int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:")][0])
"""


# --------------------------------------------------------------------------------------------
# --shapes (issue 21): every capture shape, end to end, the tools alternating run by run

SHAPES_DIR = Path("/tmp/bench/shapes")
GOAL_SHAPES = 1 / 3       # analyzer / tshark, end to end and in CPU time of one process, at most
SHAPE_TOOLS = ("analyze", "jobs=1", "summary", "tshark")


def shape_files(folder: Path, sizes: list[str]) -> list[Path]:
    """SHAPE-SIZE.pcap files of `folder`, size by size (in the order given), shapes by name."""
    found = []
    for size in sizes:
        found += sorted(p for p in folder.glob(f"*-{size}.pcap") if p.exists())
    return [p.resolve() for p in found]     # a link: the sidecar (ports for tshark) is beside its target


def shape_commands(capture: Path, summary: list[str]) -> dict[str, list[str]]:
    """The four commands of one capture; `summary` is the ws-analyzer command (its words before
    `summary`)."""
    run = "import analyzer, sys; analyzer.analyze(sys.argv[1]{})"
    return {"analyze": [sys.executable, "-c", run.format(""), str(capture)],
            "jobs=1": [sys.executable, "-c", run.format(", jobs=1"), str(capture)],
            "summary": [*summary, "summary", str(capture)],
            "tshark": tshark_cmd(capture, decode_as(sidecar(capture), []))}


def shape_round(capture: Path, commands: dict[str, list[str]], turn: int) -> dict:
    """One run of each command, starting with the `turn`-th; the load average before and after."""
    order = list(commands)[turn % len(commands):] + list(commands)[:turn % len(commands)]
    runs: dict[str, Run] = {}
    load = [os.getloadavg()[0]]
    for tool in order:
        run = measure(commands[tool], env=child_env())
        if run.returncode != 0:
            print(f"    {tool} failed (exit {run.returncode}): {run.stderr_tail.strip()[-500:]}")
        runs[tool] = run
    load.append(os.getloadavg()[0])
    return {"order": order, "load": load,
            "runs": {t: {"wall": r.seconds, "cpu": r.cpu_seconds, "rss_mb": r.peak_rss_mb, "rc": r.returncode}
                     for t, r in runs.items()}}


def shape_ratios(one: dict) -> dict[str, float]:
    """A round's ratios against tshark: end to end (wall) for analyze() and summary, one-process
    CPU for jobs=1, peak RSS for analyze() (nan for a tool not run)."""
    r, nan = one["runs"], float("nan")
    t = r.get("tshark")
    if t is None:
        return dict.fromkeys(("analyze_wall", "summary_wall", "jobs1_cpu", "rss"), nan)

    def of(tool: str, key: str) -> float:
        return r[tool][key] / t[key] if tool in r and t[key] else nan

    return {"analyze_wall": of("analyze", "wall"), "summary_wall": of("summary", "wall"),
            "jobs1_cpu": of("jobs=1", "cpu"), "rss": of("analyze", "rss_mb")}


def shape_lines(capture: Path, rounds: list[dict]) -> list[str]:
    """Per round: seconds and ratios; then best and spread over the rounds."""
    meta = sidecar(capture)
    packets = meta.get("packets") or 0
    lines = [f"{capture.name}: {packets:,} packets, {capture.stat().st_size / 1e6:,.1f} MB, "
             f"shape {meta.get('shape', 'mix')}, tshark {' '.join(decode_as(meta, [])) or 'without -d'}"]
    for k, one in enumerate(rounds, 1):
        cells = "  ".join(f"{t} {v['wall']:.2f}/{v['cpu']:.2f}" for t, v in one["runs"].items())
        ratios = shape_ratios(one)
        lines.append(f"  round {k} (load {one['load'][0]:.1f}->{one['load'][1]:.1f}), wall/CPU s: {cells}")
        lines.append(f"    end to end: analyze {ratios['analyze_wall']:.2f}, "
                     f"summary {ratios['summary_wall']:.2f} of tshark; "
                     f"one-process CPU (jobs=1) {ratios['jobs1_cpu']:.2f}; "
                     f"peak RSS {ratios['rss']:.2f}")
    if len(rounds) > 1:
        for key, title in (("analyze_wall", "analyze end to end"), ("summary_wall", "summary end to end"),
                           ("jobs1_cpu", "one-process CPU")):
            vals = [v for one in rounds if (v := shape_ratios(one)[key]) == v]    # not nan
            if not vals:
                continue
            lines.append(f"  {title}: best {min(vals):.2f}, spread {min(vals):.2f}-{max(vals):.2f} "
                         f"(goal <= {GOAL_SHAPES:.2f}: {'MET' if min(vals) <= GOAL_SHAPES else 'NOT MET'})")
    return lines


def shape_markdown(results: dict[str, list[dict]]) -> list[str]:
    """Every round as a Markdown table row: seconds wall (CPU) per tool, then the ratios."""
    head = ("| capture | load | analyze s (CPU) | jobs=1 s (CPU) | summary s (CPU) | tshark s (CPU) "
            "| analyze / tshark | summary / tshark | jobs=1 CPU / tshark CPU | peak RSS / tshark |")
    lines = [head, "|" + " --- |" * 2 + " ---: |" * 8]
    for name, rounds in results.items():
        for one in rounds:
            r, q = one["runs"], shape_ratios(one)
            cells = " | ".join(f"{r[t]['wall']:.2f} ({r[t]['cpu']:.2f})" if t in r else "-"
                               for t in SHAPE_TOOLS)
            lines.append(f"| {Path(name).name} | {one['load'][0]:.1f}-{one['load'][1]:.1f} | {cells} "
                         f"| {q['analyze_wall']:.2f} | {q['summary_wall']:.2f} | {q['jobs1_cpu']:.2f} "
                         f"| {q['rss']:.2f} |")
    return lines


def run_shapes(folder: Path, sizes: list[str], repeat: int, summary: list[str], json_out: Path | None,
               tools: list[str]) -> int:
    files = shape_files(folder, sizes)
    if not files:
        print(f"run.py: no SHAPE-SIZE.pcap in {folder} for sizes {','.join(sizes)} "
              "(make them with benchmarks/make_capture.py --shape S --out ...)", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}; analyzer at {code_version()}; "
          f"summary: {' '.join(summary)}")
    # one untimed run of each Python command on a small capture: the bytecode cache is written
    for cmd in shape_commands(REPO / "captures" / "aiohttp_compress.pcap", summary).values():
        if cmd[0] != "tshark":
            measure(cmd, env=child_env())
    results: dict[str, list[dict]] = {}
    rc = 0
    for capture in files:
        rounds = []
        for turn in range(repeat):
            commands = {t: c for t, c in shape_commands(capture, summary).items() if t in tools}
            rounds.append(shape_round(capture, commands, turn))
            rc |= any(v["rc"] != 0 for v in rounds[-1]["runs"].values())
        results[str(capture)] = rounds
        print("\n".join(shape_lines(capture, rounds)), flush=True)
        if json_out is not None:
            json_out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + "\n".join(shape_markdown(results)))
    return rc


@functools.lru_cache(maxsize=1)
def imports_rss_mb() -> float:
    """RSS of a process that has loaded what analyze() needs (analyze() itself loads pandas while
    its workers run, so the analyzer child cannot measure this before it starts)."""
    out = subprocess.run([sys.executable, "-c", IMPORTS_CHILD], capture_output=True, text=True,
                         env=child_env(), check=False)
    try:
        return float(out.stdout.strip())
    except ValueError:
        return 0.0


def tshark_cmd(capture: Path, decode_as: list[str], keylog: Path | None = None) -> list[str]:
    """tshark's command: `decode_as` are `-d` rules ("tcp.port==P,http"), `keylog` its one key log."""
    cmd = ["tshark", "-r", str(capture), "-o", "tcp.reassemble_out_of_order:TRUE"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for rule in decode_as:
        cmd += ["-d", rule]
    cmd += ["-Y", "websocket", "-T", "fields"]
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    return cmd


def run_tshark(capture: Path, decode_as: list[str], tmpdir: Path, keylogs: list[Path] | None = None) -> Run:
    """tshark's output goes to a file (not a pipe we would have to read while timing), then is
    counted: one line per packet with WebSocket frames, the opcodes comma-separated."""
    out = tmpdir / "tshark.out"
    with out.open("wb") as f:
        run = measure(tshark_cmd(capture, decode_as, one_keylog(keylogs or [], tmpdir)), stdout=f)
    lines = frames = 0
    with out.open("rb") as f:
        for line in f:
            lines += 1
            opcodes = line.split(b"\t")[1] if b"\t" in line else b""
            frames += opcodes.count(b",") + 1 if opcodes.strip() else 0
    out.unlink()
    run.info = {"lines": lines, "frames": frames}
    return run


def one_keylog(keylogs: list[Path], tmpdir: Path) -> Path | None:
    """The one file tshark's `tls.keylog_file` takes: the only one given, or all joined in tmpdir."""
    if len(keylogs) <= 1:
        return keylogs[0] if keylogs else None
    joined = tmpdir / "keylog.joined"
    joined.write_bytes(b"\n".join(k.read_bytes() for k in keylogs) + b"\n")
    return joined


def sidecar(capture: Path) -> dict:
    side = capture.with_name(capture.name + ".json")
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return {}


def decode_as(meta: dict, extra_ports: list[int]) -> list[str]:
    """tshark's `-d` rules for a capture: the sidecar's (ports as HTTP, or as TLS for a --tls
    capture; older sidecars name only the ports), then the extra ports as HTTP."""
    rules = meta.get("tshark_decode_as") or [
        f"tcp.port=={p},http" for p in (meta.get("ws_port"), meta.get("aiohttp_port")) if p]
    return list(rules) + [f"tcp.port=={p},http" for p in extra_ports]


def keylogs_for(capture: Path, given: list[Path] | None) -> list[Path]:
    """The key logs given (--keylog), else the one the capture's sidecar names, if any."""
    if given:
        return [k.resolve() for k in given]      # the children run in the checkout, not here
    name = sidecar(capture).get("tls", {}).get("keylog")
    return [capture.with_name(name)] if name else []


def analyzer_kwargs(capture: Path, args: argparse.Namespace) -> dict:
    """What the analyzer child passes to analyze(): keylog= (paths) and jobs=, when set."""
    kwargs: dict = {}
    keylogs = keylogs_for(capture, args.keylog)
    if keylogs:
        kwargs["keylog"] = [str(k) for k in keylogs]
    if args.jobs is not None:
        kwargs["jobs"] = args.jobs
    return kwargs


def load_cache(capture: Path) -> dict:
    try:
        return json.loads(capture.with_name(capture.name + ".results.json").read_text())
    except (OSError, ValueError):
        return {}


def save_cache(capture: Path, results: list[Result]) -> None:
    cache = load_cache(capture)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    st = capture.stat()
    for r in results:
        if r.ok and not r.cached:
            cache[r.tool] = {"when": stamp, "file_bytes": st.st_size, "file_mtime": st.st_mtime,
                             "runs": [asdict(run) for run in r.runs]}
    capture.with_name(capture.name + ".results.json").write_text(json.dumps(cache, indent=1) + "\n")


def cached_result(capture: Path, tool: str) -> Result | None:
    entry = load_cache(capture).get(tool)
    st = capture.stat()
    if not entry or entry.get("file_bytes") != st.st_size or entry.get("file_mtime") != st.st_mtime:
        return None
    return Result(tool, [Run(**run) for run in entry["runs"]], cached=entry["when"])


# --------------------------------------------------------------------------------------------
# the table


def kinds_lines(info: dict) -> list[str]:
    """The analyzer child's connections by transport and problem kinds, a line each when any."""
    named = (("transports", "connections by transport"), ("problem_kinds", "problem kinds"))
    return [f"  {title}: " + ", ".join(f"{k} {v:,}" for k, v in info[key].items())
            for key, title in named if info.get(key)]


def fmt_ratio(value: float | None, goal: float, at_least: bool) -> str:
    if value is None:
        return "n/a"
    met = value >= goal if at_least else value <= goal
    return f"{value:6.2f}   goal {'≥' if at_least else '≤'} {goal:g}   {'MET' if met else 'NOT MET'}"


def report(capture: Path, results: dict[str, Result], packets: int) -> str:
    size = capture.stat().st_size
    lines = [f"{capture}  {size / 1e6:,.1f} MB, {packets:,} packets", ""]
    head = f"{'tool':<10} {'seconds':>9} {'median':>8} {'cpu s':>7} {'packets/s':>11} {'MB/s':>7} " \
           f"{'peak RSS MB':>12}  frames found"
    lines += [head, "-" * len(head)]
    for name in ("analyzer", "tshark", "floor"):
        r = results.get(name)
        if r is None:
            continue
        if not r.ok:
            err = r.runs[-1].stderr_tail.strip().splitlines()[-1:] if r.runs else ["not run"]
            lines.append(f"{name:<10} FAILED (exit {r.runs[-1].returncode if r.runs else '-'}): "
                         f"{err[0] if err else ''}")
            continue
        s = r.seconds
        cpu = min(run.cpu_seconds for run in r.runs)
        if name == "analyzer":
            i = r.info
            found = (f"{i.get('frames', 0):,} frames, {i.get('messages', 0):,} messages, "
                     f"{i.get('connections', 0):,} connections, {i.get('problems', 0):,} problems")
        elif name == "tshark":
            found = f"{r.info.get('frames', 0):,} frames in {r.info.get('lines', 0):,} packets"
        else:
            found = (f"({r.info.get('segments', 0):,} TCP segments, "
                     f"{r.info.get('payload_bytes', 0) / 1e6:,.1f} MB payload)")
        tag = f"  [cached {r.cached}]" if r.cached else ""
        lines.append(f"{name:<10} {s:9.2f} {r.median:8.2f} {cpu:7.2f} {packets / s:11,.0f} "
                     f"{size / 1e6 / s:7.1f} {r.rss:12,.0f}  {found}{tag}")
    a, t, f = (results.get(k) for k in ("analyzer", "tshark", "floor"))
    a_ok, t_ok = (x is not None and x.ok for x in (a, t))
    lines += ["", "ratios against the goals (wall time; [CPU time] in brackets, fairer on a loaded machine):"]

    def ratio(num: Result | None, den: Result | None) -> tuple[float | None, str]:
        """num/den on best wall time, and the same on CPU time as a bracketed string."""
        if num is None or den is None or not (num.ok and den.ok):
            return None, ""
        cpu_num, cpu_den = (min(run.cpu_seconds for run in r.runs) for r in (num, den))
        return num.seconds / den.seconds, f"  [{cpu_num / cpu_den:.2f}]" if cpu_den else ""

    speed, speed_cpu = ratio(t, a)
    floor, floor_cpu = ratio(a, f)
    lines.append("  speed-up over tshark      (tshark s / analyzer s)      "
                 + fmt_ratio(speed, GOAL_SPEEDUP, True) + speed_cpu)
    lines.append("  distance to the floor     (analyzer s / floor s)       "
                 + fmt_ratio(floor, GOAL_FLOOR, False) + floor_cpu)
    lines.append("  memory against tshark     (analyzer RSS / tshark RSS)  "
                 + fmt_ratio(a.rss / t.rss if a_ok and t_ok else None, GOAL_RSS, False))
    if a_ok:
        i = a.info
        imports_mb = imports_rss_mb()
        work = a.rss - imports_mb - i.get("tables_mb", 0)
        lines += ["", "analyzer detail:",
                  f"  interpreter start + imports {i.get('import_s', 0):.2f} s, "
                  f"analyze() {i.get('analyze_s', 0):.2f} s",
                  f"  RSS after imports {imports_mb:.0f} MB (separate process); "
                  f"four DataFrames {i.get('tables_mb', 0):.0f} MB (deep); "
                  f"peak beyond both ≈ {work:.0f} MB (should not grow with the file)"]
        if i.get("worker_rss_mb"):
            both = a.rss + i["worker_rss_mb"]
            lines.append(f"  worker process peak RSS {i['worker_rss_mb']:.0f} MB (the table's figure is the "
                         f"calling process, the larger one); both together {both:,.0f} MB"
                         + (f" = {both / t.rss:.2f} of tshark's" if t_ok else ""))
        lines += kinds_lines(i)
    if a_ok and t_ok:
        af, tf = a.info.get("frames", 0), t.info.get("frames", 0)
        lines.append(f"  frames: analyzer {af:,} vs tshark {tf:,} ({af - tf:+,})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# profiling


PROFILE_CHILD = r"""
import json, sys, os
path, which, top, dump = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
kwargs = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}   # keylog=, jobs=
import analyzer

def show(title, rows):
    print(f"\n== top {top} by {title} ==")
    print(f"{'cumulative s':>12} {'own s':>9} {'calls':>10}  function")
    for cum, own, calls, name in rows[:top]:
        print(f"{cum:12.2f} {own:9.2f} {calls:>10}  {name}")

if which == "pyinstrument":
    from pyinstrument import Profiler
    prof = Profiler(interval=0.001)
    prof.start()
    analyzer.analyze(path, **kwargs)
    prof.stop()
    with open(dump, "w") as f:
        f.write(prof.output_text(unicode=True, color=False, show_all=False))
    root = prof.last_session.root_frame()
    total = root.time if root else 0.0
    agg = {}
    def walk(frame, on_path):
        key = f"{frame.function}  {frame.file_path_short or frame.file_path or ''}:{frame.line_no or ''}"
        if not frame.is_synthetic:
            cum, own, n = agg.get(key, (0.0, 0.0, 0))
            agg[key] = (cum + (frame.time if key not in on_path else 0.0), own + frame.total_self_time, n + 1)
            on_path = on_path | {key}
        for child in frame.children:
            walk(child, on_path)
    if root is not None:
        walk(root, frozenset())
    rows = [(c, o, f"{n} nodes", k) for k, (c, o, n) in agg.items()]
    print(f"pyinstrument, {total:.2f} s sampled (1 ms); own time of C functions is charged to their caller")
    show("cumulative time", sorted(rows, key=lambda r: -r[0]))
    show("own time", sorted(rows, key=lambda r: -r[1]))
else:
    import cProfile, pstats
    prof = cProfile.Profile()
    prof.enable()
    analyzer.analyze(path, **kwargs)
    prof.disable()
    prof.dump_stats(dump)
    st = pstats.Stats(prof)
    rows = []
    for (file, line, func), (cc, nc, tt, ct, callers) in st.stats.items():
        short = file.replace(os.getcwd() + os.sep, "")
        if "site-packages" in short:
            short = short.split("site-packages" + os.sep, 1)[1]
        rows.append((ct, tt, nc, f"{func}  {short}:{line}"))
    print(f"cProfile, {st.total_tt:.2f} s of own time "
          "(deterministic: per-call overhead inflates small functions)")
    show("cumulative time", sorted(rows, key=lambda r: -r[0]))
    show("own time", sorted(rows, key=lambda r: -r[1]))
"""


def profile(capture: Path, which: str, top: int, kwargs: dict | None = None) -> int:
    if which == "auto":
        try:
            import pyinstrument  # noqa: F401

            which = "pyinstrument"
        except ImportError:
            which = "cprofile"
    dump = capture.with_name(capture.name + (".profile.txt" if which == "pyinstrument" else ".prof"))
    shown = "".join(f", {k}={v!r}" for k, v in (kwargs or {}).items())
    print(f"\nprofiling analyzer.analyze({capture.name}{shown}) under {which}; full profile in {dump}",
          flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-c", PROFILE_CHILD, str(capture), which, str(top), str(dump),
                          json.dumps(kwargs or {})], env=child_env(), cwd=REPO)
    print(f"(profiled run took {time.perf_counter() - t0:.1f} s)")
    return rc


# --------------------------------------------------------------------------------------------


def bench_file(capture: Path, args: argparse.Namespace) -> dict[str, Result]:
    rules = decode_as(sidecar(capture), list(args.port or []))
    keylogs = keylogs_for(capture, args.keylog)
    kwargs = analyzer_kwargs(capture, args)
    results: dict[str, Result] = {}
    tools = [t for t in ("analyzer", "tshark", "floor") if t not in (args.skip or [])]
    if args.skip_tshark and "tshark" in tools:
        tools.remove("tshark")
        cached = cached_result(capture, "tshark")
        if cached is not None:
            results["tshark"] = cached
    if "tshark" in tools and shutil.which("tshark") is None:
        print("tshark is not installed: skipped (apt-get install -y tshark)")
        tools.remove("tshark")
    with tempfile.TemporaryDirectory(dir=capture.parent, prefix=".bench-") as tmp:
        tmpdir = Path(tmp)
        for tool in tools:
            runs = []
            for i in range(args.repeat):
                print(f"  {tool} run {i + 1}/{args.repeat} …", end="", flush=True)
                if tool == "analyzer":
                    run = run_python(ANALYZER_CHILD, capture, tmpdir, kwargs)
                elif tool == "floor":
                    run = run_python(FLOOR_CHILD, capture, tmpdir)
                else:
                    run = run_tshark(capture, rules, tmpdir, keylogs)
                print(f" {run.seconds:.2f} s, {run.peak_rss_mb:,.0f} MB"
                      + ("" if run.returncode == 0 else f", exit {run.returncode}"), flush=True)
                runs.append(run)
                if run.returncode != 0:
                    print(run.stderr_tail.rstrip()[-2000:])
                    break
            results[tool] = Result(tool, runs)
    save_cache(capture, list(results.values()))
    return results


def code_version() -> str:
    """The commit the analyzer was measured at, and whether analyzer/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "analyzer"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in analyzer/' if dirty else ''}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, metavar="FILE",
                    help=f"captures to measure (default {DEFAULT_FILE.relative_to(REPO)})")
    ap.add_argument("--skip-tshark", action="store_true",
                    help="do not run tshark; show its last cached measurement of the same file, if any")
    ap.add_argument("--skip", action="append", choices=("analyzer", "tshark", "floor"),
                    help="do not run this tool (repeatable)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the best time is reported")
    ap.add_argument("--port", type=int, action="append",
                    help="also decode this TCP port as HTTP in tshark (ports in FILE.json are added anyway)")
    ap.add_argument("--keylog", type=Path, action="append", metavar="KEYS",
                    help="TLS key log for the analyzer (keylog=) and tshark (-o tls.keylog_file:); "
                         "repeatable; default: the one named in FILE.json, if any")
    ap.add_argument("--jobs", type=int, help="the analyzer's jobs= (default: its own choice)")
    ap.add_argument("--profile", action="store_true",
                    help="then run the analyzer once more under a profiler and print its top functions")
    ap.add_argument("--profiler", choices=("auto", "pyinstrument", "cprofile"), default="auto")
    ap.add_argument("--top", type=int, default=30, help="functions shown per profile table")
    ap.add_argument("--profile-only", action="store_true", help="skip the timings, just profile")
    ap.add_argument("--shapes", nargs="?", type=Path, const=SHAPES_DIR, metavar="DIR",
                    help=f"every capture shape of DIR (default {SHAPES_DIR}), end to end against tshark")
    ap.add_argument("--sizes", default="100k,1m", help="with --shapes: the SIZE parts of the names, in order")
    ap.add_argument("--summary-cmd", default="ws-analyzer",
                    help="with --shapes: the command line before 'summary' (e.g. 'python3 -m analyzer')")
    ap.add_argument("--json", type=Path, help="with --shapes: write every run here")
    ap.add_argument("--tools", default=",".join(SHAPE_TOOLS),
                    help=f"with --shapes: which of {','.join(SHAPE_TOOLS)} to run (tshark for the ratios)")
    args = ap.parse_args(argv)
    if args.shapes is not None:
        return run_shapes(args.shapes, args.sizes.split(","), args.repeat, args.summary_cmd.split(),
                          args.json, args.tools.split(","))
    files = args.files or [DEFAULT_FILE]
    for f in files:
        if not f.is_file():
            print(f"run.py: {f}: no such file (make one with benchmarks/make_capture.py)", file=sys.stderr)
            return 2
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}; analyzer at {code_version()}")
    rc = 0
    for capture in files:
        capture = capture.resolve()
        if not args.profile_only:
            print(f"\n{capture.name}:")
            results = bench_file(capture, args)
            packets = sidecar(capture).get("packets") or next(
                (r.info.get("packets") for r in results.values() if r.ok and r.info.get("packets")), 0)
            print("\n" + report(capture, results, packets))
            load = os.getloadavg()[0]
            if load > (os.cpu_count() or 1) + 0.5:
                print(f"  note: load average {load:.1f} on {os.cpu_count()} CPUs: other work competed "
                      "for the CPUs, so wall times are inflated; compare the CPU times")
            rc |= any(not r.ok for r in results.values())
        if args.profile or args.profile_only:
            rc |= profile(capture, args.profiler, args.top, analyzer_kwargs(capture, args))
    return rc


if __name__ == "__main__":
    sys.exit(main())
