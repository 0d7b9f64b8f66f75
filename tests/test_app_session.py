"""Application decoding end to end on captures built here: the decoder chosen per connection, every
data message fed (whole, decompressed), app_messages and exchanges joinable to messages and
connections, malformed data as problems, a decoder's bug as one internal-error row, jobs=2 equal."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import analyzer
import analyzer.api
from analyzer.app import session as session_module
from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols.jsonrpc import JsonRpcDecoder
from analyzer.app.session import MAX_MALFORMED
from analyzer.bugs import STRICT_ENV
from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

MASK = b"\x11\x22\x33\x44"


def _conversation(messages: list[tuple[int, bytes | list[bytes]]], *, port: int = 50000,
                  extra_request: str = "", extra_response: str = "", rsv: int = 0,
                  t: float = 1_700_000_000.0, step: float = 0.001) -> Conversation:
    """A WebSocket conversation: handshake, then each (direction, payload) as one text frame (or a
    list of payloads as fragments of one message), then both close frames and FINs."""
    conv = Conversation(client_port=port, t=t, step=step)
    conv.handshake()
    conv.send(0, upgrade_request(extra=extra_request))
    conv.send(1, upgrade_response(extra=extra_response))
    for direction, payload in messages:
        mask = MASK if direction == 0 else None
        if isinstance(payload, list):
            data = b"".join(frame(1 if i == 0 else 0, piece, fin=i == len(payload) - 1, mask=mask)
                            for i, piece in enumerate(payload))
        else:
            data = frame(1, payload, mask=mask, rsv=rsv)
        for start in range(0, len(data), 1400):
            conv.send(direction, data[start:start + 1400])
    conv.send(0, frame(8, b"\x03\xe8", mask=MASK))
    conv.send(1, frame(8, b"\x03\xe8"))
    conv.fin(0)
    conv.fin(1)
    return conv


def _rpc(**obj: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **obj}).encode()


RPC = [
    (0, _rpc(method="subtract", params=[42, 23], id=1)),
    (0, _rpc(method="update", params=[1, 2])),
    (1, _rpc(result=19, id=1)),
    (0, _rpc(method="foobar", id="x")),
    (1, _rpc(error={"code": -32601, "message": "Method not found"}, id="x")),
    (0, _rpc(method="never_answered", id=7)),
]


def _write(tmp_path: Path, name: str, *convs: Conversation) -> str:
    path = tmp_path / name
    write_pcap(path, sorted((p for c in convs for p in c.packets), key=lambda p: p[0]))
    return str(path)


def test_jsonrpc_chosen_by_content_tables_and_exchanges(tmp_path: Path) -> None:
    a = analyzer.analyze(_write(tmp_path, "rpc.pcap", _conversation(RPC, step=0.01)), jobs=1)
    assert a.connections["app_protocol"].tolist() == ["jsonrpc"]
    m = a.app_messages
    assert m["type"].astype(str).tolist() == ["request", "notification", "response", "request", "error",
                                              "request"]
    assert m["channel"].tolist() == ["subtract", "update", "subtract", "foobar", "foobar", "never_answered"]
    assert m["sender"].astype(str).tolist() == ["client", "client", "server", "client", "server", "client"]
    assert m["chosen_by"].astype(str).unique().tolist() == ["content"]
    assert m["confidence"].unique().tolist() == [0.9]
    assert m["app_index"].tolist() == [0] * 6
    assert json.loads(m["fields"].iloc[0]) == {"id": 1, "params": "[42,23]"}
    # every row joins its WebSocket message, whose time it has
    joined = m.merge(a.messages, on=["conn_id", "message_id"], how="left", validate="one_to_one")
    assert joined["ts_end"].notna().all()
    assert (joined["ts"] == joined["ts_end"]).all()
    assert (joined["sender_x"].astype(str) == joined["sender_y"].astype(str)).all()

    e = a.exchanges
    assert e["exchange_id"].tolist() == [1, 2, 3]
    assert e["method"].tolist() == ["subtract", "foobar", "never_answered"]
    assert e["correlation_id"].tolist() == ["c:1", "c:x", "c:7"]
    assert e["answered"].tolist() == [True, True, False]
    assert e["status"].tolist()[:2] == ["ok", "error -32601: Method not found"]
    assert pd.isna(e["status"].iloc[2]) and pd.isna(e["response_message_id"].iloc[2])
    msgs = a.messages.set_index("message_id")
    for _, row in e.iloc[:2].iterrows():
        request = msgs.loc[row["request_message_id"], "ts_end"]
        response = msgs.loc[row["response_message_id"], "ts_end"]
        assert row["latency"] == pytest.approx((response - request).total_seconds())
    # one packet between request and answer in the first, one between in the second: 10 ms steps
    assert e["latency"].tolist()[:2] == pytest.approx([0.02, 0.01])
    assert pd.isna(e["latency"].iloc[2])
    assert set(e["conn_id"]) <= set(a.connections["conn_id"])


def test_no_decoder_for_other_text(tmp_path: Path) -> None:
    chat = _conversation([(0, b"hello"), (1, b'{"jsonrpc": "2.0"}')])
    a = analyzer.analyze(_write(tmp_path, "chat.pcap", chat), jobs=1)
    assert a.connections["app_protocol"].isna().all()
    assert a.app_messages.empty and a.exchanges.empty
    assert len(a.messages) == 2
    # the empty tables keep their dtypes
    assert str(a.exchanges["latency"].dtype) == "float64" and str(a.app_messages["ts"].dtype).startswith(
        "datetime64")


def test_app_false_decodes_nothing(tmp_path: Path) -> None:
    a = analyzer.analyze(_write(tmp_path, "rpc.pcap", _conversation(RPC)), jobs=1, app=False)
    assert a.app_messages.empty and a.exchanges.empty
    assert a.connections["app_protocol"].isna().all()


def test_fragmented_and_compressed_messages_are_whole(tmp_path: Path) -> None:
    body = _rpc(method="big", params=["x" * 3000], id=1)
    pieces = [body[:10], body[10:2000], body[2000:]]
    plain = _conversation([(0, pieces), (1, _rpc(result=1, id=1))], port=50001)

    def deflated(data: bytes) -> bytes:
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]

    ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    compressed = _conversation([(0, deflated(body)), (1, deflated(_rpc(result=2, id=1)))], port=50002,
                               extra_request=ext, extra_response=ext, rsv=4, t=1_700_000_001.0)
    a = analyzer.analyze(_write(tmp_path, "frag.pcap", plain, compressed), jobs=1)
    assert a.messages["compressed"].tolist() == [False, False, True, True]
    assert a.messages["frames"].tolist() == [3, 1, 1, 1]
    e = a.exchanges
    assert e["method"].tolist() == ["big", "big"] and e["answered"].all()
    fields = json.loads(a.app_messages["fields"].iloc[0])
    assert fields["params"].startswith('["xxx') and len(fields["params"]) == 201
    assert a.problems.empty


def test_subprotocol_chooses_the_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JsonRpcDecoder, "subprotocols", ("json-rpc.test",))
    conv = _conversation([(0, b"not json at all"), *RPC[:3]],
                         extra_request="Sec-WebSocket-Protocol: json-rpc.test\r\n",
                         extra_response="Sec-WebSocket-Protocol: json-rpc.test\r\n")
    a = analyzer.analyze(_write(tmp_path, "sub.pcap", conv), jobs=1)
    assert a.connections["subprotocol"].tolist() == ["json-rpc.test"]
    assert a.connections["app_protocol"].tolist() == ["jsonrpc"]
    assert a.app_messages["chosen_by"].astype(str).unique().tolist() == ["subprotocol"]
    assert a.app_messages["confidence"].unique().tolist() == [1.0]
    [problem] = a.problems.itertuples()
    assert problem.kind == "app-protocol-malformed"
    assert problem.detail.startswith("jsonrpc: message 1: not JSON: ")
    first = a.messages.iloc[0]
    assert (problem.frame_no, problem.sender) == (first["last_frame_no"], "client")
    assert len(a.exchanges) == 1


def test_many_malformed_messages_give_the_decoder_up(tmp_path: Path) -> None:
    bad = [(0, _rpc(method="ok", id=0))] + [(0, b'{"jsonrpc": "2.0", oops')] * (MAX_MALFORMED + 20)
    a = analyzer.analyze(_write(tmp_path, "bad.pcap", _conversation([*bad, (1, _rpc(result=1, id=0))])),
                         jobs=1)
    kinds = a.problems["kind"].astype(str)
    assert (kinds == "app-protocol-malformed").sum() == MAX_MALFORMED + 1
    assert "decoder given up after 100 malformed messages" in a.problems["detail"].iloc[-1]
    # given up: the answer is not decoded, its request stays unanswered; the messages are all there
    assert len(a.app_messages) == 1
    assert a.exchanges["answered"].tolist() == [False]
    assert len(a.messages) == len(bad) + 1


class _Raising(AppDecoder):
    """Decodes the first message, raises a bug's exception on the second."""

    subprotocols = ()

    def __init__(self) -> None:
        self.seen = 0

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        return 1.0

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        self.seen += 1
        if self.seen == 2:
            raise KeyError("a bug")
        if self.seen > 2:
            raise AssertionError("fed after its bug")
        return [AppMessage("raising", "first", role="request", correlation_id="1")]


_Raising.name = "raising"   # set after the class: not registered for the other tests


def test_a_decoders_bug_is_one_internal_error_and_loses_nothing(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STRICT_ENV)
    monkeypatch.setattr(session_module, "by_content", lambda msg: (_Raising, 1.0))
    a = analyzer.analyze(_write(tmp_path, "raise.pcap", _conversation(RPC)), jobs=1)
    [problem] = a.problems.itertuples()
    assert problem.kind == "internal-error"
    assert problem.detail.startswith("KeyError at tests/test_app_session.py:")
    assert "the raising decoder of this connection is given up" in problem.detail
    assert problem.conn_id == 1
    assert len(a.messages) == len(RPC) and len(a.frames) == len(RPC) + 2
    assert a.connections["close_status"].tolist() == ["clean"]
    assert a.app_messages["type"].astype(str).tolist() == ["first"]
    assert a.exchanges["answered"].tolist() == [False]
    # under the test suite's setting, the bug is raised
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(KeyError):
        analyzer.analyze(_write(tmp_path, "raise.pcap", _conversation(RPC)), jobs=1)


def test_a_message_over_the_limit_is_malformed_not_held(tmp_path: Path) -> None:
    huge = _rpc(method="huge", params=["y" * 200_000], id=1)
    a = analyzer.analyze(_write(tmp_path, "huge.pcap", _conversation([*RPC[:1], (0, huge)])), jobs=1,
                         max_message_bytes=100_000)
    kinds = a.problems["kind"].astype(str).tolist()
    assert "app-protocol-malformed" in kinds
    detail = a.problems[a.problems["kind"] == "app-protocol-malformed"]["detail"].iloc[0]
    assert "incomplete" in detail
    assert a.app_messages["channel"].tolist() == ["subtract"]


def test_jobs_two_gives_the_same_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    convs = [_conversation(RPC, port=51000 + i, t=1_700_000_000.0 + i * 0.0005) for i in range(6)]
    convs.append(_conversation([(0, b"plain"), (1, b"text")], port=52000, t=1_700_000_000.0003))
    path = _write(tmp_path, "many.pcap", *convs)
    one = analyzer.analyze(path, jobs=1)
    monkeypatch.setattr(analyzer.api, "SHARD_MIN_BYTES", 0)
    two = analyzer.analyze(path, jobs=2)
    assert len(one.app_messages) == 6 * len(RPC) and len(one.exchanges) == 18
    for table in ("app_messages", "exchanges", "connections"):
        pd.testing.assert_frame_equal(getattr(one, table), getattr(two, table), obj=table)
    # two captures: conn_ids continue from the first to the second
    both = analyzer.analyze([path, _write(tmp_path, "rpc.pcap", _conversation(RPC))], jobs=2)
    assert both.app_messages["conn_id"].max() == 8
    assert both.exchanges.groupby("capture", observed=True).size().to_dict() == {"many.pcap": 18,
                                                                                  "rpc.pcap": 3}
    joined = both.app_messages.merge(both.messages, on=["conn_id", "message_id"], how="left")
    assert joined["size"].notna().all()
    assert (joined["capture_x"].astype(str) == joined["capture_y"].astype(str)).all()


def test_finish_reports_what_the_decoder_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def finish(self: JsonRpcDecoder) -> list[AppMessage]:
        raise AppMalformed("2 bytes of a packet left", [AppMessage("jsonrpc", "partial")])

    monkeypatch.setattr(JsonRpcDecoder, "finish", finish)
    a = analyzer.analyze(_write(tmp_path, "hold.pcap", _conversation(RPC[:1])), jobs=1)
    assert a.problems["detail"].tolist() == ["jsonrpc: at the connection's end: 2 bytes of a packet left"]
    assert a.app_messages["type"].astype(str).tolist() == ["request", "partial"]
    assert a.app_messages["app_index"].tolist() == [0, 0]


def test_websockets_over_http2_each_get_their_own_decoding(tmp_path: Path) -> None:
    from tests.test_h2_pipeline import _pcap, _Wire

    w = _Wire()
    w.connect(1, "/rpc")
    w.connect(3, "/chat")
    for direction, payload in RPC[:3]:
        mask = MASK if direction == 0 else None
        w.ws(direction, 1, frame(1, payload, mask=mask))
        w.ws(direction, 3, frame(1, b"plain " + payload[:5], mask=mask))
    for stream in (1, 3):
        w.ws(0, stream, frame(8, b"\x03\xe8", mask=MASK))
        w.ws(1, stream, frame(8, b"\x03\xe8"), end=True)
        w.ws(0, stream, b"", end=True)
    a = analyzer.analyze(_pcap(tmp_path, w.flow, 7), jobs=1)
    c = a.connections
    assert c["h2_stream_id"].tolist() == [1, 3]
    assert c["app_protocol"].tolist()[0] == "jsonrpc" and pd.isna(c["app_protocol"].iloc[1])
    assert set(a.app_messages["conn_id"]) == {1} and len(a.app_messages) == 3
    [exchange] = a.exchanges.itertuples()
    assert (exchange.conn_id, exchange.method, exchange.answered) == (1, "subtract", True)
    assert a.problems.empty


def test_a_connection_given_up_keeps_its_exchanges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.websocket

    monkeypatch.delenv(STRICT_ENV)
    control = analyzer.websocket.WebSocket._control

    def failing(self: Any, direction: int, side: Any, opcode: int, *args: Any) -> int:
        if opcode == 8:
            raise RuntimeError("a bug at the close frame")
        return control(self, direction, side, opcode, *args)

    monkeypatch.setattr(analyzer.websocket.WebSocket, "_control", failing)
    a = analyzer.analyze(_write(tmp_path, "given_up.pcap", _conversation(RPC)), jobs=1)
    assert a.problems["kind"].astype(str).tolist() == ["internal-error"]
    assert "not analysed further" in a.problems["detail"].iloc[0]
    assert len(a.app_messages) == len(RPC)
    e = a.exchanges
    assert e["method"].tolist() == ["subtract", "foobar", "never_answered"]
    assert e["answered"].tolist() == [True, True, False]
