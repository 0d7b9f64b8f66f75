"""A worker process: one capture, or one shard of it, analysed for a parent `analyze()` call.

Run as `python -m analyzer.worker`: it reads a pickled task from stdin and writes its result next
to the path the task names. The parent starts workers as plain subprocesses (not through
multiprocessing), so a user's script is never re-imported in a child and needs no
`if __name__ == "__main__":` guard, and no process is forked while the parent holds threads.
Exit status: 0 done, 2 the capture could not be read (the message on stderr), 1 anything else.

The result is the collected rows (analyzer.tables.TableRows), not DataFrames: a worker never
imports pandas. The big row arrays go to raw files beside the pickle of the rest, so that the
parent reads each into one allocation (unpickling them would hold every byte twice for a while).
"""

from __future__ import annotations

import pickle
import sys
from array import array
from typing import Any

# (file suffix, owner attribute, array attribute, numpy dtype)
_RAW_ARRAYS = (
    (".frames", "frames", "data", "int64"),
    (".messages", "messages", "data", "int64"),
    (".preview_ends", "messages", "preview_ends", "int64"),
    (".previews", "messages", "preview_utf8", "uint8"),
)


def save_result(result: tuple[Any, Any], path: str) -> None:
    """Write (TableRows, CaptureInfo) as `path` (pickle) plus one raw file per row array."""
    rows = result[0]
    for suffix, owner, name, _ in _RAW_ARRAYS:
        holder = getattr(rows, owner)
        with open(path + suffix, "wb") as f:
            f.write(getattr(holder, name))
        setattr(holder, name, array("q") if name != "preview_utf8" else bytearray())
    with open(path, "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_result(path: str) -> tuple[Any, Any]:
    """Read what `save_result` wrote; the row arrays come back as numpy arrays."""
    import numpy as np
    with open(path, "rb") as f:
        rows, info = pickle.load(f)     # written by our own worker a moment ago
    for suffix, owner, name, dtype in _RAW_ARRAYS:
        setattr(getattr(rows, owner), name, np.fromfile(path + suffix, dtype=dtype))
    return rows, info


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
