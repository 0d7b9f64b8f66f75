"""Feeding an application decoder the WebSocket messages of a real capture (captures/app/), as the
framework does: each connection's data messages in capture order, both directions."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

import analyzer
from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

_MASK = b"\x01\x02\x03\x04"
CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "app"


@cache
def ws_messages(name: str) -> dict[int, list[WsMessage]]:
    """The data messages of captures/app/NAME.pcap by client port, in capture order."""
    a = analyzer.analyze(CAPTURES / f"{name}.pcap", payloads=True, jobs=1)
    ports = dict(zip(a.connections["conn_id"], a.connections["client_port"]))
    out: dict[int, list[WsMessage]] = {}
    rows = a.messages[a.messages["type"].isin(["text", "binary"])].sort_values(["conn_id", "message_id"])
    for row in rows.itertuples():
        out.setdefault(int(ports[row.conn_id]), []).append(WsMessage(
            int(row.conn_id), int(row.message_id), str(row.sender), int(row.ts_end.value),
            row.type == "text", bytes(row.payload), bool(row.complete)))
    return out


def expected(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((CAPTURES / f"{name}.expected.json").read_text())
    return result


def decode(decoder: type[AppDecoder], messages: list[WsMessage]) -> list[tuple[WsMessage, AppMessage]]:
    """Every application message with the WebSocket message that completed it; a malformed
    message fails the test (these captures are of well-behaved programs)."""
    dec = decoder()
    out: list[tuple[WsMessage, AppMessage]] = []
    for msg in messages:
        try:
            got = dec.feed(msg)
        except AppMalformed as exc:
            raise AssertionError(f"message {msg.message_id} ({msg.sender}): {exc}") from exc
        out.extend((msg, app) for app in got)
    assert dec.finish() == []
    return out


def pair(pairs: list[tuple[WsMessage, AppMessage]]
         ) -> tuple[dict[str, list[tuple[float, float, AppMessage, AppMessage]]], list[AppMessage]]:
    """Requests paired with responses as app_conv says (a response closes the oldest open request
    with its correlation id): by correlation id, (request ts, response ts, request, response) in
    order (seconds), and the requests left unanswered."""
    open_: dict[str, list[tuple[WsMessage, AppMessage]]] = {}
    closed: dict[str, list[tuple[float, float, AppMessage, AppMessage]]] = {}
    for msg, app in pairs:
        corr = app.correlation_id
        if corr is None:
            continue
        if app.role == "request":
            open_.setdefault(corr, []).append((msg, app))
        elif app.role == "response" and open_.get(corr):
            req_msg, req = open_[corr].pop(0)
            closed.setdefault(corr, []).append((req_msg.ts_ns / 1e9, msg.ts_ns / 1e9, req, app))
    return closed, [app for waiting in open_.values() for _, app in waiting]


def assert_tables_agree(name: str, decoder: type[AppDecoder]) -> None:
    """analyze()'s app_messages and exchanges tables of captures/app/NAME.pcap hold what the decoder
    gives when fed by hand (decode) and paired as app_conv says (pair), and nothing is malformed."""
    a = analyzer.analyze(CAPTURES / f"{name}.pcap", jobs=1)
    assert set(a.connections["app_protocol"]) == {decoder.name}
    assert not (a.problems["kind"] == "app-protocol-malformed").any()
    ports = dict(zip(a.connections["conn_id"], a.connections["client_port"]))
    table = a.app_messages.sort_values(["conn_id", "message_id", "app_index"])
    by_hand = [(port, msg.message_id, app.type, app.channel, app.correlation_id, app.role, app.status)
               for port, msgs in sorted(ws_messages(name).items()) for msg, app in decode(decoder, msgs)]
    rows = [(ports[r.conn_id], r.message_id, r.type, _none(r.channel), _none(r.correlation_id), r.role,
             _none(r.status)) for r in table.itertuples()]
    assert sorted(rows, key=repr) == sorted(by_hand, key=repr)
    expected_pairs = []
    for port, msgs in ws_messages(name).items():
        closed, unanswered = pair(decode(decoder, msgs))
        expected_pairs += [(port, corr, round(t_resp - t_req, 6)) for corr, done in closed.items()
                           for t_req, t_resp, _, _ in done]
        expected_pairs += [(port, str(app.correlation_id), None) for app in unanswered]
    got_pairs = [(ports[r.conn_id], r.correlation_id, round(r.latency, 6) if r.answered else None)
                 for r in a.exchanges.itertuples()]
    assert sorted(got_pairs, key=repr) == sorted(expected_pairs, key=repr)


def _none(value: Any) -> Any:
    """pandas' missing value as None."""
    return None if pd.isna(value) else value


def ws_capture(path: Path, messages: list[tuple[int, bytes]], subprotocol: str | None, *,
               binary: bool) -> str:
    """A capture built here: handshake (with the subprotocol if given), each (direction, payload)
    as one WebSocket message (0 = client), close, FIN; 10 ms between packets."""
    extra = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else ""
    conv = Conversation(client_port=50123, t=1_700_000_000.0, step=0.01)
    conv.handshake()
    conv.send(0, upgrade_request(extra=extra))
    conv.send(1, upgrade_response(extra=extra))
    for direction, payload in messages:
        conv.send(direction, frame(2 if binary else 1, payload, mask=_MASK if direction == 0 else None))
    conv.send(0, frame(8, b"\x03\xe8", mask=_MASK))
    conv.send(1, frame(8, b"\x03\xe8"))
    conv.fin(0)
    conv.fin(1)
    write_pcap(path, conv.packets)
    return str(path)
