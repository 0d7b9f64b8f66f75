"""Application protocols inside WebSocket, part 1 (issue 19): Socket.IO, JSON-RPC 2.0 and GraphQL
over WebSocket, real libraries talking on loopback, recorded with tcpdump.

    python3 captures/make_app.py [NAME...]        (all scenarios without a NAME; --list)

Writes captures/app/NAME.pcap and captures/app/NAME.expected.json. Each scenario runs a server and a
client as subprocesses of this file (`make_app.py peer NAME server|client PORT`); both print JSON lines
of what they did, with time.time():

- "wire": every WebSocket data message the side sent, as the library logged it (python-engineio's and
  gql's own loggers; the JSON-RPC peers send their strings themselves): type, size, sha256, and the
  text itself (texts here are short);
- "log": the application's view: an event emitted, a request sent or answered, a reply received;
- "request": one request the side made and the answer it got, with time.time() just before the send
  and just after the answer arrived (latency_ms), and the delay the answering side was asked to add.

The expected file holds the subprotocol, the sides' "wire" lists merged in time order, the "log"
list, the "requests" and counts per type. The generator checks the wire lists against tshark's
WebSocket frames (per side: order, opcode and payload length) and writes nothing when they disagree.
Needs root (tcpdump), tshark, and pip install python-socketio aiohttp jsonrpcserver jsonrpcclient
websockets strawberry-graphql uvicorn "gql[websockets]". Ports 9301-9349.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

OUT = HERE / "app"
HOST = "127.0.0.1"

# --------------------------------------------------------------------------------------------
# what a peer prints


def emit(event: str, **rec: Any) -> None:
    print(json.dumps({"event": event, **rec}), flush=True)


def wire(sender: str, data: str | bytes, t: float | None = None) -> None:
    """A WebSocket data message `sender` sent (the text in full: the messages here are short)."""
    raw = data.encode() if isinstance(data, str) else data
    emit(
        "wire",
        sender=sender,
        t=time.time() if t is None else t,
        type="text" if isinstance(data, str) else "binary",
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        text=data if isinstance(data, str) else None,
    )


def log(sender: str, kind: str, **rec: Any) -> None:
    emit("log", sender=sender, kind=kind, t=time.time(), **rec)


def request_done(sender: str, kind: str, name: str, t_send: float, t_recv: float, **rec: Any) -> None:
    emit(
        "request",
        sender=sender,
        kind=kind,
        name=name,
        t_send=t_send,
        t_recv=t_recv,
        latency_ms=round((t_recv - t_send) * 1000, 3),
        **rec,
    )


def versions(*dists: str) -> dict[str, str]:
    return {d: metadata.version(d) for d in dists}


# --------------------------------------------------------------------------------------------
# Socket.IO: python-socketio AsyncServer on aiohttp, python-socketio AsyncClient (websocket only)

SIO_DELAYS_MS = (10, 50, 120)
SIO_CHAT_DELAY_MS = 30
SIO_CONFIRM_DELAY_MS = 20
SIO_BLOB = bytes(range(256)) * 4 + b"socket.io binary attachment"
SIO_BLOB_REPLY = b"\x00\xffreply" * 16


class EngineIOWire(logging.Handler):
    """python-engineio logs every packet it sends ("Sending packet MESSAGE data 2[...]"); this
    handler turns those records into "wire" lines: the Engine.IO encoding of the packet, which over
    the websocket transport is the whole WebSocket message. Binary data is logged as '<binary>',
    so the sender names its attachments beforehand (`binaries`, in sending order)."""

    TYPES = ("OPEN", "CLOSE", "PING", "PONG", "MESSAGE", "UPGRADE", "NOOP")

    def __init__(self, sender: str) -> None:
        super().__init__(logging.INFO)
        self.sender = sender
        self.binaries: list[bytes] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Sending packet" not in str(record.msg):
            return
        args = record.args if isinstance(record.args, tuple) else ()
        name, data = args[-2], args[-1]
        if data == "<binary>" and name == "MESSAGE":
            wire(self.sender, self.binaries.pop(0), record.created)
            return
        if data is None:
            body = ""
        elif isinstance(data, (dict, list)):
            body = json.dumps(data, separators=(",", ":"))
        else:
            body = str(data)
        wire(self.sender, str(self.TYPES.index(name)) + body, record.created)


def _eio_logger(sender: str) -> tuple[logging.Logger, EngineIOWire]:
    logger = logging.getLogger(f"eio.{sender}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = EngineIOWire(sender)
    logger.addHandler(handler)
    return logger, handler


async def _socketio_server(port: int) -> None:
    import socketio
    from aiohttp import web

    logger, eio_wire = _eio_logger("server")
    sio = socketio.AsyncServer(
        async_mode="aiohttp", engineio_logger=logger, ping_interval=1, ping_timeout=5
    )
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict, auth: Any = None) -> None:
        log("server", "connect", namespace="/", sid=sid)
        emit("conn", client_port=int(environ["aiohttp.request"].transport.get_extra_info("peername")[1]))

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        log("server", "disconnect", namespace="/", reason=str(reason))

    @sio.event
    async def chat(sid: str, data: Any) -> None:
        log("server", "event_received", namespace="/", name="chat", args=[data])

    async def work_on(namespace: str, data: dict) -> dict:
        """'work' (on / and /chat): acked after data["delay_ms"]."""
        log("server", "event_received", namespace=namespace, name="work", args=[data], ack=True)
        await asyncio.sleep(data["delay_ms"] / 1000)
        out = {"done": data["job"], "slept_ms": data["delay_ms"]}
        log("server", "ack_sent", namespace=namespace, name="work", args=[out])
        return out

    @sio.event
    async def work(sid: str, data: dict) -> dict:
        return await work_on("/", data)

    @sio.event
    async def upload(sid: str, name: str, blob: bytes) -> bytes:
        log("server", "event_received", namespace="/", name="upload", args=[name, {"bytes": len(blob)}],
            ack=True, binary=True)
        eio_wire.binaries.append(SIO_BLOB_REPLY)
        log("server", "ack_sent", namespace="/", name="upload", args=[{"bytes": len(SIO_BLOB_REPLY)}],
            binary=True)
        return SIO_BLOB_REPLY

    @sio.event
    async def ask_server(sid: str, data: Any) -> None:
        log("server", "event_received", namespace="/", name="ask_server", args=[data])
        news = {"headline": "server says hi", "n": 1}
        log("server", "event_sent", namespace="/", name="news", args=[news], ack=False)
        await sio.emit("news", news, to=sid)
        q = {"question": "confirm?", "delay_ms": SIO_CONFIRM_DELAY_MS}
        log("server", "event_sent", namespace="/", name="confirm", args=[q], ack=True)
        t0 = time.time()
        answer = await sio.call("confirm", q, to=sid)
        t1 = time.time()
        log("server", "ack_received", namespace="/", name="confirm", args=[answer])
        request_done("server", "event", "confirm", t0, t1, namespace="/", delay_ms=SIO_CONFIRM_DELAY_MS,
                     answer=answer)

    @sio.on("connect", namespace="/chat")
    async def chat_connect(sid: str, environ: dict, auth: Any = None) -> None:
        log("server", "connect", namespace="/chat", sid=sid)

    @sio.on("disconnect", namespace="/chat")
    async def chat_disconnect(sid: str, reason: Any = None) -> None:
        log("server", "disconnect", namespace="/chat", reason=str(reason))

    @sio.on("msg", namespace="/chat")
    async def chat_msg(sid: str, data: Any) -> None:
        log("server", "event_received", namespace="/chat", name="msg", args=[data])

    @sio.on("leave", namespace="/chat")
    async def chat_leave(sid: str, data: Any) -> None:
        log("server", "event_received", namespace="/chat", name="leave", args=[data])
        log("server", "disconnect_sent", namespace="/chat")
        await sio.disconnect(sid, namespace="/chat")

    @sio.on("work", namespace="/chat")
    async def chat_work(sid: str, data: dict) -> dict:
        return await work_on("/chat", data)

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


async def _socketio_client(port: int) -> None:
    import socketio

    logger, eio_wire = _eio_logger("client")
    sio = socketio.AsyncClient(engineio_logger=logger, reconnection=False)
    got_news = asyncio.Event()
    left_chat = asyncio.Event()

    @sio.on("disconnect", namespace="/chat")
    async def chat_disconnect(reason: Any = None) -> None:
        log("client", "disconnect_received", namespace="/chat", reason=str(reason))
        left_chat.set()

    @sio.event
    async def news(data: Any) -> None:
        log("client", "event_received", namespace="/", name="news", args=[data])
        got_news.set()

    @sio.event
    async def confirm(data: dict) -> str:
        log("client", "event_received", namespace="/", name="confirm", args=[data], ack=True)
        await asyncio.sleep(data["delay_ms"] / 1000)
        log("client", "ack_sent", namespace="/", name="confirm", args=["confirmed"])
        return "confirmed"

    async def call(name: str, args: Any, namespace: str, delay_ms: int, binary: bool = False) -> None:
        """An event with an ack, timed by the client (args: one value, or a tuple of several)."""
        shown = [{"bytes": len(a)} if isinstance(a, bytes) else a
                 for a in (args if isinstance(args, tuple) else (args,))]
        log("client", "event_sent", namespace=namespace, name=name, args=shown, ack=True, binary=binary)
        t0 = time.time()
        answer = await sio.call(name, args, namespace=namespace, timeout=10)
        t1 = time.time()
        shown_answer = {"bytes": len(answer)} if isinstance(answer, bytes) else answer
        log("client", "ack_received", namespace=namespace, name=name, args=[shown_answer],
            binary=isinstance(answer, bytes))
        request_done("client", "event", name, t0, t1, namespace=namespace, delay_ms=delay_ms,
                     answer=shown_answer)

    url = f"http://{HOST}:{port}"
    log("client", "connect", namespaces=["/", "/chat"])
    await sio.connect(url, namespaces=["/", "/chat"], transports=["websocket"], wait_timeout=10)
    emit("conn", subprotocol=sio.eio.ws.protocol)  # the aiohttp WebSocket under Engine.IO
    await asyncio.sleep(0.2)
    hello = {"text": "hello from the client", "lang": "en"}
    log("client", "event_sent", namespace="/", name="chat", args=[hello], ack=False)
    await sio.emit("chat", hello)
    for n, delay in enumerate(SIO_DELAYS_MS, 1):
        await call("work", {"job": n, "delay_ms": delay}, "/", delay)
    msg = {"room": "lobby", "text": "hi /chat"}
    log("client", "event_sent", namespace="/chat", name="msg", args=[msg], ack=False)
    await sio.emit("msg", msg, namespace="/chat")
    await call("work", {"job": 10, "delay_ms": SIO_CHAT_DELAY_MS}, "/chat", SIO_CHAT_DELAY_MS)
    eio_wire.binaries.append(SIO_BLOB)
    await call("upload", ("blob.bin", SIO_BLOB), "/", 0, binary=True)
    log("client", "event_sent", namespace="/", name="ask_server", args=[{"please": "news"}], ack=False)
    await sio.emit("ask_server", {"please": "news"})
    await asyncio.wait_for(got_news.wait(), 10)
    await asyncio.sleep(2.6)  # Engine.IO pings every second (the server's ping_interval=1)
    log("client", "event_sent", namespace="/chat", name="leave", args=[{"why": "done"}], ack=False)
    await sio.emit("leave", {"why": "done"}, namespace="/chat")
    await asyncio.wait_for(left_chat.wait(), 10)
    await asyncio.sleep(0.1)
    # AsyncClient.disconnect() queues DISCONNECT and Engine.IO CLOSE, then closes the WebSocket
    # before its write loop runs: those packets are logged but never sent (see run_scenario)
    log("client", "disconnect")
    await sio.disconnect()
    await asyncio.sleep(0.3)


# --------------------------------------------------------------------------------------------
# JSON-RPC 2.0: jsonrpcserver (dispatch) behind a `websockets` server, jsonrpcclient (requests,
# parsing) over a `websockets` client; the client also answers one request from the server with
# jsonrpcserver. No compression, so the logged sizes are the frames' sizes.

RPC_DELAYS_MS = (10, 50, 120)
RPC_CONCURRENT_MS = (80, 10)  # sent together: the answers come back in the other order


def _rpc_items(text: str) -> list[dict]:
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def _rpc_answer(parsed: Any) -> dict:
    """jsonrpcclient's parsed answer (an Ok or Error named tuple) as JSON: {"ok": ..., fields}."""
    return {"ok": type(parsed).__name__ == "Ok", **parsed._asdict()}


def _rpc_log(side: str, direction: str, text: str) -> None:
    """One log record per JSON-RPC object `side` sent or received ("sent"/"received")."""
    batch = text.lstrip().startswith("[")
    for item in _rpc_items(text):
        if "method" in item:
            kind = "request" if "id" in item else "notification"
            log(side, f"{kind}_{direction}", id=item.get("id"), method=item["method"],
                params=item.get("params"), batch=batch)
        elif "error" in item:
            err = item["error"]
            log(side, f"error_{direction}", id=item.get("id"), code=err["code"], message=err["message"],
                batch=batch)
        else:
            log(side, f"response_{direction}", id=item.get("id"), result=item.get("result"), batch=batch)


async def _jsonrpc_server(port: int) -> None:
    import websockets
    from jsonrpcclient import notification_json, parse_json, request_json
    from jsonrpcserver import Error, Result, Success, async_dispatch

    async def sleep_add(a: int, b: int, delay_ms: int) -> Result:
        await asyncio.sleep(delay_ms / 1000)
        return Success(a + b)

    async def echo(text: str) -> Result:
        return Success(text)

    async def divide(a: float, b: float) -> Result:
        if b == 0:
            return Error(1001, "division by zero", {"a": a})
        return Success(a / b)

    async def log_event(level: str, text: str) -> Result:
        return Success(None)

    async def handler(ws: Any) -> None:
        emit("conn", client_port=ws.remote_address[1])
        pending: dict[Any, asyncio.Future] = {}
        tasks: set[asyncio.Task] = set()  # kept until done (the loop holds only weak references)

        def spawn(coro: Any) -> None:
            task = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def send(text: str) -> None:
            wire("server", text)
            _rpc_log("server", "sent", text)
            await ws.send(text)

        async def subscribe_ticks(count: int) -> Result:
            async def push() -> None:
                await asyncio.sleep(0.05)
                for n in range(1, count + 1):
                    await send(notification_json("tick", params={"n": n}))
                    await asyncio.sleep(0.03)
                text = request_json("client_time", params={"delay_ms": 15}, id="srv-1")
                fut = pending["srv-1"] = asyncio.get_running_loop().create_future()
                t0 = time.time()
                await send(text)
                answer = await fut
                request_done("server", "request", "client_time", t0, time.time(), id="srv-1", delay_ms=15,
                             answer=answer)

            spawn(push())
            return Success("subscribed")

        methods = {"sleep_add": sleep_add, "echo": echo, "divide": divide, "log_event": log_event,
                   "subscribe_ticks": subscribe_ticks}

        async def answer(text: str) -> None:
            out = await async_dispatch(text, methods=methods)
            if out:  # "" after notifications only
                await send(out)

        async for text in ws:
            _rpc_log("server", "received", text)
            items = _rpc_items(text)
            if "method" not in items[0]:  # the client's answer to srv-1
                pending.pop(items[0]["id"]).set_result(_rpc_answer(parse_json(text)))
                continue
            spawn(answer(text))

    async with websockets.serve(handler, HOST, port, compression=None):
        print("READY", flush=True)
        await asyncio.Event().wait()


async def _jsonrpc_client(port: int) -> None:
    import websockets
    from jsonrpcclient import notification, notification_json, parse_json, request, request_json
    from jsonrpcserver import Result, Success, async_dispatch

    async def client_time(delay_ms: int) -> Result:
        await asyncio.sleep(delay_ms / 1000)
        return Success({"client": "ok"})

    ws = await websockets.connect(f"ws://{HOST}:{port}/rpc", compression=None)
    emit("conn", subprotocol=ws.subprotocol, client_port=ws.local_address[1])
    pending: dict[Any, asyncio.Future] = {}

    async def send(text: str) -> None:
        wire("client", text)
        _rpc_log("client", "sent", text)
        await ws.send(text)

    async def reader() -> None:
        async for text in ws:
            _rpc_log("client", "received", text)
            data = json.loads(text)
            if isinstance(data, dict) and "method" in data:
                if "id" in data:  # the server's request: answered by jsonrpcserver
                    await send(await async_dispatch(text, methods={"client_time": client_time}))
                continue
            key = tuple(sorted(str(i.get("id")) for i in data)) if isinstance(data, list) else data.get("id")
            pending.pop(key).set_result(text)

    read_task = asyncio.create_task(reader())

    async def call(text: str, name: str, delay_ms: int | None, **rec: Any) -> None:
        """Send a request (or a batch), wait for its answer, log the client-measured latency."""
        data = json.loads(text)
        key = (tuple(sorted(str(i["id"]) for i in data if "id" in i)) if isinstance(data, list)
               else data["id"])
        fut = pending[key] = asyncio.get_running_loop().create_future()
        t0 = time.time()
        await send(text)
        answer = await asyncio.wait_for(fut, 10)
        t1 = time.time()
        parsed = parse_json(answer)
        shown = [_rpc_answer(p) for p in parsed] if isinstance(data, list) else _rpc_answer(parsed)
        ids = [i["id"] for i in data if "id" in i] if isinstance(data, list) else key
        request_done("client", "batch" if isinstance(data, list) else "request", name, t0, t1,
                     id=ids, delay_ms=delay_ms, answer=shown, **rec)

    for delay in RPC_DELAYS_MS:
        await call(request_json("sleep_add", params={"a": delay, "b": 1, "delay_ms": delay}),
                   "sleep_add", delay)
    await send(notification_json("log_event", params={"level": "info", "text": "client started"}))
    await asyncio.gather(*(
        call(request_json("sleep_add", params={"a": d, "b": 2, "delay_ms": d}), "sleep_add", d,
             concurrent=True)
        for d in RPC_CONCURRENT_MS
    ))
    await call(request_json("no_such_method", params=[1, 2]), "no_such_method", None)
    await call(request_json("sleep_add", params={"a": 1}), "sleep_add", None)  # invalid params
    await call(request_json("divide", params={"a": 1, "b": 0}), "divide", None)  # application error
    await call(request_json("echo", params=["héllo wörld"]), "echo", None)
    batch = [
        request("sleep_add", params={"a": 20, "b": 3, "delay_ms": 20}),
        notification("log_event", params={"level": "debug", "text": "inside a batch"}),
        request("echo", params={"text": "batched"}),
        request("no_such_method"),
    ]
    await call(json.dumps(batch), "batch", 20)
    await call(request_json("subscribe_ticks", params={"count": 2}), "subscribe_ticks", None)
    await asyncio.sleep(0.5)  # two "tick" notifications and the server's request srv-1
    await ws.close(1000, "rpc bye")
    log("client", "closed", code=1000, reason="rpc bye")
    read_task.cancel()


# --------------------------------------------------------------------------------------------
# peers and scenarios

PEERS: dict[tuple[str, str], Callable[[int], Any]] = {
    ("socketio", "server"): _socketio_server,
    ("socketio", "client"): _socketio_client,
    ("jsonrpc", "server"): _jsonrpc_server,
    ("jsonrpc", "client"): _jsonrpc_client,
}


def run_peer(name: str, role: str, port: int) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(PEERS[(name, role)](port))


class Lines:
    """The JSON lines of the peers (make_captures.Peer feeds a Log-like object's record())."""

    def __init__(self) -> None:
        self.recs: list[dict] = []

    def record(self, rec: dict) -> None:
        self.recs.append(rec)


def _peer(lines: Lines, name: str, role: str, port: int) -> Any:
    from make_captures import Peer

    return Peer(lines, [sys.executable, str(Path(__file__).resolve()), "peer", name, role, str(port)])  # type: ignore[arg-type]


def ws_sequence(frames: list[dict], sender: str) -> list[tuple[str, int]]:
    """tshark's data messages of one side: (type, payload length), continuation frames summed."""
    seen: list[tuple[str, int]] = []
    cur: list = []
    for f in frames:
        if f["sender"] != sender or f["opcode"] not in (0, 1, 2):
            continue
        if f["opcode"] in (1, 2):
            cur = ["text" if f["opcode"] == 1 else "binary", 0]
        cur[1] += f["payload_len"]
        if f["fin"]:
            seen.append((cur[0], cur[1]))
    return seen


def check_with_tshark(
    path: Path, port: int, wires: list[dict], logs: list[dict]
) -> tuple[list[dict], list[str]]:
    """Disagreements between the sides' wire logs and tshark's WebSocket frames, and the wire records
    logged but never sent: python-socketio's AsyncClient.disconnect() queues DISCONNECT and CLOSE
    packets (the logger says "Sending packet") and closes the WebSocket before its write loop runs.
    Such a tail is accepted only when it was logged after that side's "disconnect" log record."""
    from tshark_frames import tshark_frames

    frames = tshark_frames(path, {port})
    errors = []
    unsent: list[dict] = []
    ports = {f["client_port"] for f in frames}
    if len(ports) != 1:
        errors.append(f"tshark sees {len(ports)} WebSocket connections, wanted 1")
    for side in ("client", "server"):
        mine = [w for w in wires if w["sender"] == side]
        logged = [(w["type"], w["size"]) for w in mine]
        seen = ws_sequence(frames, side)
        bye = [r["t"] for r in logs if r["sender"] == side and r["kind"] == "disconnect"]
        tail = mine[len(seen):]
        if logged[: len(seen)] == seen and tail and bye and all(w["t"] >= bye[0] for w in tail):
            unsent += tail
        elif logged != seen:
            errors.append(f"{side}: logged {logged}, tshark {seen}")
    if any(f["rsv1"] for f in frames):
        errors.append("compressed frames: the logged sizes would not be the frame sizes")
    return unsent, errors


def _by_time(recs: list[dict], key: str = "t") -> list[dict]:
    return sorted(recs, key=lambda r: r[key])  # stable: a side's own order is kept on ties


SIO_PACKETS = ("CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK")


def _socketio_counts(wires: list[dict], logs: list[dict]) -> dict:
    """Engine.IO packet types per side (the first character of a text message; a binary message is
    an attachment), and Socket.IO packet types (the character after Engine.IO's MESSAGE '4')."""
    eio: dict[str, dict[str, int]] = {"client": {}, "server": {}}
    sio: dict[str, dict[str, int]] = {"client": {}, "server": {}}
    for w in wires:
        if w["type"] == "binary":
            kind = "binary attachment"
        else:
            kind = EngineIOWire.TYPES[int(w["text"][0])]
            if kind == "MESSAGE":
                p = SIO_PACKETS[int(w["text"][1])]
                sio[w["sender"]][p] = sio[w["sender"]].get(p, 0) + 1
        eio[w["sender"]][kind] = eio[w["sender"]].get(kind, 0) + 1
    return {"engineio": eio, "socketio": sio}


def _jsonrpc_counts(wires: list[dict], logs: list[dict]) -> dict:
    """Per side: WebSocket messages, batches, and JSON-RPC objects sent by kind (request,
    notification, response, error), from the senders' logs."""
    out: dict[str, dict[str, int]] = {}
    for side in ("client", "server"):
        mine = [w for w in wires if w["sender"] == side]
        c = {"messages": len(mine), "batches": sum(w["text"].startswith("[") for w in mine)}
        for r in logs:
            if r["sender"] == side and r["kind"].endswith("_sent"):
                k = r["kind"].removesuffix("_sent")
                c[k] = c.get(k, 0) + 1
        out[side] = c
    return out


SCENARIO_INFO: dict[str, dict] = {
    "socketio": {
        "port": 9301,
        "protocol": "socketio",
        "libraries": ("python-socketio", "python-engineio", "aiohttp"),
        "counts": _socketio_counts,
        "description": (
            "python-socketio AsyncServer on aiohttp (ping_interval 1 s) and python-socketio AsyncClient "
            "with transports=['websocket']: connects to / and /chat; a 'chat' event without ack; 'work' "
            f"events with acks on / (server sleeps {', '.join(map(str, SIO_DELAYS_MS))} ms before acking) "
            f"and on /chat ({SIO_CHAT_DELAY_MS} ms); 'msg' on /chat; 'upload' with a {len(SIO_BLOB)}-byte "
            f"attachment acked with {len(SIO_BLOB_REPLY)} bytes (BINARY_EVENT, BINARY_ACK); 'ask_server' "
            "makes the server emit 'news' (no ack) and 'confirm' with an ack that the client sends after "
            f"{SIO_CONFIRM_DELAY_MS} ms (a server-side request); Engine.IO pings during a 2.6 s pause; "
            "'leave' on /chat makes the server disconnect that namespace (41/chat,); the client "
            "disconnects (its DISCONNECT and CLOSE packets are logged but never sent: logged_not_sent) "
            "and the WebSocket closes 1000"
        ),
    },
    "jsonrpc": {
        "port": 9302,
        "protocol": "jsonrpc",
        "libraries": ("jsonrpcserver", "jsonrpcclient", "websockets"),
        "counts": _jsonrpc_counts,
        "description": (
            "JSON-RPC 2.0 over WebSocket: jsonrpcserver 5 dispatching behind a python websockets server, "
            "jsonrpcclient 4 building the requests and parsing the answers over a websockets client "
            "(no compression, path /rpc, no subprotocol). sleep_add requests answered after "
            f"{', '.join(map(str, RPC_DELAYS_MS))} ms; a notification; two requests sent together "
            f"({' and '.join(map(str, RPC_CONCURRENT_MS))} ms: answered in the other order); errors: "
            "-32601 Method not found, -32602 Invalid params, an application error 1001; a non-ASCII "
            "echo; a batch of 3 requests and a notification (answered by one array of 3, one of "
            "them -32601); subscribe_ticks, after which the server sends two 'tick' notifications and "
            "a request of its own (id 'srv-1', answered by the client's jsonrpcserver after 15 ms); "
            "the client closes 1000 'rpc bye'"
        ),
    },
}


def run_scenario(name: str) -> dict:
    from make_captures import tcpdump

    info = SCENARIO_INFO[name]
    port = info["port"]
    path = OUT / f"{name}.pcap"
    lines = Lines()
    with tcpdump(path, f"tcp port {port}"):
        server = _peer(lines, name, "server", port)
        try:
            server.wait_ready()
            client = _peer(lines, name, "client", port)
            client.wait(120)
            time.sleep(0.5)
        finally:
            server.stop()
    recs = lines.recs
    wires = _by_time([r for r in recs if r["event"] == "wire"])
    logs = _by_time([r for r in recs if r["event"] == "log"])
    requests = _by_time([r for r in recs if r["event"] == "request"], "t_send")
    conn: dict = {}
    for r in recs:
        if r["event"] == "conn":
            conn.update({k: v for k, v in r.items() if k != "event"})
    for r in (*wires, *logs, *requests):
        r.pop("event")
    unsent, errors = check_with_tshark(path, port, wires, logs)
    wires = [w for w in wires if not any(w is u for u in unsent)]
    if errors:
        raise RuntimeError(f"{name}: the programs' logs and tshark disagree:\n  " + "\n  ".join(errors))
    expected = {
        "capture": path.name,
        "generator": f"make_app.py {name}",
        "description": info["description"],
        "protocol": info["protocol"],
        "subprotocol": conn.get("subprotocol"),
        "server_port": port,
        "client_port": conn.get("client_port"),
        "libraries": versions(*info["libraries"]),
        "times": (
            "t, t_send, t_recv: time.time() in the program that logged the record (seconds since the "
            "epoch, same clock for both sides); wire t: when the library logged the send (queued "
            "or written), so wire lists of the two sides interleave only roughly"
        ),
        "wire": wires,
        "logged_not_sent": unsent,
        "log": logs,
        "requests": requests,
        "counts": info["counts"](wires, logs),
        "tshark_check": (
            "per side, the wire list's (type, size) sequence equals tshark's WebSocket data messages"
        ),
    }
    out = OUT / f"{name}.expected.json"
    out.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    return expected


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["peer"]:
        run_peer(argv[1], argv[2], int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="scenarios (default: all)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIO_INFO))
        return 0
    if os.geteuid() != 0:
        print("make_app.py needs root (tcpdump on the loopback interface)", file=sys.stderr)
        return 2
    names = args.names or list(SCENARIO_INFO)
    unknown = [n for n in names if n not in SCENARIO_INFO]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        t0 = time.time()
        try:
            exp = run_scenario(name)
        except Exception as e:  # report and go on with the others
            failed.append(name)
            print(f"FAILED {name}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        print(f"{name}: {len(exp['wire'])} messages, {len(exp['requests'])} timed requests "
              f"({time.time() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
