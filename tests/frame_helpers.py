"""Helpers shared by the frame decoder tests (RFC 6455 and hixie)."""

from __future__ import annotations

import dataclasses

from analyzer.events import Frame, Problem
from analyzer.protocol import ProblemKind


def norm(events: list) -> list:
    """Events with record numbers and timestamps blanked (they depend on the cut points)."""
    return [e._replace(record_no=0, ts_ns=0) if hasattr(e, "_replace")
            else dataclasses.replace(e, record_no=0, ts_ns=0) for e in events]


def frames_of(events: list) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def kinds(events: list) -> list[ProblemKind]:
    return [e.kind for e in events if isinstance(e, Problem)]
