"""The WebSockets one HTTP/2 connection carries (RFC 8441): a conversation, a connections row and a
conn_id each, several on one TCP connection (sans-IO).

The connection layer feeds an H2Streams the events of its HTTP/2 stage (analyzer.h2.H2Session):
an answered extended CONNECT starts a WebSocket conversation for that stream; the DATA of the
stream is its byte stream, exactly as the bytes after an HTTP/1.1 upgrade; END_STREAM or
RST_STREAM ends it. The first WebSocket of the connection takes the connection's own conn_id and
problems (connection-level HTTP/2 problems are listed with it); each later one a new conn_id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analyzer.events import Handshake, Problem
from analyzer.h2 import H2Data, H2Out, H2Problem, H2StreamEnd, H2WebSocket
from analyzer.tables import ConnectionProblems, TableRows
from analyzer.websocket import Budgets, Options, WebSocket

__all__ = ["H2Stream", "H2Streams"]


@dataclass(slots=True)
class H2Stream:
    """One RFC 8441 WebSocket: its conversation and what its row needs."""

    stream_id: int
    conn_id: int
    handshake: Handshake
    websocket: WebSocket
    problems: ConnectionProblems
    end: str = "open"                   # "fin" (END_STREAM both ways), "rst" (RST_STREAM), "open"
    ended: int = 0                      # bit per direction that sent END_STREAM


class H2Streams:
    """The WebSocket streams of one HTTP/2 connection, in the order they were answered."""

    __slots__ = ("budgets", "capture", "client_dir", "conn_id", "early", "finished", "new_id", "options",
                 "problems", "rows", "rows_written", "streams", "write_row")
    #: problems of streams not yet opened as WebSockets kept for them (a refusal comes before the
    #: H2WebSocket that reports the failed stream), at most this many
    MAX_EARLY = 64
    #: streams that ended wait for the TCP connection's end to be written (their row shows how it
    #: ended); past this many, the ended ones are written at once, so that memory does not grow
    #: with the streams a long-lived connection has carried
    MAX_FINISHED_HELD = 64

    def __init__(self, rows: TableRows, problems: ConnectionProblems, options: Options, budgets: Budgets,
                 capture: str, conn_id: int, client_dir: int, new_id: Callable[[], int]) -> None:
        self.rows = rows
        self.problems = problems            # the connection's: its own problems and the first stream's
        self.options = options
        self.budgets = budgets
        self.capture = capture
        self.conn_id = conn_id
        self.client_dir = client_dir
        self.new_id = new_id
        self.streams: dict[int, H2Stream] = {}
        self.early: list[tuple[int, str | None, Problem]] = []
        self.finished: list[int] = []
        self.rows_written = 0
        #: writes a stream's connections row (set by the connection, which makes rows)
        self.write_row: Callable[[H2Stream], None] | None = None

    def handle(self, events: list[H2Out], sender: Callable[[int], str]) -> None:
        streams = self.streams
        for ev in events:
            if type(ev) is H2Data:
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream.websocket.feed(ev.direction, ev.data, ev.record_no, ev.ts_ns)
            elif type(ev) is H2WebSocket:
                self._open(ev)
            elif type(ev) is H2StreamEnd:
                self._end(ev)
            elif type(ev) is H2Problem:
                who = None if ev.direction is None else sender(ev.direction)
                stream = streams.get(ev.stream_id) if ev.stream_id is not None else None
                if stream is not None:
                    stream.problems.report(who, ev.problem)
                elif ev.stream_id is not None and len(self.early) < self.MAX_EARLY:
                    self.early.append((ev.stream_id, who, ev.problem))
                else:
                    self.problems.report(who, ev.problem)

    def _open(self, ev: H2WebSocket) -> None:
        if ev.stream_id in self.streams:
            return
        first = not self.any                # (not: no stream held, which is true again after a flush)
        conn_id = self.conn_id if first else self.new_id()
        problems = self.problems if first else ConnectionProblems(self.rows.problems, self.capture, conn_id)
        problems.list_from_now()
        websocket = WebSocket(self.rows, problems, self.options, self.budgets, conn_id, self.client_dir,
                              ev.handshake)
        self.streams[ev.stream_id] = H2Stream(ev.stream_id, conn_id, ev.handshake, websocket, problems)
        if self.early:
            for stream_id, who, problem in self.early:
                if stream_id == ev.stream_id:
                    problems.report(who, problem)
            self.early = [e for e in self.early if e[0] != ev.stream_id]

    def _end(self, ev: H2StreamEnd) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is None:
            return
        if ev.reset:
            stream.end = "rst"
        else:
            stream.ended |= 1 << ev.direction
            if stream.ended == 3 and stream.end == "open":
                stream.end = "fin"
        if stream.end != "open":
            self.finished.append(ev.stream_id)
            if len(self.finished) > self.MAX_FINISHED_HELD and self.write_row is not None:
                for stream_id in self.finished:
                    self._close(self.streams.pop(stream_id), ev.record_no, ev.ts_ns)
                self.finished = []

    def _close(self, stream: H2Stream, record_no: int, ts_ns: int) -> None:
        """A stream's last frames and messages, its close checked, its row written."""
        stream.websocket.finish(record_no, ts_ns)
        stream.problems.list_from_now()
        stream.websocket.check_close_echoed(stream.end, record_no, ts_ns)
        if stream.problems is not self.problems:
            stream.problems.finish()
        if self.write_row is not None:
            self.write_row(stream)
            self.rows_written += 1

    def finish(self, record_no: int, ts_ns: int, tcp_end: str) -> None:
        """The connection ended: each stream still held is closed (_close) against how it ended or,
        still open, how the TCP connection did, and its row written."""
        for _stream_id, who, problem in self.early:        # streams that never became WebSockets
            self.problems.report(who, problem)
        self.early = []
        for stream in self.streams.values():
            if stream.end == "open" and tcp_end != "open":
                stream.end = tcp_end
            self._close(stream, record_no, ts_ns)
        self.streams.clear()
        self.finished = []

    @property
    def any(self) -> bool:
        """Did the connection carry a WebSocket stream (one still held, or one already written)?"""
        return bool(self.streams) or self.rows_written > 0
