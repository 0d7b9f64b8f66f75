"""Jupyter kernel-message decoder (analyzer/app/protocols/jupyter.py) on messages built here: the
v1.kernel.websocket.jupyter.org binary framing and the legacy JSON and binary forms, as described by
jupyter_server's "WebSocket kernel wire protocols" page and jupyter-client's messaging spec."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.app import registry
from analyzer.app.base import AppMalformed, AppMessage, WsMessage
from analyzer.app.protocols.jupyter import V1, JupyterDecoder
from tests.app_captures import CAPTURES, assert_tables_agree, decode, expected, pair, ws_messages


def header(msg_type: str, msg_id: str) -> dict[str, object]:
    return {"msg_id": msg_id, "msg_type": msg_type, "session": "sess", "username": "u",
            "date": "2026-11-29T22:00:00.000000Z", "version": "5.4"}


def message(msg_type: str, msg_id: str, parent: str | None = None, content: dict | None = None,
            parent_type: str = "execute_request") -> dict[str, object]:
    return {"header": header(msg_type, msg_id),
            "parent_header": header(parent_type, parent) if parent else {},
            "metadata": {}, "content": content or {}}


def v1(msg: dict, channel: str, buffers: tuple[bytes, ...] = ()) -> bytes:
    parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
    return v1_parts(channel, [*parts, *buffers])


def v1_parts(channel: str | bytes, parts: list[bytes]) -> bytes:
    """The v1 framing, written from its description: count, offsets, channel, parts."""
    name = channel.encode() if isinstance(channel, str) else channel
    count = len(parts) + 2
    offsets = [8 * (count + 1)]
    offsets.append(offsets[-1] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{count + 1}Q", count, *offsets) + name + b"".join(parts)


def legacy(msg: dict, channel: str | None) -> bytes:
    whole = dict(msg, buffers=[])
    if channel is not None:
        whole["channel"] = channel
    return json.dumps(whole).encode()


def legacy_binary(msg: dict, channel: str, buffers: tuple[bytes, ...]) -> bytes:
    """The legacy binary form: big-endian count and offsets, the JSON message, the buffers."""
    parts = [json.dumps(dict(msg, channel=channel)).encode(), *buffers]
    offsets = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets) + b"".join(parts)


def ws(payload: bytes, sender: str = "client", *, text: bool = False, n: int = 0) -> WsMessage:
    return WsMessage(conn_id=1, message_id=n, sender=sender, ts_ns=n, text=text, payload=payload)


# (sender, channel, message, buffers): a kernel_info round trip, a cell that prints and returns, a
# cell that raises, input(), an interrupt on control, a comm with binary buffers
KI, ER, IR = "kernel_info_request", "execute_request", "interrupt_request"
SESSION: list[tuple[str, str, dict, tuple[bytes, ...]]] = [
    ("client", "shell", message(KI, "k1"), ()),
    ("server", "iopub", message("status", "s1", "k1", {"execution_state": "busy"}, KI), ()),
    ("server", "shell", message("kernel_info_reply", "k1r", "k1", {
        "status": "ok", "protocol_version": "5.4", "implementation": "ipython"}, KI), ()),
    ("client", "shell", message(ER, "e1", content={"code": "print(1); 2", "silent": False}), ()),
    ("server", "iopub", message("execute_input", "i1", "e1", {"code": "print(1); 2",
                                                              "execution_count": 1}), ()),
    ("server", "iopub", message("stream", "o1", "e1", {"name": "stdout", "text": "1\n"}), ()),
    ("server", "iopub", message("execute_result", "r1", "e1", {"data": {"text/plain": "2"},
                                                                 "execution_count": 1}), ()),
    ("server", "shell", message("execute_reply", "e1r", "e1", {"status": "ok", "execution_count": 1}), ()),
    ("client", "shell", message(ER, "e2", content={"code": "1/0", "silent": False}), ()),
    ("server", "iopub", message("error", "x1", "e2", {"ename": "ZeroDivisionError",
                                                      "evalue": "division by zero", "traceback": []}), ()),
    ("server", "shell", message("execute_reply", "e2r", "e2", {
        "status": "error", "ename": "ZeroDivisionError", "evalue": "division by zero"}), ()),
    ("server", "stdin", message("input_request", "in1", "e3", {"prompt": "? ", "password": False}), ()),
    ("client", "stdin", message("input_reply", "in1r", "in1", {"value": "x"}, "input_request"), ()),
    ("client", "control", message(IR, "c1"), ()),
    ("server", "control", message("interrupt_reply", "c1r", "c1", {"status": "ok"}, IR), ()),
    ("server", "iopub", message("comm_msg", "cm1", "e3", {"comm_id": "w1", "data": {}}),
     (b"\x00\x01", b"xyz")),
    ("server", "iopub", message("status", "s2", "e3", {"execution_state": "idle"}), ()),
]
EXPECTED = [
    ("kernel_info_request", "shell", "k1", "request", None),
    ("status", "iopub", None, "message", None),
    ("kernel_info_reply", "shell", "k1", "response", "ok"),
    ("execute_request", "shell", "e1", "request", None),
    ("execute_input", "iopub", None, "message", None),
    ("stream", "iopub", None, "message", None),
    ("execute_result", "iopub", None, "message", None),
    ("execute_reply", "shell", "e1", "response", "ok"),
    ("execute_request", "shell", "e2", "request", None),
    ("error", "iopub", None, "message", None),
    ("execute_reply", "shell", "e2", "response", "error"),
    ("input_request", "stdin", "in1", "request", None),
    ("input_reply", "stdin", "in1", "response", None),
    ("interrupt_request", "control", "c1", "request", None),
    ("interrupt_reply", "control", "c1", "response", "ok"),
    ("comm_msg", "iopub", None, "message", None),
    ("status", "iopub", None, "message", None),
]


def summary(msgs: list[AppMessage]) -> list[tuple[object, ...]]:
    return [(m.type, m.channel, m.correlation_id, m.role, m.status) for m in msgs]


def run(encode: str) -> list[AppMessage]:
    dec = JupyterDecoder()
    out: list[AppMessage] = []
    for i, (sender, channel, msg, buffers) in enumerate(SESSION):
        if encode == "v1":
            wsm = ws(v1(msg, channel, buffers), sender, n=i)
        elif buffers:
            wsm = ws(legacy_binary(msg, channel, buffers), sender, n=i)
        else:
            wsm = ws(legacy(msg, channel), sender, text=True, n=i)
        out.extend(dec.feed(wsm))
    assert dec.finish() == []
    return out


def test_registered_and_sniffed() -> None:
    assert registry.by_subprotocol(V1) is JupyterDecoder
    assert registry.by_subprotocol(None) is None
    _, channel, msg, _ = SESSION[0]
    assert JupyterDecoder.sniff(ws(v1(msg, channel))) == 0.9
    assert JupyterDecoder.sniff(ws(legacy(msg, channel), text=True)) == 0.9
    assert JupyterDecoder.sniff(ws(legacy(msg, None), text=True)) == 0.0     # no channel: not sure
    assert JupyterDecoder.sniff(ws(b'{"jsonrpc": "2.0", "method": "x"}', text=True)) == 0.0
    assert JupyterDecoder.sniff(ws(b"\x10\x0c\x00\x04MQTT")) == 0.0
    assert JupyterDecoder.sniff(ws(b"[" * 100_000 + b'"msg_type"', text=True)) == 0.0
    found = registry.by_content(ws(legacy(msg, channel), text=True))
    assert found is not None and found[0] is JupyterDecoder


@pytest.mark.parametrize("encode", ["v1", "legacy"])
def test_a_session_every_channel(encode: str) -> None:
    got = run(encode)
    assert summary(got) == EXPECTED
    assert {m.protocol for m in got} == {"jupyter"}
    by_id = {m.fields["msg_id"]: m.fields for m in got}
    assert by_id["k1r"] == {"msg_id": "k1r", "parent_msg_id": "k1", "implementation": "ipython",
                            "protocol_version": "5.4"}
    assert by_id["s1"] == {"msg_id": "s1", "parent_msg_id": "k1", "execution_state": "busy"}
    assert by_id["e1"] == {"msg_id": "e1", "code_len": 11, "silent": False}
    assert by_id["i1"]["execution_count"] == 1
    assert by_id["o1"] == {"msg_id": "o1", "parent_msg_id": "e1", "name": "stdout", "text_len": 2}
    assert by_id["e1r"] == {"msg_id": "e1r", "parent_msg_id": "e1", "execution_count": 1}
    assert by_id["x1"]["ename"] == "ZeroDivisionError" and by_id["x1"]["evalue"] == "division by zero"
    assert by_id["e2r"]["ename"] == "ZeroDivisionError"
    assert by_id["cm1"] == {"msg_id": "cm1", "parent_msg_id": "e3", "comm_id": "w1", "buffers": 2}
    assert "parent_msg_id" not in by_id["k1"]


def test_framing_matches_jupyter_server() -> None:
    """Our builders write what jupyter_server writes, so the tests above decode its bytes."""
    base = pytest.importorskip("jupyter_server.services.kernels.connection.base")
    for _, channel, msg, buffers in SESSION:
        parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
        assert base.serialize_msg_to_ws_v1([*parts, *buffers], channel) == v1(msg, channel, buffers)
        got_channel, got_parts = base.deserialize_msg_from_ws_v1(v1(msg, channel, buffers))
        assert (got_channel, got_parts) == (channel, [*parts, *buffers])
        if buffers:
            real = base.serialize_binary_message(dict(msg, channel=channel, buffers=list(buffers)))
            assert real.startswith(struct.pack("!I", 1 + len(buffers)))
            dec = JupyterDecoder()
            assert dec.feed(ws(real, "server"))[0].fields["buffers"] == len(buffers)
            back = base.deserialize_binary_message(legacy_binary(msg, channel, buffers))
            assert back["buffers"] == list(buffers) and back["header"]["msg_id"] == msg["header"]["msg_id"]


def test_a_client_message_without_channel_goes_to_shell() -> None:
    _, _, msg, _ = SESSION[3]
    dec = JupyterDecoder()
    assert summary(dec.feed(ws(legacy(msg, None), text=True))) == [EXPECTED[3]]
    # from the kernel side no channel is left unknown
    _, _, reply, _ = SESSION[7]
    assert dec.feed(ws(legacy(reply, None), "server", text=True))[0].channel is None


def test_long_values_are_clipped() -> None:
    msg = message("execute_reply", "r" * 1000, "p" * 1000, {"status": "error", "ename": "E" * 900})
    got = JupyterDecoder().feed(ws(v1(msg, "shell"), "server"))[0]
    assert got.correlation_id == "p" * 199 + "…"
    assert len(got.fields["ename"]) == 200 and len(got.fields["msg_id"]) == 200


def _v1_with(offsets: list[int], tail: bytes) -> bytes:
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + tail


GOOD = SESSION[3][2]
MALFORMED: list[tuple[bytes, bool, str]] = [
    (b"", False, "neither a v1 nor a legacy offsets table"),
    (v1(GOOD, "shell")[:-3], False, "neither a v1 nor a legacy offsets table"),   # last offset past the end
    (v1(GOOD, "shell") + b"x", False, "neither a v1 nor a legacy offsets table"),
    (_v1_with([56, 61, 60, 70, 80, 90], bytes(34)), False, "neither"),            # offsets go back
    (v1_parts("shell", [b"{}", b"{}", b"{}"]), False, "3 parts in a v1 message"),
    (v1_parts("shell", [b"{x", b"{}", b"{}", b"{}"]), False, "header: not JSON"),
    (v1_parts("shell", [b"[]", b"{}", b"{}", b"{}"]), False, "header is not a JSON object"),
    (v1_parts("shell", [b"{}", b"{}", b"{}", b"{}"]), False, "header without msg_type"),
    (v1_parts("shell", [b'{"msg_type": "a"}', b"[]", b"{}", b"{}"]), False,
     "parent_header is not a JSON object"),
    (v1_parts(b"shell\xff", [b'{"msg_type": "a"}', b"{}", b"{}", b"{}"]), False, "neither"),
    (v1(GOOD, "bogus"), False, "unknown channel 'bogus'"),
    (v1(message("execute_reply", "a", "b"), "shell")[:-2] + b"{x", False, "content: not JSON"),
    (b"not json", True, "message: not JSON"),
    (b"[1, 2]", True, "message is not a JSON object"),
    (b"[" * 100_000, True, "message: not JSON"),
    (b'{"header": {"msg_type": "x"}, "channel": 5}', True, "unknown channel '5'"),
    (b'{"header": {"msg_type": 7}, "channel": "shell"}', True, "header without msg_type"),
    (b"\xff\xfe", True, "message: not JSON"),
    (struct.pack("!II", 1, 8) + b"{bad", False, "message: not JSON"),             # legacy binary
]


@pytest.mark.parametrize(("payload", "text", "reason"), MALFORMED, ids=[r for _, _, r in MALFORMED])
def test_malformed(payload: bytes, text: bool, reason: str) -> None:
    dec = JupyterDecoder()
    with pytest.raises(AppMalformed, match=reason):
        dec.feed(ws(payload, "server", text=text))
    assert summary(dec.feed(ws(v1(GOOD, "shell")))) == [EXPECTED[3]]     # the next message is fine


def test_a_message_cut_by_a_gap_says_so() -> None:
    cut = WsMessage(1, 1, "server", 1, False, v1(GOOD, "shell")[:-10], complete=False)
    with pytest.raises(AppMalformed, match=r"offsets table \(message cut by a gap\)$"):
        JupyterDecoder().feed(cut)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_fuzz_random_bytes_only_app_malformed(payload: bytes, text: bool) -> None:
    with contextlib.suppress(AppMalformed):
        JupyterDecoder().feed(ws(payload, text=text))
    JupyterDecoder.sniff(ws(payload, text=text))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_v1_messages(data: st.DataObject) -> None:
    sender, channel, msg, buffers = data.draw(st.sampled_from(SESSION))
    raw = bytearray(v1(msg, channel, buffers))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(AppMalformed):
        for m in JupyterDecoder().feed(ws(bytes(raw), sender)):
            assert m.role in ("request", "response", "message")
    JupyterDecoder.sniff(ws(bytes(raw)))


def test_messages_made_by_jupyter_client_and_framed_by_jupyter_server() -> None:
    """Headers, ids and dates as jupyter_client's Session makes them, framed as jupyter_server
    frames them for the browser (v1: the signed zmq parts after the signature; legacy: JSON)."""
    session_mod = pytest.importorskip("jupyter_client.session")
    jsonutil = pytest.importorskip("jupyter_client.jsonutil")
    base = pytest.importorskip("jupyter_server.services.kernels.connection.base")
    session = session_mod.Session(key=b"secret")
    request = session.msg("execute_request", {"code": "import time; time.sleep(0.1)", "silent": False})
    reply = session.msg("execute_reply", {"status": "ok", "execution_count": 3}, parent=request)
    busy = session.msg("status", {"execution_state": "busy"}, parent=request)
    for encode in ("v1", "legacy"):
        dec = JupyterDecoder()
        got = []
        for sender, channel, msg in (("client", "shell", request), ("server", "iopub", busy),
                                     ("server", "shell", reply)):
            if encode == "v1":
                raw = base.serialize_msg_to_ws_v1(session.serialize(msg)[2:], channel)
                got += dec.feed(ws(raw, sender))
            else:
                text = json.dumps(dict(msg, channel=channel, buffers=[]), default=jsonutil.json_default)
                got += dec.feed(ws(text.encode(), sender, text=True))
        rid = request["header"]["msg_id"]
        assert summary(got) == [("execute_request", "shell", rid, "request", None),
                                ("status", "iopub", None, "message", None),
                                ("execute_reply", "shell", rid, "response", "ok")]
        assert got[1].fields == {"msg_id": busy["header"]["msg_id"], "parent_msg_id": rid,
                                 "execution_state": "busy"}
        assert got[0].fields["code_len"] == 28 and got[2].fields["execution_count"] == 3


# -- real capture: jupyter-kernel-client against jupyter_server + ipykernel (captures/make_app2.py) ----

#: timestamps of the capture and of the programs' logs come from the same clock (µs resolution)
TOL = 1e-5
#: content values compared with the client's log; execute_result's execution_count is not read (the
#: decoder leaves the content of output messages, possibly megabytes of images, unparsed)
LOGGED = ("channel", "type", "msg_id", "parent_msg_id", "buffers", "status", "execution_state", "ename",
          "execution_count", "name")


def as_logged(app: AppMessage) -> dict[str, object]:
    f = app.fields
    mine = {"channel": app.channel, "type": app.type, "msg_id": f.get("msg_id"),
            "parent_msg_id": f.get("parent_msg_id"), "buffers": f.get("buffers", 0),
            "status": app.status, "execution_state": f.get("execution_state"), "ename": f.get("ename"),
            "execution_count": f.get("execution_count"), "name": f.get("name")}
    if app.type == "execute_result":
        del mine["execution_count"]
    return mine


@pytest.mark.parametrize("name", [c.name.removesuffix(".expected.json") for c in sorted(
    CAPTURES.glob("jupyter*.expected.json"))])
def test_capture_messages_agree_with_the_kernel_clients_log(name: str) -> None:
    exp = expected(name)
    streams = ws_messages(name)
    assert sorted(streams) == sorted(c["client_port"] for c in exp["connections"])
    counts: dict[str, dict[str, int]] = {"client": {}, "server": {}}
    for port, msgs in streams.items():
        decoded = decode(JupyterDecoder, msgs)
        assert len(decoded) == len(msgs)            # one kernel message per WebSocket message
        for sender in ("client", "server"):
            logged = [m for m in exp["messages"] if m["client_port"] == port and m["sender"] == sender]
            ours = [(msg, app) for msg, app in decoded if msg.sender == sender]
            assert len(ours) == len(logged)
            for (msg, app), theirs in zip(ours, logged):
                counts[sender][app.type] = counts[sender].get(app.type, 0) + 1
                mine = as_logged(app)
                assert {k: mine[k] for k in LOGGED if k in theirs and k in mine} == {
                    k: theirs[k] for k in LOGGED if k in theirs and k in mine}, theirs
                assert abs(msg.ts_ns / 1e9 - theirs["t_capture"]) <= TOL
    assert counts == exp["counts"]


@pytest.mark.parametrize("name", [c.name.removesuffix(".expected.json") for c in sorted(
    CAPTURES.glob("jupyter*.expected.json"))])
def test_capture_requests_pair_with_replies_within_the_clients_timings(name: str) -> None:
    exp = expected(name)
    for port, msgs in ws_messages(name).items():
        closed, unanswered = pair(decode(JupyterDecoder, msgs))
        logged = [r for r in exp["requests"] if r["client_port"] == port]
        assert sum(len(v) for v in closed.values()) == len(logged)
        assert unanswered == []
        for r in logged:
            t_req, t_resp, req, resp = closed[r["correlation_id"]].pop(0)
            assert (req.type, resp.type, resp.channel, resp.status) == (
                r["request_type"], r["response_type"], r["channel"], r["status"])
            assert r["t_send"] - TOL <= t_req and t_resp <= r["t_recv"] + TOL
            assert abs((t_resp - t_req) * 1e3 - r["latency_capture_ms"]) <= 2 * TOL * 1e3
            if r["sleep_s"]:
                assert t_resp - t_req >= r["sleep_s"]


@pytest.mark.parametrize("name", [c.name.removesuffix(".expected.json") for c in sorted(
    CAPTURES.glob("jupyter*.expected.json"))])
def test_capture_through_analyze_gives_the_same_rows(name: str) -> None:
    assert_tables_agree(name, JupyterDecoder)
