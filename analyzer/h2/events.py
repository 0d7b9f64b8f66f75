"""The values H2Session hands out (see /work/notes/h2_api.md): H2Data is made per DATA frame, so it
is a NamedTuple (events.py: the cheapest immutable record); the rarer ones are frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Union

from analyzer.events import Handshake, Problem

__all__ = ["H2Data", "H2Out", "H2Problem", "H2StreamEnd", "H2WebSocket"]


@dataclass(frozen=True, slots=True)
class H2WebSocket:
    """An RFC 8441 WebSocket stream got its final answer (or the stream or capture ended without
    one: handshake.http_status None). Comes before any H2Data or H2StreamEnd of the stream."""

    stream_id: int
    handshake: Handshake
    record_no: int              # the packet with the answer (or the end)
    ts_ns: int


class H2Data(NamedTuple):
    """DATA of an upgraded WebSocket stream, padding removed, in stream order. Consecutive DATA
    frames of one stream and direction in one feed come joined in one H2Data."""

    stream_id: int
    direction: int
    data: bytes
    record_no: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class H2StreamEnd:
    """END_STREAM (reset False: that direction is done) or RST_STREAM (reset True: both are;
    direction is the sender of the RST_STREAM) of a WebSocket stream."""

    stream_id: int
    direction: int
    reset: bool
    record_no: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class H2Problem:
    """A problem of one WebSocket stream, or of the connection as a whole (stream_id None)."""

    stream_id: int | None
    direction: int | None
    problem: Problem


H2Out = Union[H2WebSocket, H2Data, H2StreamEnd, H2Problem]
