"""Test helpers for application decoders on the real captures of captures/app/: the capture's
messages (analyze(..., payloads=True)) fed to a decoder in capture order, and the decoder's
requests paired with their responses the way analyzer/app/exchanges.py pairs them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from analyzer.app.base import AppDecoder, AppMessage, WsMessage

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "app"


@dataclass
class Decoded:
    expected: dict                          # NAME.expected.json
    items: list[tuple[WsMessage, AppMessage]]   # each AppMessage with the message that completed it
    messages: int                               # how many WebSocket data messages were fed


@dataclass
class Exchange:
    request: AppMessage
    response: AppMessage | None
    latency_ms: float | None                # between the two WebSocket messages' capture times
    request_index: int                      # the WebSocket messages', counted in capture order
    response_index: int | None = None


def decode_capture(name: str, decoder: AppDecoder) -> Decoded:
    """captures/app/NAME.pcap's one connection fed to `decoder`; AppMalformed propagates, and
    nothing may be left pending at the end. Each
    WsMessage's message_id is its index in capture order (the expected file's "wire" list)."""
    import analyzer

    path = CAPTURES / f"{name}.pcap"
    expected = json.loads((CAPTURES / f"{name}.expected.json").read_text())
    messages = analyzer.analyze(str(path), payloads=True, jobs=1).messages
    assert set(messages["conn_id"]) == {1}
    items: list[tuple[WsMessage, AppMessage]] = []
    ordered = messages.sort_values("message_id")
    for index, row in enumerate(ordered.itertuples()):
        msg = WsMessage(conn_id=row.conn_id, message_id=index, sender=str(row.sender),
                        ts_ns=row.ts_end.value, text=row.type == "text",
                        payload=bytes(row.payload), complete=bool(row.complete))
        items.extend((msg, app) for app in decoder.feed(msg))
    assert decoder.finish() == [], "the connection ended with an application message pending"
    return Decoded(expected, items, len(ordered))


def exchanges(items: list[tuple[WsMessage, AppMessage]]) -> list[Exchange]:
    """Requests in order, each closed by the next response of the same correlation id (the oldest
    open request first); a response nobody asked for is an error here."""
    opened: dict[str | None, list[tuple[int, Exchange]]] = {}
    out: list[Exchange] = []
    for msg, app in items:
        if app.role == "request":
            exchange = Exchange(app, None, None, msg.message_id)
            opened.setdefault(app.correlation_id, []).append((msg.ts_ns, exchange))
            out.append(exchange)
        elif app.role == "response":
            waiting = opened.get(app.correlation_id)
            assert waiting, f"a response nobody asked for: {app}"
            ts_ns, exchange = waiting.pop(0)
            exchange.response = app
            exchange.latency_ms = (msg.ts_ns - ts_ns) / 1e6
            exchange.response_index = msg.message_id
    return out
