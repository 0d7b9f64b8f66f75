"""A worker process: one capture, or one shard of it, analysed for a parent `analyze()` call.

Run as `python -m analyzer.worker`: it reads a pickled task from stdin and writes its result next
to the path the task names. The parent starts workers as plain subprocesses (not through
multiprocessing), so a user's script is never re-imported in a child and needs no
`if __name__ == "__main__":` guard, and no process is forked while the parent holds threads.
Exit status: 0 done, 2 the capture could not be read (the message on stderr), 1 anything else.

The result is the collected rows (analyzer.tables.TableRows), not DataFrames: a worker never
imports pandas. The columns go to raw files beside the pickle of the rest, so that the parent
reads each into one allocation (unpickling them would hold every byte twice for a while) and can
let go of them one by one while it merges.
"""

from __future__ import annotations

import pickle
import sys
from array import array
from typing import Any


def save_result(result: tuple[Any, Any], path: str) -> None:
    """Write (TableRows, CaptureInfo) as `path` (pickle) plus one raw file per int64 column of
    frames and messages and two for the previews."""
    rows = result[0]
    sizes = {}
    for table in ("frames", "messages"):
        columns = getattr(rows, table)
        sizes[table] = len(columns)
        for name in columns.FIELDS:
            with open(f"{path}.{table}.{name}", "wb") as f:
                f.write(columns.column(name, take=True))
    messages = rows.messages
    for name in ("preview_ends", "preview_utf8"):
        with open(f"{path}.{name}", "wb") as f:
            f.write(getattr(messages, name))
    messages.preview_ends, messages.preview_utf8 = array("q", [0]), bytearray()
    with open(path, "wb") as f:
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
    return result


def main() -> int:
    task = pickle.load(sys.stdin.buffer)
    from analyzer.api import _analyze_shard
    from analyzer.capture import CaptureError

    try:
        result = _analyze_shard(task["path"], task["name"], task["options"], task["shard"],
                                task["progress"])
    except CaptureError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    save_result(result, task["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
