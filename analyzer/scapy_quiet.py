"""Silence scapy's log lines around our calls into it.

scapy logs warnings (e.g. "PcapNg: Bad magic in Section Header Block") to stderr through its own
handler; a malformed capture must give one clear line from us, never scapy's. The loggers are
disabled only while our call runs and restored after, so a notebook's own scapy use is untouched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["quiet_scapy"]


_cache: tuple[int, list[logging.Logger]] = (-1, [])


def _scapy_loggers() -> list[logging.Logger]:
    """scapy's loggers (looked up again only when a logger was added since the last call)."""
    global _cache
    known = logging.root.manager.loggerDict
    if _cache[0] != len(known):
        names = [n for n in list(known) if n == "scapy" or n.startswith("scapy.")]
        _cache = (len(known), [logging.getLogger(n) for n in names or ("scapy",)])
    return _cache[1]


@contextlib.contextmanager
def quiet_scapy() -> Iterator[None]:
    """Drop every record logged on scapy's loggers while the block runs (a record is dropped
    where it is logged, so no handler, scapy's or the root's, sees it)."""
    loggers = _scapy_loggers()
    saved = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, saved):
            lg.disabled = was
