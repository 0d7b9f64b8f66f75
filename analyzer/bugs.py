"""A bug of ours (an exception inside a stage, never bad input): where it happened, as the
`internal-error` problem rows say it, and whether it is raised instead (the test suite's setting)."""

from __future__ import annotations

import os
import traceback

__all__ = ["STRICT_ENV", "describe", "raise_bugs", "where"]

#: When this environment variable is "1", an exception inside a stage is raised instead of
#: becoming an internal-error row (the test suite sets it: a bug must fail the test that meets it).
STRICT_ENV = "WS_ANALYZER_STRICT"


def raise_bugs() -> bool:
    """Is an exception of ours to be raised (STRICT_ENV is "1") rather than made a problem row?"""
    return os.environ.get(STRICT_ENV) == "1"


def where(exc: BaseException) -> str:
    """file:line in function of the innermost frame of an exception, relative to the package."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    last = frames[-1]
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.relpath(last.filename, package) if last.filename.startswith(package) else last.filename
    return f"{path}:{last.lineno} in {last.name}"


def describe(exc: BaseException) -> str:
    """"TypeError at analyzer/x.py:12 in f: the message" (the message cut at 200 characters)."""
    message = str(exc)
    cut = "…" if len(message) > 200 else ""
    return f"{type(exc).__name__} at {where(exc)}: {message[:200]}{cut}"
