"""A real capture of captures/app/ decoded (tests/app_captures.py) and its exchanges located in the
expected file's "wire" list (the messages the programs logged, in capture order, with tshark's
timestamps), so that a test can check each request and response against what was sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.app.base import AppDecoder, AppMessage, WsMessage
from tests.app_captures import decode, expected, ws_messages


@dataclass
class Decoded:
    expected: dict[str, Any]                    # NAME.expected.json
    items: list[tuple[WsMessage, AppMessage]]   # each AppMessage with the message that completed it
    index: dict[int, int]                       # message_id -> position in capture order ("wire")


@dataclass
class Exchange:
    request: AppMessage
    request_index: int                      # the WebSocket messages' positions in capture order
    response: AppMessage | None = None
    response_index: int | None = None
    latency_ms: float | None = None         # between the two messages' capture times


def decode_capture(name: str, decoder: type[AppDecoder]) -> Decoded:
    """captures/app/NAME.pcap's one connection decoded by `decoder` (nothing malformed, nothing
    left pending at the end)."""
    (messages,) = ws_messages(name).values()
    index = {msg.message_id: i for i, msg in enumerate(messages)}
    return Decoded(expected(name), decode(decoder, messages), index)


def exchanges(decoded: Decoded) -> list[Exchange]:
    """Requests in order, each closed by the next response of the same correlation id (the oldest
    open request first), as app_conv pairs them; a response nobody asked for fails the test."""
    opened: dict[str | None, list[tuple[int, Exchange]]] = {}
    out: list[Exchange] = []
    for msg, app in decoded.items:
        if app.role == "request":
            exchange = Exchange(app, decoded.index[msg.message_id])
            opened.setdefault(app.correlation_id, []).append((msg.ts_ns, exchange))
            out.append(exchange)
        elif app.role == "response":
            waiting = opened.get(app.correlation_id)
            assert waiting, f"a response nobody asked for: {app}"
            ts_ns, exchange = waiting.pop(0)
            exchange.response = app
            exchange.response_index = decoded.index[msg.message_id]
            exchange.latency_ms = (msg.ts_ns - ts_ns) / 1e6
    return out
