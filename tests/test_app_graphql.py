"""The GraphQL-over-WebSocket decoders (analyzer/app/protocols/graphql_ws.py): graphql-transport-ws
and subscriptions-transport-ws, on messages built here as their PROTOCOL.md documents spell them."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols.graphql_ws import (
    MAX_OPERATIONS,
    GraphQLTransportWsDecoder,
    Operation,
    SubscriptionsTransportWsDecoder,
    parse_operation,
)
from analyzer.app.registry import by_content, by_subprotocol, decoders
from tests.app_captures import assert_tables_agree
from tests.app_wire import Decoded, decode_capture, exchanges

_ids = itertools.count(1)


def ws(sender: str, payload: bytes, *, complete: bool = True) -> WsMessage:
    return WsMessage(conn_id=1, message_id=next(_ids), sender=sender, ts_ns=0, text=True,
                     payload=payload, complete=complete)


def msg(sender: str, **obj: object) -> WsMessage:
    return ws(sender, json.dumps(obj).encode())


def one(decoder: AppDecoder, message: WsMessage) -> AppMessage:
    out = decoder.feed(message)
    assert len(out) == 1, out
    return out[0]


def summary(app: AppMessage) -> tuple[object, ...]:
    return (app.type, app.channel, app.correlation_id, app.role, app.status)


SUBSCRIPTION = "subscription OnMessage($room: ID!) {\n  messages(room: $room) { id text }\n}"


# graphql-transport-ws

def test_transport_ws_connection_and_pings_both_ways() -> None:
    dec = GraphQLTransportWsDecoder()
    init = msg("client", type="connection_init", payload={"token": "secret"})
    assert summary(one(dec, init)) == ("connection_init", None, "init", "request", None)
    assert summary(one(dec, msg("server", type="connection_ack"))) == (
        "connection_ack", None, "init", "response", "ok")
    assert summary(one(dec, msg("client", type="ping"))) == ("ping", None, "c:ping", "request", None)
    assert summary(one(dec, msg("server", type="ping", payload={"t": 1}))) == (
        "ping", None, "s:ping", "request", None)
    assert summary(one(dec, msg("server", type="pong"))) == ("pong", None, "c:ping", "response", "ok")
    assert summary(one(dec, msg("client", type="pong"))) == ("pong", None, "s:ping", "response", "ok")


def test_transport_ws_subscription_first_result_is_the_response() -> None:
    dec = GraphQLTransportWsDecoder()
    sub = one(dec, msg("client", type="subscribe", id="a1",
                       payload={"query": SUBSCRIPTION, "variables": {"room": "r"}}))
    assert summary(sub) == ("subscribe", "OnMessage", "c:a1", "request", None)
    assert sub.fields == {"id": "a1", "operation_type": "subscription",
                          "operation_name": "OnMessage", "root_field": "messages"}
    first = one(dec, msg("server", type="next", id="a1", payload={"data": {"messages": []}}))
    assert summary(first) == ("next", "OnMessage", "c:a1", "response", "ok")
    assert first.fields == {"id": "a1"}
    later = one(dec, msg("server", type="next", id="a1", payload={"data": {"messages": [1]}}))
    assert summary(later) == ("next", "OnMessage", "c:a1", "message", "ok")
    done = one(dec, msg("server", type="complete", id="a1"))
    assert summary(done) == ("complete", "OnMessage", "c:a1", "message", "ok")


def test_transport_ws_anonymous_query_error_and_results_with_errors() -> None:
    dec = GraphQLTransportWsDecoder()
    query = one(dec, msg("client", type="subscribe", id="2", payload={"query": "{ hello }"}))
    assert summary(query) == ("subscribe", "hello", "c:2", "request", None)
    assert query.fields == {"id": "2", "operation_type": "query", "root_field": "hello"}
    failed = one(dec, msg("server", type="error", id="2",
                          payload=[{"message": "Cannot query field", "locations": []}]))
    assert summary(failed) == ("error", "hello", "c:2", "response", "error: Cannot query field")
    one(dec, msg("client", type="subscribe", id="3",
                 payload={"query": "mutation Add { add(x: 1) }", "operationName": "Add"}))
    partial = one(dec, msg("server", type="next", id="3",
                           payload={"data": None, "errors": [{"message": "boom"}]}))
    assert summary(partial) == ("next", "Add", "c:3", "response", "error: boom")
    assert partial.fields == {"id": "3", "errors": 1}


def test_transport_ws_client_cancel_and_immediate_server_complete() -> None:
    dec = GraphQLTransportWsDecoder()
    one(dec, msg("client", type="subscribe", id="4", payload={"query": SUBSCRIPTION}))
    cancel = one(dec, msg("client", type="complete", id="4"))
    assert summary(cancel) == ("complete", "OnMessage", "c:4", "message", None)
    late = one(dec, msg("server", type="next", id="4", payload={"data": {}}))
    assert summary(late) == ("next", None, "c:4", "message", "ok")     # the operation is over
    one(dec, msg("client", type="subscribe", id="5", payload={"query": SUBSCRIPTION}))
    empty = one(dec, msg("server", type="complete", id="5"))
    assert summary(empty) == ("complete", "OnMessage", "c:5", "response", "ok")


def test_an_id_started_again_is_a_new_exchange() -> None:
    """A subscription cancelled before any result stays unanswered; the next operation that uses
    its id gets its own correlation id, so its answer is not taken for the old one's."""
    dec = GraphQLTransportWsDecoder()
    assert one(dec, msg("client", type="subscribe", id="4", payload={"query": SUBSCRIPTION})
               ).correlation_id == "c:4"
    assert one(dec, msg("client", type="complete", id="4")).correlation_id == "c:4"
    again = one(dec, msg("client", type="subscribe", id="4", payload={"query": "query Q { q }"}))
    assert summary(again) == ("subscribe", "Q", "c:4#2", "request", None)
    assert summary(one(dec, msg("server", type="next", id="4", payload={"data": {}}))) == (
        "next", "Q", "c:4#2", "response", "ok")
    assert one(dec, msg("server", type="complete", id="4")).correlation_id == "c:4#2"
    third = one(dec, msg("client", type="subscribe", id="4", payload={"query": "{ a }"}))
    assert third.correlation_id == "c:4#3"


def test_operation_name_selects_among_several_and_persisted_queries() -> None:
    dec = GraphQLTransportWsDecoder()
    doc = "query A { a } subscription B { b } mutation C { c }"
    picked = one(dec, msg("client", type="subscribe", id="6",
                          payload={"query": doc, "operationName": "B"}))
    assert (picked.channel, picked.fields["operation_type"]) == ("B", "subscription")
    persisted = one(dec, msg("client", type="subscribe", id="7", payload={
        "operationName": "Feed", "extensions": {"persistedQuery": {"sha256Hash": "ab"}}}))
    assert persisted.channel == "Feed"
    assert persisted.fields == {"id": "7", "operation_name": "Feed", "persisted": True}


@pytest.mark.parametrize(("query", "name", "expected"), [
    ("subscription OnX { x }", None, Operation("subscription", "OnX", "x")),
    ("query{me{id}}", None, Operation("query", None, "me")),
    ("{ a: foo(x: {y: 1}) { b } }", None, Operation("query", None, "foo")),
    ("# query Fake { f }\nquery Real { r }", None, Operation("query", "Real", "r")),
    ('"""query Doc { d }"""\nmutation M { m }', None, Operation("mutation", "M", "m")),
    ("fragment F on T { query } query Q($x: In = {a: 1}) @dir { me { id } }", None,
     Operation("query", "Q", "me")),
    ('query A { a } mutation B { b(s: "query C {") }', "B", Operation("mutation", "B", "b")),
    ("query A($query: String) { search(q: $query) }", None, Operation("query", "A", "search")),
    ("query A { a }", "Z", Operation(None, "Z", None)),
    ("query #comment\n{ a }", None, Operation("query", None, "a")),
    ("{ # c\n al: # d\n f }", None, Operation("query", None, "f")),
    ('query Q { f(s: "unterminated\n) } }', None, Operation("query", "Q", "f")),
    ("not graphql at all", None, Operation(None, None, None)),
    ("", None, Operation(None, None, None)),
])
def test_parse_operation(query: str, name: str | None, expected: Operation) -> None:
    assert parse_operation(query, name) == expected


HOSTILE_QUERIES = {
    "unterminated strings": '"a\\' * 20_000, "escapes": '"\\a' * 20_000, "quotes": '"' * 60_000,
    "unterminated block string": '"""' + "a" * 60_000, "block strings": '"""\\' * 15_000,
    "braces": "{" * 60_000, "parentheses": "(" * 60_000, "keywords": "query " * 10_000,
    "comments": "query #" + "c" * 60_000, "names after comments": "query # x\n" * 6_000,
}


def test_hostile_queries_are_scanned_in_linear_time() -> None:
    """Each of these took up to minutes with a backtracking string pattern (168 s for the first);
    a linear scan takes milliseconds. The bound is generous for a shared machine."""
    start = time.perf_counter()
    for query in HOSTILE_QUERIES.values():
        parse_operation(query)
        parse_operation(query, "Missing")
    assert time.perf_counter() - start < 10


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}()#"\\\n qumerysbcitpnfag:$.@', max_size=80), st.none() | st.text(max_size=3))
def test_parse_operation_takes_any_text(query: str, name: str | None) -> None:
    operation = parse_operation(query, name)
    assert operation.type in (None, "query", "mutation", "subscription")


def test_direction_rules_of_transport_ws() -> None:
    dec = GraphQLTransportWsDecoder()
    with pytest.raises(AppMalformed, match="subscribe sent by the server"):
        dec.feed(msg("server", type="subscribe", id="1", payload={"query": "{a}"}))
    with pytest.raises(AppMalformed, match="next sent by the client"):
        dec.feed(msg("client", type="next", id="1", payload={}))
    with pytest.raises(AppMalformed, match="unknown message type 'ka'"):
        dec.feed(msg("server", type="ka"))


# subscriptions-transport-ws

def test_subscriptions_transport_ws_flow() -> None:
    dec = SubscriptionsTransportWsDecoder()
    assert summary(one(dec, msg("client", type="connection_init", payload={}))) == (
        "connection_init", None, "init", "request", None)
    assert summary(one(dec, msg("server", type="connection_ack"))) == (
        "connection_ack", None, "init", "response", "ok")
    assert summary(one(dec, msg("server", type="ka"))) == ("ka", None, None, "message", None)
    start = one(dec, msg("client", type="start", id=1,
                         payload={"query": SUBSCRIPTION, "variables": {}, "operationName": None}))
    assert summary(start) == ("start", "OnMessage", "c:1", "request", None)
    assert summary(one(dec, msg("server", type="data", id="1", payload={"data": {}}))) == (
        "data", "OnMessage", "c:1", "response", "ok")
    assert summary(one(dec, msg("server", type="data", id="1", payload={"data": {}}))) == (
        "data", "OnMessage", "c:1", "message", "ok")
    assert summary(one(dec, msg("client", type="stop", id="1"))) == (
        "stop", "OnMessage", "c:1", "message", None)
    one(dec, msg("client", type="start", id="2", payload={"query": "query Q { q }"}))
    assert summary(one(dec, msg("server", type="error", id="2", payload={"message": "bad"}))) == (
        "error", "Q", "c:2", "response", "error: bad")
    one(dec, msg("client", type="start", id="3", payload={"query": "query Q { q }"}))
    assert summary(one(dec, msg("server", type="data", id="3", payload={"data": {"q": 1}}))) == (
        "data", "Q", "c:3", "response", "ok")
    assert summary(one(dec, msg("server", type="complete", id="3"))) == (
        "complete", "Q", "c:3", "message", "ok")
    # the old server reports a message it could not parse with an error that has no id
    assert summary(one(dec, msg("server", type="error", payload={"message": "parse"}))) == (
        "error", None, None, "message", "error: parse")
    assert one(dec, msg("client", type="connection_terminate")).role == "message"


def test_subscriptions_transport_ws_connection_error_and_directions() -> None:
    dec = SubscriptionsTransportWsDecoder()
    one(dec, msg("client", type="connection_init"))
    refused = one(dec, msg("server", type="connection_error", payload={"message": "auth"}))
    assert summary(refused) == ("connection_error", None, "init", "response", "error: auth")
    with pytest.raises(AppMalformed, match="start sent by the server"):
        dec.feed(msg("server", type="start", id="1", payload={"query": "{a}"}))
    with pytest.raises(AppMalformed, match="unknown message type 'subscribe'"):
        dec.feed(msg("client", type="subscribe", id="1", payload={"query": "{a}"}))


def test_remembered_operations_are_bounded() -> None:
    dec = GraphQLTransportWsDecoder()
    for n in range(MAX_OPERATIONS + 5):
        dec.feed(msg("client", type="subscribe", id=str(n), payload={"query": f"query Q{n} {{a}}"}))
    assert one(dec, msg("server", type="next", id="0", payload={})).role == "message"
    last = str(MAX_OPERATIONS + 4)
    assert summary(one(dec, msg("server", type="next", id=last, payload={}))) == (
        "next", f"Q{last}", f"c:{last}", "response", "ok")


MALFORMED = [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b'{"type":"next"', "not JSON"),
    (b"[1,2]", "not a JSON object"),
    (b'{"id":"1"}', 'no string "type"'),
    (b'{"type":7}', 'no string "type"'),
    (b'{"type":"bogus"}', "unknown message type"),
    (b'{"type":"complete"}', "complete: no id"),
    (b'{"type":"complete","id":{"a":1}}', "the id is not a string"),
    (b'{"type":"complete","id":true}', "the id is not a string"),
    (b'{"type":"subscribe","id":"1"}', "payload is not a JSON object"),
    (b'{"type":"subscribe","id":"1","payload":[]}', "payload is not a JSON object"),
    (b'{"type":"subscribe","id":"1","payload":{"query":5}}', "query is not a string"),
    (b'{"type":"subscribe","id":"1","payload":{"query":"{a}","operationName":1}}',
     "operationName is not a string"),
    (b'{"type":"ping","x":"\xff"}', "not JSON"),
    (b"[" * 100_000, "not JSON"),
]


@pytest.mark.parametrize(("payload", "reason"), MALFORMED)
def test_malformed_messages_raise_app_malformed(payload: bytes, reason: str) -> None:
    dec = GraphQLTransportWsDecoder()
    with pytest.raises(AppMalformed, match=reason):
        dec.feed(ws("client", payload))
    assert one(dec, msg("client", type="ping")).type == "ping"


def test_server_results_that_are_not_objects_are_malformed() -> None:
    with pytest.raises(AppMalformed, match="next: the payload is not a JSON object"):
        GraphQLTransportWsDecoder().feed(msg("server", type="next", id="1", payload=[1]))
    with pytest.raises(AppMalformed, match="cut by a gap"):
        GraphQLTransportWsDecoder().feed(ws("server", b'{"type":"ne', complete=False))


def test_sniff_and_registry() -> None:
    init = msg("client", type="connection_init", payload={})
    assert GraphQLTransportWsDecoder.sniff(init) == 0.8
    assert SubscriptionsTransportWsDecoder.sniff(init) == 0.75
    subscribe = msg("client", type="subscribe", id="1", payload={"query": "{a}"})
    assert GraphQLTransportWsDecoder.sniff(subscribe) == 0.9
    assert SubscriptionsTransportWsDecoder.sniff(subscribe) == 0.0
    start = msg("client", type="start", id="1", payload={"query": "{a}"})
    assert (GraphQLTransportWsDecoder.sniff(start), SubscriptionsTransportWsDecoder.sniff(start)) \
        == (0.0, 0.9)
    for other in (msg("client", type="ping", jsonrpc="2.0"), ws("client", b"not json"),
                  ws("client", b"{bad"), ws("client", b'{"type":1}'), ws("client", b"[]")):
        assert GraphQLTransportWsDecoder.sniff(other) == 0.0
        assert SubscriptionsTransportWsDecoder.sniff(other) == 0.0
    assert decoders()["graphql-transport-ws"] is GraphQLTransportWsDecoder
    assert by_subprotocol("graphql-transport-ws") is GraphQLTransportWsDecoder
    assert by_subprotocol("graphql-ws") is SubscriptionsTransportWsDecoder
    assert by_content(init) == (GraphQLTransportWsDecoder, 0.8)
    assert by_content(start) == (SubscriptionsTransportWsDecoder, 0.9)


VALID = [
    ("client", b'{"type":"connection_init","payload":{}}'), ("server", b'{"type":"connection_ack"}'),
    ("client", b'{"type":"subscribe","id":"1","payload":{"query":"subscription S { s }"}}'),
    ("server", b'{"type":"next","id":"1","payload":{"data":{"s":1}}}'),
    ("server", b'{"type":"error","id":"1","payload":[{"message":"x"}]}'),
    ("client", b'{"type":"complete","id":"1"}'), ("client", b'{"type":"ping"}'),
]


def test_every_truncation_of_valid_messages_gives_messages_or_app_malformed() -> None:
    for cls in (GraphQLTransportWsDecoder, SubscriptionsTransportWsDecoder):
        for sender, payload in VALID:
            for cut in range(len(payload) + 1):
                with contextlib.suppress(AppMalformed):
                    cls().feed(ws(sender, payload[:cut], complete=False))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=8)
_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["connection_init", "connection_ack", "connection_error", "ping",
                              "pong", "subscribe", "start", "next", "data", "error", "complete",
                              "stop", "ka", "x"])},
    optional={"id": st.one_of(st.text(max_size=3), st.integers(), _json_values),
              "payload": st.one_of(_json_values, st.fixed_dictionaries(
                  {"query": st.one_of(st.text(alphabet="{}()#\"query ab:$", max_size=30),
                                      _json_values)},
                  optional={"operationName": st.one_of(st.text(max_size=4), _json_values)}))},
).map(lambda obj: json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["client", "server"]),
                          st.one_of(_messages, st.binary(max_size=30))), max_size=10))
def test_random_messages_never_raise_anything_but_app_malformed(
        messages: list[tuple[str, bytes]]) -> None:
    for cls in (GraphQLTransportWsDecoder, SubscriptionsTransportWsDecoder):
        dec = cls()
        for sender, payload in messages:
            with contextlib.suppress(AppMalformed):
                for app in dec.feed(ws(sender, payload)):
                    assert app.role in ("request", "response", "message")
                    json.dumps(app.fields)


# The real captures: gql 4 client against strawberry (graphql-transport-ws) and ariadne
# (subscriptions-transport-ws), captures/make_app.py graphql_transport_ws / graphql_ws

CAPTURES = {"graphql_transport_ws": GraphQLTransportWsDecoder,
            "graphql_ws": SubscriptionsTransportWsDecoder}


@functools.cache
def _decoded(name: str) -> Decoded:
    decoded = decode_capture(name, CAPTURES[name])
    assert decoded.expected["protocol"] == CAPTURES[name].name
    assert by_subprotocol(decoded.expected["subprotocol"]) is CAPTURES[name]
    return decoded


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_counts_agree_with_the_programs_logs(name: str) -> None:
    decoded = _decoded(name)
    for side in ("client", "server"):
        seen = Counter(app.type for msg, app in decoded.items if msg.sender == side)
        assert seen == decoded.expected["counts"][side]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_operations_agree_with_what_the_client_sent(name: str) -> None:
    decoded = _decoded(name)
    sent = [(r["operation_type"], r["operation_name"]) for r in decoded.expected["log"]
            if r["kind"] == "operation_sent"]
    started = [app for _, app in decoded.items if app.role == "request" and app.type != "ping"
               and app.correlation_id != "init"]
    assert [(app.fields["operation_type"], app.channel) for app in started] == sent
    assert [app.fields["operation_name"] for app in started] == [name for _, name in sent]
    # every result of an operation carries the operation's name, by its id
    names = {f"c:{r['id']}": r["name"] for r in decoded.expected["requests"]}
    for _, app in decoded.items:
        if app.type in ("next", "data", "error") and app.correlation_id in names:
            assert app.channel == names[app.correlation_id]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_first_results_pair_with_their_operations_within_the_programs_timings(
        name: str) -> None:
    decoded = _decoded(name)
    pairs = {pair.request.correlation_id: pair for pair in exchanges(decoded)}
    assert pairs["init"].response is not None
    assert pairs["init"].response.type == "connection_ack"
    for request in decoded.expected["requests"]:
        pair = pairs[f"c:{request['id']}"]
        assert pair.request.channel == request["name"]
        assert pair.response is not None and pair.latency_ms is not None
        # the first result on the wire: at least the server's own sleep, at most what the
        # client measured from its send to the result (or first item) it received
        assert (request["delay_ms"] or 0) <= pair.latency_ms <= request["latency_ms"]
        errors = request.get("answer", {}).get("errors")
        if errors:
            assert pair.response.status == f"error: {errors[0]['message']}"
        else:
            assert pair.response.status == "ok"
    # every subscription's later items are messages of the same operation
    for request in decoded.expected["requests"]:
        if request["kind"] == "subscription":
            items = [app for _, app in decoded.items if app.correlation_id == f"c:{request['id']}"
                     and app.type in ("next", "data")]
            assert len(items) == request["items"]
            assert [app.role for app in items] == ["response"] + ["message"] * (len(items) - 1)


def test_capture_pings_and_client_stop_of_graphql_transport_ws() -> None:
    decoded = _decoded("graphql_transport_ws")
    pings = [pair for pair in exchanges(decoded) if pair.request.type == "ping"]
    assert len(pings) == decoded.expected["counts"]["client"]["ping"]
    assert all(pair.response is not None and pair.response.type == "pong" for pair in pings)
    stops = [r for r in decoded.expected["log"] if r["kind"] == "stop_sent"]
    cancels = [app for msg, app in decoded.items if msg.sender == "client" and app.type == "complete"]
    assert [(app.fields["id"], app.channel) for app in cancels] == [
        (r["id"], r["operation_name"]) for r in stops]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_exchanges_are_the_messages_the_programs_sent(name: str) -> None:
    """Each exchange's two messages, found in the expected file's wire list (the texts the
    libraries logged, in capture order, with tshark's timestamps): the same ids, the latency
    tshark's timestamps give."""
    decoded = _decoded(name)
    wire = decoded.expected["wire"]
    assert len(decoded.index) == len(wire)
    pairs = exchanges(decoded)
    assert len(pairs) == len(decoded.expected["requests"]) + 1 + sum(
        1 for _, app in decoded.items if app.type == "ping")
    for pair in pairs:
        assert pair.response_index is not None and pair.latency_ms is not None
        request, response = (json.loads(wire[i]["text"])
                             for i in (pair.request_index, pair.response_index))
        assert (request["type"], response["type"]) == (pair.request.type, pair.response.type)
        if pair.request.correlation_id.startswith("c:") and request["type"] != "ping":
            assert request["id"] == response["id"] == pair.request.correlation_id[2:]
        tshark_ms = (wire[pair.response_index]["ts"] - wire[pair.request_index]["ts"]) * 1000
        assert pair.latency_ms == pytest.approx(tshark_ms, abs=0.01)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_tables_of_analyze_hold_what_the_decoder_gives(name: str) -> None:
    """analyze() chooses the decoder by the negotiated subprotocol and its app_messages and
    exchanges tables hold what the decoder gives fed by hand, paired as app_conv says."""
    assert_tables_agree(name, CAPTURES[name])
