"""`python -m analyzer …` runs the ws-analyzer command line; `console` is the command's entry point.

`console` leaves with os._exit once the command has returned, its atexit handlers have run and
stdout/stderr are flushed: the interpreter's own teardown (freeing the analysis's objects and
modules one by one) took 0.1-0.7 s, up to 3 s on a loaded machine, after a `summary` of 100k
packets had printed everything. Only the console entry does this, never the library or
cli.main() (tests call that in-process).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from analyzer.cli import main


def exit_status(code: object) -> int:
    """What the interpreter would exit with for `SystemExit(code)` (a message goes to stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def console(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line and exit without the interpreter's teardown.

    When a thread that is not a daemon still runs, the ordinary exit is taken instead (the
    interpreter waits for it; os._exit would cut it short)."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exit_status(exc.code)
    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main_thread):
        sys.exit(status)
    atexit._run_exitfuncs()          # multiprocessing's children, logging, temporary files…
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # as the interpreter: output lost at exit is status 120
            status = status or 120
    os._exit(status)


if __name__ == "__main__":
    console()
