"""The notebook front: `analyze()` and the `Analysis` object that holds the four DataFrames."""

from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzer.capture import CaptureError
from analyzer.pipeline import ProgressCallback, analyze_file
from analyzer.session import Options
from analyzer.tables import TableRows

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only where the DataFrames are made: worker processes never need it, and the
# parent imports it while its workers already read the capture.

PathLike = str | os.PathLike[str]
SHARD_MIN_BYTES = 64 << 20    # below this, starting worker processes costs more than it saves


@dataclass
class CaptureInfo:
    """What was read of one capture file."""

    path: str
    name: str
    packets: int
    tcp_connections: int
    bytes: int


ShardResult = tuple[TableRows, "CaptureInfo"]


def _analyze_shard(path: str, name: str, options: Options, shard: tuple[int, int] = (0, 1),
                   progress: bool | ProgressCallback = False) -> ShardResult:
    """One capture (or one shard of it) to table rows; runs in a worker process when parallel."""
    callback = _progress_callback(progress, name)
    try:
        rows = analyze_file(path, options, capture_name=name, progress=callback, shard=shard)
    finally:
        if callback is not None and hasattr(callback, "close"):
            callback.close()
    return rows, CaptureInfo(path, name, rows.packets, rows.tcp_connections, rows.bytes_read)


def _unique_names(paths: Sequence[str]) -> list[str]:
    """Capture names for the `capture` column: the base name, or the path when base names clash;
    a file given twice gets "#2", "#3"… so that every analysed file keeps its own name."""
    distinct = {os.path.abspath(p): os.path.basename(p) for p in paths}
    bases = list(distinct.values())
    names = [os.path.basename(p) if bases.count(os.path.basename(p)) == 1 else p for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


@dataclass
class Analysis:
    """The result of `analyze()`: four DataFrames plus aggregates, plots and the report.

    Attributes:
        connections: one row per TCP connection that carried a WebSocket handshake or frames.
        frames: one row per WebSocket frame, in capture order.
        messages: one row per reassembled data message.
        problems: one row per protocol violation or capture defect.
        captures: what was read of each capture file.
    """

    connections: pd.DataFrame
    frames: pd.DataFrame
    messages: pd.DataFrame
    problems: pd.DataFrame
    captures: list[CaptureInfo] = field(default_factory=list)
    options: Options = field(default_factory=Options)

    # --- aggregates (stats.py) ---
    def summary(self) -> Any:
        """Headline statistics; see analyzer.stats.Summary (text via str(), dict via .to_dict())."""
        from analyzer.stats import summary
        return summary(self)

    def close_codes(self) -> pd.DataFrame:
        from analyzer.stats import close_codes
        return close_codes(self)

    def versions(self) -> pd.DataFrame:
        from analyzer.stats import versions
        return versions(self)

    def timeline(self, freq: str = "1s") -> pd.DataFrame:
        from analyzer.stats import timeline
        return timeline(self, freq=freq)

    @property
    def plot(self) -> Any:
        """Plot functions bound to this analysis: `a.plot.close_codes(ax=None)` → matplotlib Axes."""
        from analyzer.plots import PlotAccessor
        return PlotAccessor(self)

    def report(self, directory: PathLike) -> str:
        """Write index.html, figures (PNG, SVG) and tables (CSV, Parquet) into `directory`."""
        from analyzer.report import write_report
        return write_report(self, directory)

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self.captures) or "no capture"
        return (f"<Analysis of {names}: {len(self.connections)} WebSocket connections, "
                f"{len(self.frames)} frames, {len(self.messages)} messages, "
                f"{len(self.problems)} problems>")

    def _repr_html_(self) -> str:
        try:
            from analyzer.report import summary_html
        except ImportError:
            import html
            return "<pre>" + html.escape(repr(self)) + "</pre>"
        return summary_html(self)


def analyze(paths: PathLike | Iterable[PathLike], *, ports: Iterable[int] | None = None,
            max_message_bytes: int = 16 << 20, payloads: bool | float = False, preview_len: int = 64,
            validate_utf8: bool = True, progress: bool | ProgressCallback = False,
            jobs: int | None = None) -> Analysis:
    """Analyse one capture or several and return the four DataFrames.

    Args:
        paths: a pcap/pcapng file (gzipped or not), or a list of them.
        ports: TCP ports to treat as WebSocket even when no handshake is in the capture (captures
            that start mid-connection); the side on such a port is the server.
        max_message_bytes: largest frame buffered and message reassembled or decompressed; larger
            ones are counted and reported in `problems`, never held in memory.
        payloads: keep every message's whole payload in `messages.payload` (default: a preview
            only); a fraction such as 0.01 keeps a sample of the messages, chosen by message id.
        preview_len: characters (text) or bytes (binary, as hex) of the preview.
        validate_utf8: check text messages and close reasons for valid UTF-8.
        progress: True for a progress bar on stderr, or a callback (bytes read, file size).
        jobs: worker processes (None: one per core). Several captures are analysed side by side,
            and a capture of 64 MiB or more is split between the processes by connection. The
            tables are the same whatever the number; only on hostile input that reaches a memory
            cap (the caps are split between the processes) can which frames were counted rather
            than kept differ.

    Raises:
        CaptureError: a file cannot be read as a capture (not a capture, empty, missing, a folder).
    """
    single = isinstance(paths, (str, os.PathLike))
    path_list = [os.fspath(paths)] if single else [os.fspath(p) for p in paths]  # type: ignore[union-attr]
    sample = isinstance(payloads, float) and 0 < payloads < 1
    options = Options(ports=frozenset(int(p) for p in ports or ()),
                      max_message_bytes=int(max_message_bytes),
                      payloads=payloads if sample else bool(payloads),
                      preview_len=int(preview_len), validate_utf8=bool(validate_utf8))
    names = _unique_names(path_list)
    workers = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    per_file = [_shards_for(p, workers) for p in path_list]
    if workers == 1 or sum(per_file) == 1:
        results = [[_analyze_shard(p, n, options, (0, 1), progress)] for p, n in zip(path_list, names)]
    else:
        results = _run_parallel(path_list, names, per_file, options, workers, progress)
    from analyzer.merge import merge_captures, tables_from_rows
    infos = [_merge_info(shards) for shards in results]
    file_tables = [tables_from_rows([rows for rows, _ in shards]) for shards in results]
    del results
    tables = merge_captures(file_tables, names)
    return Analysis(captures=infos, options=options, **tables)


def _shards_for(path: str, workers: int) -> int:
    """How many processes share one capture: one per core for large files, else one."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return 1            # the reader reports the error itself
    return workers if workers > 1 and size >= SHARD_MIN_BYTES else 1


def _run_parallel(paths: list[str], names: list[str], per_file: list[int], options: Options,
                  workers: int, progress: bool | ProgressCallback) -> list[list[ShardResult]]:
    """Every (capture, shard) as a task, `workers` at a time: this process takes tasks from the
    front of the queue itself (its imports are done and its rows need no passing on), while
    `workers - 1` threads hand tasks from the back to `python -m analyzer.worker` subprocesses.
    Progress (a bar, or the callback) is shown for the shards this process analyses."""
    flat = [(i, p, n, (k, shards)) for i, (p, n, shards) in enumerate(zip(paths, names, per_file))
            for k in range(shards)]
    tasks = collections.deque((t, *task) for t, task in enumerate(flat))
    outputs: dict[int, ShardResult] = {}
    lock = threading.Lock()

    def take(front: bool) -> tuple | None:
        with lock:
            if not tasks:
                return None
            return tasks.popleft() if front else tasks.pop()

    def helper(tmp: str) -> None:
        while (task := take(front=False)) is not None:
            t, _, p, n, shard = task
            outputs[t] = _run_worker(os.path.join(tmp, f"{t}.pickle"),
                                     {"path": p, "name": n, "options": options, "shard": shard,
                                      "progress": False})

    with tempfile.TemporaryDirectory(prefix="ws-analyzer-") as tmp, \
            ThreadPoolExecutor(max_workers=workers - 1) as pool:
        helpers = [pool.submit(helper, tmp) for _ in range(workers - 1)]
        try:
            while (task := take(front=True)) is not None:
                t, _, p, n, shard = task
                outputs[t] = _analyze_shard(p, n, options, shard, progress)
            import analyzer.merge  # noqa: F401  (pandas: loaded while the workers may still run)
        except BaseException:
            with lock:
                tasks.clear()               # an error here: start nothing more
            raise
        for future in helpers:
            future.result()
    results: list[list[ShardResult]] = [[] for _ in paths]
    for t in sorted(outputs):
        results[flat[t][0]].append(outputs[t])
    return results


def _run_worker(result_path: str, task: dict[str, Any]) -> ShardResult:
    task["result"] = result_path
    task["path"] = os.path.abspath(task["path"])
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # `python -m` puts the working directory first on sys.path: run the worker from the
    # directory that holds this package, so that a user's own analyzer.py or analyzer/ in theirs
    # cannot stand in for it
    proc = subprocess.run([sys.executable, "-m", "analyzer.worker"], input=pickle.dumps(task),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, env=env,
                          cwd=package_root)
    if proc.returncode == 2:
        raise CaptureError(proc.stderr.decode("utf-8", "replace").strip())
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"worker for {task['name']} failed (exit {proc.returncode}): {tail[0]}")
    from analyzer.worker import load_result
    return load_result(result_path)


def _merge_info(shards: list[ShardResult]) -> CaptureInfo:
    first = shards[0][1]
    return CaptureInfo(first.path, first.name, first.packets,
                       sum(info.tcp_connections for _, info in shards), first.bytes)


def _progress_callback(progress: bool | ProgressCallback, name: str) -> ProgressCallback | None:
    if not progress:
        return None
    if callable(progress):
        return progress
    from analyzer.progress import ProgressBar
    return ProgressBar(name)
