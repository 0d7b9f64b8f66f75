"""The notebook front: `analyze()` and the `Analysis` object that holds the four DataFrames."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from analyzer.capture import CaptureError
from analyzer.handover import Receiver, SplitCapture
from analyzer.pipeline import ProgressCallback, analyze_file
from analyzer.ring import reading_order, ring_files, ring_name
from analyzer.tables import TableRows
from analyzer.tls import KeyLog
from analyzer.websocket import Options

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only where the DataFrames are made: worker processes never need it, and the
# parent imports it while its workers already read the capture.

PathLike = str | os.PathLike[str]
#: what one capture is read from: a file, or the files of one ring buffer (in reading order)
CapturePath = str | tuple[str, ...]
SHARD_MIN_BYTES = 64 << 20    # below this, starting worker processes costs more than it saves
TEMP_PREFIX = "ws-analyzer-"  # the temporary folder of a parallel analysis (analyzer.worker removes
                              # only folders named so)


@dataclass
class CaptureInfo:
    """What was read of one capture file."""

    path: str
    name: str
    packets: int
    tcp_connections: int
    bytes: int
    files: tuple[str, ...] = ()     # a ring buffer's files in reading order (path is the first)


ShardResult = tuple[TableRows, "CaptureInfo"]


def analyze_capture(path: CapturePath | SplitCapture | Receiver, name: str, options: Options,
                    shard: tuple[int, int] = (0, 1),
                    progress: bool | ProgressCallback = False) -> ShardResult:
    """The per-file unit of work: one capture (or shard k of n of it) → its table rows and what
    was read. Every way of running an analysis calls this and only this per file: analyze() in
    this process, its worker processes (analyzer.worker), and a cluster driver.

    Args:
        path: the capture ("-": standard input), or a tuple of the files of one ring buffer
            (analyzer.ring: read as one capture, in the order of their first records); or, for
            one capture on several processes (analyzer.handover), a SplitCapture (this process
            reads it and is shard 0) or a worker's Receiver of its shard.
        name: the capture's name in the tables' `capture` column.
        options: the analysis options.
        shard: (k, n): the TCP connections process k of n owns (analyzer.sharding).
        progress: True for a bar on stderr, or a callback (bytes read, file size).

    Returns:
        (rows, info): the rows are keyed by capture name and a conn_id of this shard (merge.
        tables_from_rows numbers the shards' connections 1, 2, 3… by first packet, merge_captures
        puts captures one after another); they pickle, so they can cross a process boundary.

    Raises:
        CaptureError: the file cannot be read as a capture.

    The caller's process keeps its garbage collector as it is (a worker process, which is ours
    alone, turns it off: analyzer.worker).
    """
    callback = _progress_callback(progress, name)
    try:
        rows = analyze_file(path, options, capture_name=name, progress=callback, shard=shard)
    finally:
        if callback is not None and hasattr(callback, "close"):
            callback.close()
    if isinstance(path, (SplitCapture, Receiver)):
        path = path.capture
    if isinstance(path, str):
        return rows, CaptureInfo(path, name, rows.packets, rows.tcp_connections, rows.bytes_read)
    return rows, CaptureInfo(path[0], name, rows.packets, rows.tcp_connections, rows.bytes_read,
                             tuple(path))


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


def _empty(table: str) -> pd.DataFrame:
    from analyzer.tables import SCHEMAS, make_frame
    return make_frame(SCHEMAS[table], [])


@dataclass
class Analysis:
    """The result of `analyze()`: four DataFrames plus aggregates, plots and the report.

    Attributes:
        connections: one row per TCP connection that carried a WebSocket handshake or frames.
        frames: one row per WebSocket frame, in capture order.
        messages: one row per reassembled data message.
        problems: one row per protocol violation or capture defect.
        captures: what was read of each capture file.
        app_messages: one row per application message decoded from a WebSocket message (JSON-RPC,
            MQTT, STOMP, Socket.IO, GraphQL over WebSocket, Jupyter: analyzer.app).
        exchanges: one row per request paired with its response (latency, status), unanswered
            requests included.
    """

    connections: pd.DataFrame
    frames: pd.DataFrame
    messages: pd.DataFrame
    problems: pd.DataFrame
    captures: list[CaptureInfo] = field(default_factory=list)
    options: Options = field(default_factory=Options)
    app_messages: pd.DataFrame = field(default_factory=lambda: _empty("app_messages"))
    exchanges: pd.DataFrame = field(default_factory=lambda: _empty("exchanges"))

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

    # --- application protocols (analyzer.app.stats) ---
    def app_latency(self) -> pd.DataFrame:
        """Latency per (protocol, method): count, answered, p50, p90, p99, max; slowest first."""
        from analyzer.app.stats import latency
        return latency(self)

    def app_top(self, by: Literal["messages", "bytes"] = "messages", n: int | None = 20) -> pd.DataFrame:
        """The busiest topics, destinations, events and methods, by messages or by bytes."""
        from analyzer.app.stats import top_channels
        return top_channels(self, by=by, n=n)

    def app_rates(self, by: Literal["protocol", "method"] = "protocol") -> pd.DataFrame:
        """Unanswered and error counts and rates per protocol or per method."""
        from analyzer.app.stats import rates
        return rates(self, by=by)

    def app_slowest(self, n: int = 20) -> pd.DataFrame:
        """The n slowest answered exchanges."""
        from analyzer.app.stats import slowest
        return slowest(self, n=n)

    def app_unanswered(self) -> pd.DataFrame:
        """The requests never answered."""
        from analyzer.app.stats import unanswered
        return unanswered(self)

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
        from analyzer.stats import websocket_rows
        return (f"<Analysis of {names}: {len(websocket_rows(self.connections))} WebSocket connections, "
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
            jobs: int | None = None, max_payload_bytes: int = 256 << 20,
            keylog: PathLike | Iterable[PathLike] | None = None, ring: bool | None = None,
            app: bool = True) -> Analysis:
    """Analyse one capture or several and return the four DataFrames.

    Args:
        paths: a pcap/pcapng file (gzipped or not), or a list of them.
        ports: TCP ports to treat as WebSocket even when no handshake is in the capture (captures
            that start mid-connection); the side on such a port is the server.
        max_message_bytes: largest frame buffered and message reassembled or decompressed; larger
            ones are counted and reported in `problems`, never held in memory.
        payloads: keep every message's whole payload in `messages.payload` (default: a preview
            only); a fraction such as 0.01 keeps a sample of the messages, chosen by message id.
        max_payload_bytes: the most payload bytes kept in all (with payloads): past it a message's
            payload is null, and one `kept-payload-limit` problem row says how many were not kept.
        preview_len: characters (text) or bytes (binary, as hex) of the preview.
        validate_utf8: check text messages and close reasons for valid UTF-8.
        progress: True for a progress bar on stderr, or a callback (bytes read, file size).
        jobs: worker processes (None: one per core). Several captures are analysed side by side,
            and a capture of 64 MiB or more is split between the processes by connection. The
            tables are the same whatever the number; only on hostile input that reaches a memory
            cap (the caps are split between the processes) can which frames were counted rather
            than kept differ.
        keylog: an NSS key log (SSLKEYLOGFILE format: CLIENT_RANDOM for TLS ≤ 1.2, the *_TRAFFIC_SECRET
            lines for TLS 1.3) or a list of them, to decrypt wss:// (TLS) connections. The file named
            by $SSLKEYLOGFILE is read too when that variable is set, and the secrets a pcapng holds
            in Decryption Secrets Blocks (editcap --inject-secrets) are always used.
        ring: True: the files are the consecutive files of ONE capture (a ring buffer: tcpdump -G, -C,
            -W, dumpcap -b) and are read as one stream, in the order of their first record's time,
            numbered on as after `mergecap -a` of them in that order, connections continuing from
            file to file; the capture is named after the first file and how many follow
            ("r_00001_20261129203700.pcapng+2"); capture-gap, capture-overlap, capture-file-missing
            and capture-linktype-change problems say where files do not join up. False: each file
            is its own capture. None (default): a ring when the names are unmistakably one
            (analyzer.ring.ring_files: one dumpcap ring, or one tcpdump -C set NAME, NAME1, …).
        app: decode the application protocols inside the messages (app_messages, exchanges);
            False leaves those tables empty.

    Raises:
        CaptureError: a file cannot be read as a capture (not a capture, empty, missing, a folder).
        KeyLogError: a key log given cannot be read.
    """
    path_list = ([os.fspath(paths)] if isinstance(paths, (str, os.PathLike))
                 else [os.fspath(p) for p in paths])
    sample = isinstance(payloads, float) and 0 < payloads < 1
    options = Options(ports=frozenset(int(p) for p in ports or ()),
                      max_message_bytes=int(max_message_bytes),
                      payloads=payloads if sample else bool(payloads),
                      preview_len=int(preview_len), validate_utf8=bool(validate_utf8),
                      max_payload_bytes=int(max_payload_bytes),
                      keylog_files=keylog_files(keylog), app=bool(app))
    workers = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    if "-" in path_list:
        workers = 1         # standard input is this process's: no worker could read it
    captures: list[CapturePath]
    if len(path_list) > 1 and (ring or (ring is None and ring_files(path_list))):
        order = reading_order(path_list)
        captures, names = [order], [ring_name(order)]
    else:
        captures, names = list(path_list), _unique_names(path_list)
    per_file = [_shards_for(p, workers) for p in captures]
    if workers == 1 or sum(per_file) == 1:
        results = [[analyze_capture(p, n, options, (0, 1), progress)] for p, n in zip(captures, names)]
    else:
        results = _run_parallel(captures, names, per_file, options, workers, progress)
    from analyzer.merge import merge_captures, tables_from_rows
    infos = [_merge_info(shards) for shards in results]
    file_tables = [tables_from_rows([rows for rows, _ in shards]) for shards in results]
    del results
    tables = merge_captures(file_tables, names)
    return Analysis(captures=infos, options=options, **tables)


def keylog_files(keylog: PathLike | Iterable[PathLike] | None) -> tuple[str, ...]:
    """The key logs to read: those given, then $SSLKEYLOGFILE when it names a file. Each is read
    here once, so that one that cannot be read is a KeyLogError before any capture is."""
    given = ([] if keylog is None else [os.fspath(keylog)] if isinstance(keylog, (str, os.PathLike))
             else [os.fspath(k) for k in keylog])
    env = os.environ.get("SSLKEYLOGFILE")
    if env and os.path.isfile(env):
        given.append(env)
    # absolute: worker processes may run elsewhere; each file once
    given = list(dict.fromkeys(os.path.abspath(p) for p in given))
    for path in given:
        KeyLog().add_file(path)
    return tuple(given)


def _shards_for(path: CapturePath, workers: int) -> int:
    """How many processes share one capture: one per core for large files, else one."""
    try:
        size = sum(os.path.getsize(p) for p in ((path,) if isinstance(path, str) else path))
    except OSError:
        return 1            # the reader reports the error itself
    return workers if workers > 1 and size >= SHARD_MIN_BYTES else 1


def _run_parallel(paths: list[CapturePath], names: list[str], per_file: list[int], options: Options,
                  workers: int, progress: bool | ProgressCallback) -> list[list[ShardResult]]:
    """The captures on `workers` processes: this one and `workers - 1` `python -m analyzer.worker`
    subprocesses, each run by a helper thread. A capture split into shards comes first, one at a
    time: this process reads it and hands each worker its shard's segments (_run_split). Whole
    captures are then tasks, `workers` at a time: this process takes tasks from the front of the
    queue itself (its imports are done and its rows need no passing on), the helpers from the back.
    Progress (a bar, or the callback) is shown for what this process reads.

    Any way out but success (an error here or in a worker, Ctrl-C, SIGTERM) starts no more tasks,
    kills the running workers at once and removes the temporary folder (0700) with their files."""
    results: list[list[ShardResult]] = [[] for _ in paths]
    tasks = collections.deque((i, paths[i], names[i]) for i, shards in enumerate(per_file) if shards == 1)
    lock = threading.Lock()
    pool_of_workers = _Workers()

    def take(front: bool) -> tuple[int, CapturePath, str] | None:
        with lock:
            if not tasks:
                return None
            return tasks.popleft() if front else tasks.pop()

    def stop() -> None:
        with lock:
            tasks.clear()               # start nothing more
        pool_of_workers.kill_all()

    def helper(tmp: str) -> None:
        try:
            while (task := take(front=False)) is not None:
                i, p, n = task
                results[i] = [_run_worker(os.path.join(tmp, f"{i}.pickle"),
                                          {"path": p, "name": n, "options": options, "shard": (0, 1),
                                           "progress": False}, pool_of_workers)]
        except BaseException:
            stop()                      # the analysis has failed: the other workers' work is lost
            raise

    with _sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp, \
            ThreadPoolExecutor(max_workers=workers - 1) as pool:
        try:
            for i, shards in enumerate(per_file):
                if shards > 1:
                    results[i] = _run_split(paths[i], names[i], shards, options, progress, pool,
                                            pool_of_workers, os.path.join(tmp, str(i)))
            helpers = [pool.submit(helper, tmp) for _ in range(workers - 1)] if tasks else []
            while (task := take(front=True)) is not None:
                i, p, n = task
                results[i] = [analyze_capture(p, n, options, (0, 1), progress)]
            import analyzer.merge  # noqa: F401  (pandas: loaded while the workers may still run)
            _raise_first(helpers)
        except BaseException:
            stop()
            raise
    return results


def _run_split(path: CapturePath, name: str, shards: int, options: Options,
               progress: bool | ProgressCallback, pool: ThreadPoolExecutor, workers: _Workers,
               prefix: str) -> list[ShardResult]:
    """One capture on `shards` processes without any reading a record twice (analyzer.handover):
    this process reads it, analyses shard 0 and hands shards 1… to worker subprocesses through
    their stdin (one helper thread waits for each). Returns the shards' results in order."""
    from analyzer.handover import HandoverBroken, Sender, SplitCapture

    files = (path,) if isinstance(path, str) else path
    size = sum(os.path.getsize(f) for f in files)
    senders = [Sender() for _ in range(1, shards)]

    def helper(k: int, sender: Sender) -> ShardResult:
        try:
            return _run_worker(f"{prefix}-{k}.pickle",
                               {"path": path, "name": name, "options": options, "shard": (k, shards),
                                "progress": False, "stream": True, "size": size, "sender": sender},
                               workers)
        except BaseException as exc:
            sender.fail(exc)
            raise

    helpers = [pool.submit(helper, k, sender) for k, sender in enumerate(senders, 1)]
    try:
        own = analyze_capture(SplitCapture(path, senders), name, options, (0, shards), progress)
        for sender in senders:
            sender.drain()          # the last batches, into the pipes
    except HandoverBroken:
        _raise_first(helpers)       # the worker's own failure says why
        raise
    import analyzer.merge  # noqa: F401  (pandas: loaded while the workers may still run)
    _raise_first(helpers)
    return [own] + [f.result() for f in helpers]


def _raise_first(futures: list[concurrent.futures.Future[Any]]) -> None:
    """Wait for the helpers; raise the first real error (the others were stopped because of it)."""
    concurrent.futures.wait(futures)
    errors = [e for f in futures if (e := f.exception()) is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])


class _Terminated(KeyboardInterrupt):
    """SIGTERM during a parallel analysis: unwinds like Ctrl-C, so that the workers are killed and
    the temporary folder removed (the default action would end this process on the spot)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `_Terminated` while the block runs, when this is the main thread and
    nobody else handles SIGTERM (a notebook kernel's or an application's own handler is left as is)."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)      # another one must not cut the clean-up short
        raise _Terminated("terminated")

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _Workers:
    """The worker subprocesses running now, so that they can all be killed at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[bytes]] = set()
        self._stopped = False

    def kill_all(self) -> None:
        with self._lock:
            self._stopped = True
            for proc in self._live:
                with contextlib.suppress(OSError):
                    proc.kill()

    def run(self, result_path: str, task: dict[str, Any]) -> ShardResult:
        """One task in a `python -m analyzer.worker` subprocess; its rows, or its error raised here."""
        from analyzer.worker import PARENT_ENV, create_private, encode_task, load_result

        sender = task.pop("sender", None)       # a capture read here: its shard comes on stdin
        path = task["path"]
        task["path"] = os.path.abspath(path) if isinstance(path, str) else tuple(map(os.path.abspath, path))
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env[PARENT_ENV] = str(os.getpid())
        # `python -m` puts the working directory first on sys.path: run the worker from the
        # directory that holds this package, so that a user's own analyzer.py or analyzer/ in theirs
        # cannot stand in for it
        with create_private(result_path + ".stderr") as stderr, self._lock:
            if self._stopped:
                raise _Stopped
            proc = subprocess.Popen([sys.executable, "-m", "analyzer.worker", result_path],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
                                    env=env, cwd=package_root)
            self._live.add(proc)
        try:
            try:
                assert proc.stdin is not None
                proc.stdin.write(encode_task(task))
                proc.stdin.flush()
                if sender is not None:
                    sender.attach(proc.stdin)
            except OSError:
                pass                    # the worker is gone already: its status says why
            status = proc.wait()        # stdin stays open meanwhile: its end tells the worker we died
        finally:
            with self._lock:
                self._live.discard(proc)
            if sender is not None:      # nothing more is written (a worker gone early: the reader stops)
                sender.fail(RuntimeError(f"worker for {task['name']} ended"))
                sender.join()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if self._stopped:
            raise _Stopped
        if status == 2 and os.path.exists(result_path + ".error"):
            with open(result_path + ".error", "rb") as f:
                raise CaptureError(f.read().decode("utf-8", "replace"))
        if status != 0:
            with open(result_path + ".stderr", "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
            reason = lines[-1] if lines else "no message"
            raise RuntimeError(f"worker for {task['name']} failed (exit {status}): {reason}")
        return load_result(result_path)


class _Stopped(Exception):
    """A worker's task was abandoned because the analysis stopped (the cause is raised elsewhere)."""


def _run_worker(result_path: str, task: dict[str, Any], workers: _Workers | None = None) -> ShardResult:
    """One task in a worker subprocess, one of `workers` (the tests count the calls here)."""
    return (workers or _Workers()).run(result_path, task)


def _merge_info(shards: list[ShardResult]) -> CaptureInfo:
    first = shards[0][1]
    return CaptureInfo(first.path, first.name, first.packets,
                       sum(info.tcp_connections for _, info in shards), first.bytes, first.files)


def _progress_callback(progress: bool | ProgressCallback, name: str) -> ProgressCallback | None:
    if not progress:
        return None
    if callable(progress):
        return progress
    from analyzer.progress import ProgressBar
    return ProgressBar(name)
