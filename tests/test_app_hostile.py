"""Hostile application data through the framework, for every registered decoder: random, cut and
huge messages, deeply nested JSON. Only rows and app-protocol-malformed problems may come out (the
test suite raises on a decoder's bug: analyzer.bugs), and memory stays bounded."""

from __future__ import annotations

import random

import pytest

from analyzer.app import session as session_module
from analyzer.app.base import AppDecoder
from analyzer.app.registry import decoders
from analyzer.app.session import AppSession
from analyzer.tables import ConnectionProblems, TableRows

NAMES = sorted(decoders())


def _session(decoder: type[AppDecoder], monkeypatch: pytest.MonkeyPatch) -> tuple[AppSession, TableRows]:
    rows = TableRows(capture="hostile.pcap")
    problems = ConnectionProblems(rows.problems, "hostile.pcap", 1)
    problems.list_from_now()
    monkeypatch.setattr(session_module, "by_content", lambda msg: (decoder, 0.5))
    return AppSession(rows, problems, 1, None), rows


def _mutations(rng: random.Random) -> list[bytes]:
    seeds = [b'{"jsonrpc": "2.0", "method": "m", "params": [1], "id": 1}', b'42["event",{"a":1}]',
             b'0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000}',
             b"\x10\x10\x00\x04MQTT\x04\x02\x00<\x00\x04test", b"\x30\x07\x00\x03a/bhi",
             b"CONNECT\naccept-version:1.2\nhost:x\n\n\x00", b"SEND\ndestination:/q\nreceipt:1\n\nbody\x00",
             b'{"type": "subscribe", "id": "1", "payload": {"query": "{ a }"}}',
             b'{"header": {"msg_id": "1", "msg_type": "execute_request"}, "channel": "shell", "content": {}}',
             b"\x02\x00\x00\x00\x00\x00\x00\x00\x18\x00\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\x00\x00\x00\x00"
             b"shell{}"]
    out = []
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 5)):
            pos = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.3 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op < 0.6:
                del data[pos:pos + rng.randint(1, 16)]
            elif op < 0.8:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            else:
                data = data[:pos]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_random_and_cut_messages(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    session, rows = _session(decoders()[name], monkeypatch)
    rng = random.Random(name)
    for i, payload in enumerate(_mutations(rng), start=1):
        if not session.message(rng.choice(["client", "server"]), i, rng.random() < 0.5, payload, i, i * 1000,
                               rng.random() < 0.9):
            break
    session.finish(10_000, 10_000_000)
    kinds = {row.kind for row in rows.problems}
    assert kinds <= {"app-protocol-malformed"}
    for row in rows.app_messages:
        assert row.protocol == name and row.role in ("request", "response", "message")
        assert len(row.fields) < 20_000
    assert all(row.conn_id == 1 for row in rows.exchanges)


@pytest.mark.parametrize("name", NAMES)
def test_huge_and_deeply_nested_messages(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    session, rows = _session(decoders()[name], monkeypatch)
    rng = random.Random(1)
    huge_text = b'{"jsonrpc": "2.0", "method": "' + b"x" * (4 << 20) + b'", "id": 1}'
    messages = [b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                huge_text, rng.randbytes(4 << 20), b"\x30\xff\xff\xff\x7f" + b"\x00" * 1000]
    for i, payload in enumerate(messages, start=1):
        session.message("client" if i % 2 else "server", i, True, payload, i, i, True)
    session.finish(100, 100)
    assert {row.kind for row in rows.problems} <= {"app-protocol-malformed"}
    for row in rows.app_messages:          # no decoder copies a whole payload into a row
        assert len(row.fields) < 100_000
        assert row.channel is None or len(row.channel) <= 301
