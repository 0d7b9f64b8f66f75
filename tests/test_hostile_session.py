"""Hostile captures of the session area (issue 13 items 10, 13, 19, 20), built by tests/hostile/session.py."""

from __future__ import annotations

import gc
import weakref

import pytest

import analyzer
from analyzer import pipeline, session
from analyzer.session import Options
from tests.hostile import session as shapes


@pytest.fixture
def gc_off():
    """The cyclic GC off, as the pipeline runs: only reference counting frees anything."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --- item 10: closed sessions are freed by reference counting -----------------------------------

def test_closed_sessions_are_freed_without_the_cyclic_gc(tmp_path, monkeypatch, gc_off):
    """Every Session the pipeline closes is gone as soon as it is closed, with the cyclic GC off
    (the pipeline turns it off for the whole capture): no reference cycle keeps a closed
    connection - its decoders, assemblers and fast lanes - alive until the end of the capture."""
    path = shapes.short_connections(tmp_path, 1.0)
    alive_at_close: list[int] = []
    refs: list[weakref.ref] = []

    class Watched(session.Session):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            refs.append(weakref.ref(self))

        def close(self, *args, **kwargs) -> None:
            super().close(*args, **kwargs)
            # the sessions closed before this one must be gone already (this one is still
            # referenced by the pipeline's local variable)
            alive_at_close.append(sum(r() is not None for r in refs[:-1]))

    monkeypatch.setattr(pipeline, "Session", Watched)
    rows = pipeline.analyze_file(path, Options())
    assert not gc.isenabled()
    assert len(refs) == shapes.SHORT_CONNECTIONS
    assert len(rows.connections) == shapes.SHORT_CONNECTIONS
    # the lane took the messages (else the test would not exercise it)
    assert all(row[-8:-4] == (2, 2, 1, 1) for row in rows.connections)
    assert max(alive_at_close) == 0
    assert sum(r() is not None for r in refs) == 0
    assert gc.collect() == 0    # and nothing else of theirs waits for the cyclic GC either


@pytest.mark.parametrize("fast_lane", [True, False])
def test_connection_counts_with_and_without_the_lane(tmp_path, monkeypatch, fast_lane):
    """The lane's one-frame messages still count in frames_*/messages_* of the connection."""
    monkeypatch.setattr(session, "FAST_LANE", fast_lane)
    a = analyzer.analyze(shapes.short_connections(tmp_path, 0.05), jobs=1)
    conns = a.connections
    assert len(conns) == 10
    assert list(conns.frames_client) == [2] * 10 and list(conns.frames_server) == [2] * 10
    assert list(conns.messages_client) == [1] * 10 and list(conns.messages_server) == [1] * 10
    assert (conns.close_status == "clean").all()
