"""The JSON-RPC 2.0 decoder on bytes built here (the examples of the specification, section 7)."""

from __future__ import annotations

import json
import random

import pytest

from analyzer.app.base import AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols.jsonrpc import MAX_PENDING_METHODS, JsonRpcDecoder
from analyzer.app.registry import by_content, decoders


def ws(payload: bytes | str, sender: str = "client", message_id: int = 1, complete: bool = True,
       text: bool = True) -> WsMessage:
    data = payload.encode() if isinstance(payload, str) else payload
    return WsMessage(1, message_id, sender, 1_000 * message_id, text, data, complete)


def test_registered_and_sniffed() -> None:
    assert decoders()["jsonrpc"] is JsonRpcDecoder
    found = by_content(ws('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}'))
    assert found is not None and found[0] is JsonRpcDecoder and found[1] == pytest.approx(0.9)
    batch = '[{"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": "1"}]'
    assert JsonRpcDecoder.sniff(ws(batch)) == 0.9
    for other in ('{"jsonrpc": "1.0", "method": "x", "id": 1}', '{"method": "x", "id": 1}', "hello",
                  '{"jsonrpc": "2.0"', "[]", b"\xff\xfe"):
        assert JsonRpcDecoder.sniff(ws(other)) == 0.0


def test_request_and_response_spec_example() -> None:
    d = JsonRpcDecoder()
    [req] = d.feed(ws('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}'))
    assert (req.type, req.channel, req.correlation_id, req.role, req.status) == (
        "request", "subtract", "c:1", "request", None)
    assert req.fields == {"id": 1, "params": "[42,23]"}
    [resp] = d.feed(ws('{"jsonrpc": "2.0", "result": 19, "id": 1}', sender="server", message_id=2))
    assert (resp.type, resp.channel, resp.correlation_id, resp.role, resp.status) == (
        "response", "subtract", "c:1", "response", "ok")
    assert resp.fields == {"id": 1, "result": "19"}


def test_server_request_is_prefixed_by_its_sender() -> None:
    d = JsonRpcDecoder()
    [req] = d.feed(ws('{"jsonrpc":"2.0","method":"ping","id":"a"}', sender="server"))
    [resp] = d.feed(ws('{"jsonrpc":"2.0","result":"pong","id":"a"}', sender="client"))
    assert req.correlation_id == resp.correlation_id == "s:a"
    assert resp.channel == "ping"


def test_notification_and_errors() -> None:
    d = JsonRpcDecoder()
    [note] = d.feed(ws('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}'))
    assert (note.type, note.channel, note.role, note.correlation_id) == ("notification", "update", "message",
                                                                         None)
    d.feed(ws('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}'))
    [err] = d.feed(ws('{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, '
                      '"id": "1"}', sender="server"))
    assert (err.type, err.role, err.correlation_id, err.channel) == ("error", "response", "c:1", "foobar")
    assert err.status == "error -32601: Method not found"
    assert err.fields["code"] == -32601
    # a parse error has a null id: nothing to pair it with
    [parse] = d.feed(ws('{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}',
                        sender="server"))
    assert (parse.role, parse.correlation_id, parse.status) == ("message", None, "error -32700: Parse error")


def test_batch_gives_one_message_per_element() -> None:
    d = JsonRpcDecoder()
    batch = json.dumps([
        {"jsonrpc": "2.0", "method": "sum", "params": [1, 2, 4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": "2"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"},
    ])
    out = d.feed(ws(batch))
    assert [(m.type, m.channel, m.correlation_id) for m in out] == [
        ("request", "sum", "c:1"), ("notification", "notify_hello", None), ("request", "subtract", "c:2"),
        ("request", "get_data", "c:9")]
    assert all(m.fields["batch"] == 4 for m in out)
    answers = d.feed(ws('[{"jsonrpc": "2.0", "result": 7, "id": "1"}, {"jsonrpc": "2.0", "result": 19, '
                        '"id": "2"}, {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}]',
                        sender="server"))
    assert [(m.channel, m.correlation_id, m.status) for m in answers] == [
        ("sum", "c:1", "ok"), ("subtract", "c:2", "ok"), ("get_data", "c:9", "ok")]


def test_batch_with_a_bad_element_keeps_the_good_ones() -> None:
    d = JsonRpcDecoder()
    with pytest.raises(AppMalformed) as info:
        d.feed(ws('[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"foo": "boo"}, 1]'))
    assert str(info.value) == 'batch element 1: no "jsonrpc" member (and 1 more)'
    assert [m.channel for m in info.value.messages] == ["sum"]


@pytest.mark.parametrize(("payload", "reason"), [
    ('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', "not JSON: "),
    ("[]", "an empty batch"),
    ("[1]", "batch element 0: expected a JSON object, found int"),
    ('{"jsonrpc": "2.0", "method": 1, "params": "bar"}', "method is a int"),
    ('{"jsonrpc": "2.0", "method": "m", "params": "bar"}', "params is a str"),
    ('{"jsonrpc": "1.0", "method": "m", "id": 1}', 'expected "jsonrpc": "2.0", found "1.0"'),
    ('{"jsonrpc": "2.0", "result": 1, "error": {}, "id": 1}', "exactly one of result and error"),
    ('{"jsonrpc": "2.0", "id": 1}', "neither a request"),
    ('{"jsonrpc": "2.0", "result": 1}', "a response without an id"),
    ('{"jsonrpc": "2.0", "method": "m", "id": {"a": 1}}', "id is a dict"),
    ('{"jsonrpc": "2.0", "method": "m", "id": true}', "id is a bool"),
    ('{"jsonrpc": "2.0", "error": "bad", "id": 1}', "error is a str"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"jsonrpc": "2.0", "result": ' + "9" * 5000 + ', "id": 1}', "not JSON that can be read"),
    (b'{"jsonrpc": "2.0", "method": "\xff", "id": 1}', "not UTF-8 JSON text"),
])
def test_malformed_reasons(payload: str | bytes, reason: str) -> None:
    with pytest.raises(AppMalformed, match=None) as info:
        JsonRpcDecoder().feed(ws(payload))
    assert reason in str(info.value)


def test_incomplete_message_is_malformed() -> None:
    with pytest.raises(AppMalformed, match="incomplete"):
        JsonRpcDecoder().feed(ws('{"jsonrpc": "2.0", "method": "m", "id": 1}', complete=False))


def test_long_strings_are_cut() -> None:
    [m] = JsonRpcDecoder().feed(ws(json.dumps({"jsonrpc": "2.0", "method": "m" * 1000,
                                               "params": ["x" * 10_000], "id": 1})))
    assert len(m.channel or "") == 201 and (m.channel or "").endswith("…")
    assert len(m.fields["params"]) == 201


def test_pending_methods_are_bounded() -> None:
    d = JsonRpcDecoder()
    for i in range(MAX_PENDING_METHODS + 5):
        d.feed(ws(f'{{"jsonrpc":"2.0","method":"m{i}","id":{i}}}'))
    # the oldest ids were forgotten: their response has no channel, a recent one has
    [old] = d.feed(ws('{"jsonrpc":"2.0","result":0,"id":0}', sender="server"))
    [new] = d.feed(ws(f'{{"jsonrpc":"2.0","result":0,"id":{MAX_PENDING_METHODS + 4}}}', sender="server"))
    assert old.channel is None and old.correlation_id == "c:0"
    assert new.channel == f"m{MAX_PENDING_METHODS + 4}"


def test_fuzz_only_app_malformed_comes_out() -> None:
    rng = random.Random(19)
    seeds = [b'{"jsonrpc": "2.0", "method": "subtract", "params": {"a": [1, 2.5, null, true]}, "id": 1}',
             b'[{"jsonrpc": "2.0", "result": {"x": "y"}, "id": "q"}, {"jsonrpc": "2.0", "error": '
             b'{"code": -1, "message": "m"}, "id": 2}]']
    d = JsonRpcDecoder()
    for i in range(3000):
        seed = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(seed) + 1)
            if op < 0.4 and seed:
                seed[min(pos, len(seed) - 1)] = rng.randrange(256)
            elif op < 0.7:
                del seed[pos:pos + rng.randint(1, 8)]
            else:
                seed[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        msg = ws(bytes(seed), sender=rng.choice(["client", "server"]), message_id=i + 1)
        assert 0.0 <= JsonRpcDecoder.sniff(msg) <= 1.0
        try:
            out = d.feed(msg)
        except AppMalformed as exc:
            out = exc.messages
        assert all(isinstance(m, AppMessage) for m in out)
        for m in out:
            json.dumps(m.fields)
