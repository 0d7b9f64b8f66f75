"""Requests paired with their responses on one connection (the `exchanges` table), sans-IO.

Rules (the conventions every decoder follows, analyzer.app.base.ROLES):
1. An AppMessage with role "request" opens an exchange keyed (protocol, correlation_id); exchanges
   are numbered 1, 2, 3… per connection in the order their requests came.
2. A "response" with the same key closes the OLDEST open exchange of that key (latency = response
   time - request time); a response that matches nothing open (its request came before the capture
   began, or was forgotten by rule 3) closes nothing.
3. At most `max_open` exchanges are open at a time; past it the oldest open one is written as
   unanswered (so memory does not grow with requests nobody answers).
4. At the connection's end, the exchanges still open are written unanswered (null response).
A request or response without a correlation id takes no part.
"""

from __future__ import annotations

from collections import deque

from analyzer.tables import ExchangeRow

__all__ = ["MAX_OPEN_EXCHANGES", "Exchanges"]

#: open requests per connection; past it the oldest is given up as unanswered
MAX_OPEN_EXCHANGES = 10_000

# an open request: (exchange_id, method, message_id, ts_ns)
_Open = tuple[int, str | None, int, int]


class Exchanges:
    """The exchanges of one connection (see the module doc). Rows are returned, not written: the
    caller (analyzer.app.session) hands them to the table rows."""

    __slots__ = ("_by_key", "_count", "_order", "capture", "conn_id", "max_open")

    def __init__(self, capture: str, conn_id: int, max_open: int = MAX_OPEN_EXCHANGES) -> None:
        self.capture = capture
        self.conn_id = conn_id
        self.max_open = max(1, max_open)
        self._count = 0
        self._by_key: dict[tuple[str, str], deque[_Open]] = {}
        # every open exchange's key, oldest first (dicts keep insertion order): exchange_id → key
        self._order: dict[int, tuple[str, str]] = {}

    @property
    def open(self) -> int:
        return len(self._order)

    def request(self, protocol: str, correlation_id: str, method: str | None, message_id: int,
                ts_ns: int) -> list[ExchangeRow]:
        """A request opens an exchange; returns the row of one given up to make room (rule 3)."""
        self._count += 1
        key = (protocol, correlation_id)
        queue = self._by_key.get(key)
        if queue is None:
            queue = self._by_key[key] = deque()
        queue.append((self._count, method, message_id, ts_ns))
        self._order[self._count] = key
        if len(self._order) <= self.max_open:
            return []
        oldest = next(iter(self._order))
        return [self._unanswered(self._pop_oldest(oldest))]

    def response(self, protocol: str, correlation_id: str, message_id: int, ts_ns: int,
                 status: str | None) -> ExchangeRow | None:
        """A response closes the oldest open exchange of its key: its row, or None (rule 2)."""
        key = (protocol, correlation_id)
        queue = self._by_key.get(key)
        if not queue:
            return None
        exchange_id, method, request_id, ts_request = queue.popleft()
        if not queue:
            del self._by_key[key]
        del self._order[exchange_id]
        return ExchangeRow(self.capture, self.conn_id, exchange_id, protocol, method, correlation_id,
                           request_id, message_id, ts_request, ts_ns, (ts_ns - ts_request) / 1e9, status,
                           True)

    def finish(self) -> list[ExchangeRow]:
        """The connection ended: every exchange still open, unanswered, oldest first (rule 4)."""
        rows = [self._unanswered(self._pop_oldest(exchange_id)) for exchange_id in list(self._order)]
        return rows

    def _pop_oldest(self, exchange_id: int) -> tuple[str, str, _Open]:
        """Take exchange `exchange_id` out (it is the oldest of its key: keys keep request order)."""
        key = self._order.pop(exchange_id)
        queue = self._by_key[key]
        item = queue.popleft()
        if not queue:
            del self._by_key[key]
        return key[0], key[1], item

    def _unanswered(self, taken: tuple[str, str, _Open]) -> ExchangeRow:
        protocol, correlation_id, (exchange_id, method, request_id, ts_request) = taken
        return ExchangeRow(self.capture, self.conn_id, exchange_id, protocol, method, correlation_id,
                           request_id, None, ts_request, None, None, None, False)
