"""A worker process: one capture, or one shard of it, analysed for a parent `analyze()` call.

Run as `python -m analyzer.worker`: it reads a pickled task from stdin and writes the pickled
result to the file the task names. The parent starts workers as plain subprocesses (not through
multiprocessing), so a user's script is never re-imported in a child and needs no
`if __name__ == "__main__":` guard, and no process is forked while the parent holds threads.
Exit status: 0 done, 2 the capture could not be read (the message on stderr), 1 anything else.
"""

from __future__ import annotations

import pickle
import sys


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
    with open(task["result"], "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
