"""A worker process: one capture, or one shard of it, analysed for a parent `analyze()` call.

Run as `python -m analyzer.worker RESULT`: it reads a task from stdin (8-byte length, then the
pickle) and writes its result as RESULT (plus files beside it). A task with "stream" set is one
shard of a capture the parent reads: the shard's TCP segments follow the task on stdin
(analyzer.handover) and the worker never opens the capture. The parent starts workers as plain
subprocesses (not through multiprocessing), so a user's script is never re-imported in a child and
needs no `if __name__ == "__main__":` guard, and no process is forked while the parent holds threads.
Exit status: 0 done, 2 the capture could not be read (the one-line message in `<result>.error`;
stderr holds whatever else was printed, such as scapy's warnings), 1 anything else.

A worker never outlives its parent. The parent keeps the worker's stdin open until the worker is
done: a thread here waits for end-of-file on it, which comes when the parent exits however it
exits (SIGKILL included, on every platform). On Linux the kernel also sends SIGTERM the moment
the parent dies (prctl PR_SET_PDEATHSIG). Either way the worker removes the parent's temporary
folder (the parent cannot any more) and exits at once. SIGINT is ignored: Ctrl-C reaches the whole
process group, and the parent, which kills its workers itself, decides what an interrupt means.

The result is the collected rows (analyzer.tables.TableRows), not DataFrames: a worker never
imports pandas. The columns go to raw files beside the pickle of the rest, so that the parent
reads each into one allocation (unpickling them would hold every byte twice for a while) and can
let go of them one by one while it merges.
"""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import signal
import struct
import sys
import threading
import time
from array import array
from typing import Any, NoReturn

#: The parent's temporary folders start with this (analyzer.api); a worker removes only such a folder.
TEMP_PREFIX = "ws-analyzer-"
#: Set by the parent: its pid, so that a worker started after its parent died notices.
PARENT_ENV = "WS_ANALYZER_PARENT_PID"
_LENGTH = struct.Struct("<Q")


def create_private(path: str) -> Any:
    """A new private file (0600); never follows or reuses a file already at `path`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def save_result(result: tuple[Any, Any], path: str) -> None:
    """Write (TableRows, CaptureInfo) as `path` (pickle) plus one raw file per int64 column of
    frames and messages and two for the previews."""
    rows = result[0]
    sizes = {}
    for table in ("frames", "messages"):
        columns = getattr(rows, table)
        sizes[table] = len(columns)
        for name in columns.FIELDS:
            with create_private(f"{path}.{table}.{name}") as f:
                f.write(columns.column(name, take=True))
    messages = rows.messages
    for name in ("preview_ends", "preview_utf8"):
        with create_private(f"{path}.{name}") as f:
            f.write(getattr(messages, name))
    messages.preview_ends, messages.preview_utf8 = array("q", [0]), bytearray()
    with create_private(path) as f:
        pickle.dump((result, sizes), f, protocol=pickle.HIGHEST_PROTOCOL)


def load_result(path: str) -> tuple[Any, Any]:
    """Read what `save_result` wrote; the columns come back as numpy arrays, one allocation each."""
    import numpy as np
    with open(path, "rb") as f:
        result, sizes = pickle.load(f)      # written by our own worker a moment ago
    rows = result[0]
    for table in ("frames", "messages"):
        columns = getattr(rows, table)
        columns.set_columns({name: np.fromfile(f"{path}.{table}.{name}", dtype=np.int64)
                             for name in columns.FIELDS})
        assert len(columns) == sizes[table]
    rows.messages.preview_ends = np.fromfile(f"{path}.preview_ends", dtype=np.int64)
    rows.messages.preview_utf8 = np.fromfile(f"{path}.preview_utf8", dtype=np.uint8)
    return result  # type: ignore[no-any-return]  # (rows, info) as save_result wrote them


def encode_task(task: dict[str, Any]) -> bytes:
    """What the parent writes to a worker's stdin (it then keeps stdin open; see the docstring)."""
    data = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the parent closed the task pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


#: how long a SIGTERM waits to see the parent gone (see _Orphan.on_sigterm)
PARENT_EXIT_WAIT = 2.0


class _Orphan:
    """Ends this worker when its parent is gone: removes the parent's temporary folder, exits."""

    def __init__(self, result_path: str) -> None:
        self.folder = os.path.dirname(os.path.abspath(result_path))
        parent = os.environ.get(PARENT_ENV, "")
        self.parent = int(parent) if parent.isdigit() else None

    def parent_gone(self) -> bool:
        return self.parent is not None and os.getppid() != self.parent

    def exit(self) -> NoReturn:
        if os.path.basename(self.folder).startswith(TEMP_PREFIX):
            shutil.rmtree(self.folder, ignore_errors=True)
        os._exit(1)

    def watch(self) -> None:
        """Wait for end-of-file on stdin (the parent's exit closes it) in a daemon thread."""
        def wait() -> None:
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass
            self.exit()
        threading.Thread(target=wait, name="parent-watch", daemon=True).start()

    def on_sigterm(self, signum: int, frame: Any) -> None:
        # PR_SET_PDEATHSIG fires when the parent's *thread* that started us ends: when the parent is
        # killed, that thread may go first and we are handed to another of its threads (getppid()
        # unchanged) for a moment before the whole process is gone. Wait for that moment.
        end = time.monotonic() + PARENT_EXIT_WAIT
        while not self.parent_gone() and time.monotonic() < end:
            time.sleep(0.01)
        if self.parent_gone():
            self.exit()
        os._exit(128 + signum)          # someone else's SIGTERM: the parent sees the status


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the parent dies (it is the thread that started us
    that counts, and that thread waits for us)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)       # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass                                         # the stdin watch still ends us


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    result_path = argv[0]       # from the command line: known before any slow import
    orphan = _Orphan(result_path)
    signal.signal(signal.SIGTERM, orphan.on_sigterm)
    _die_with_parent()
    if orphan.parent_gone():    # died before the prctl took effect
        orphan.exit()
    try:
        (size,) = _LENGTH.unpack(_read_exactly(0, _LENGTH.size))
        data = _read_exactly(0, size)
    except EOFError:            # the parent died before it had written the task
        orphan.exit()
    task = pickle.loads(data)   # written by our own parent
    path = task["path"]
    if task.get("stream"):
        # the parent reads the capture and sends this shard's segments on stdin; the watch on
        # stdin starts when they have all come (until then its end of file stops the reading)
        from analyzer.handover import Receiver
        path = Receiver(0, task["shard"][0], path, task["size"], on_end=orphan.watch,
                        on_gone=orphan.exit)
    else:
        orphan.watch()          # from here on stdin only ever ends
    from analyzer.api import analyze_capture
    from analyzer.capture import CaptureError

    # This process is ours alone: the cyclic garbage collector, which would rescan every row
    # collected so far at each full collection, stays off (nothing the analysis makes is a cycle
    # to collect; tests/test_hostile_session.py holds every connection freed at its close).
    gc.collect()        # (what the imports left), then off
    gc.disable()

    try:
        result = analyze_capture(path, task["name"], task["options"], task["shard"], task["progress"])
    except CaptureError as exc:
        with create_private(result_path + ".error") as f:
            f.write(" ".join(str(exc).split()).encode("utf-8", "replace"))
        return 2
    save_result(result, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
