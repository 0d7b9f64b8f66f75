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
import functools
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable
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
        self.texts: list[str] = []

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
        self.texts.append(str(self.TYPES.index(name)) + body)
        wire(self.sender, self.texts[-1], record.created)

    def ack_id(self, namespace: str, event: str) -> int | None:
        """The ack id python-socketio gave the last EVENT/BINARY_EVENT named `event` it sent on
        `namespace`: 4 2|5 [<attachments>-] [<namespace>,] <ack id> ["event", ...]."""
        nsp = "" if namespace == "/" else namespace + ","
        for text in reversed(self.texts):
            m = re.match(r'4[25](?:\d+-)?' + re.escape(nsp) + r'(\d+)\["' + re.escape(event) + '"', text)
            if m:
                return int(m.group(1))
        return None


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
        request_done("server", "event", "confirm", t0, t1, namespace="/",
                     id=eio_wire.ack_id("/", "confirm"), delay_ms=SIO_CONFIRM_DELAY_MS, answer=answer)

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
        request_done("client", "event", name, t0, t1, namespace=namespace,
                     id=eio_wire.ack_id(namespace, name), delay_ms=delay_ms, answer=shown_answer)

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
# GraphQL over WebSocket on uvicorn: strawberry-graphql's ASGI app for graphql-transport-ws, ariadne's
# for the old graphql-ws (see _ariadne_app), and the gql client's WebsocketsTransport. The server's
# wire lines come from an ASGI wrapper that logs each websocket.send the app makes; the client's from
# gql's own ">>> message" log.
# permessage-deflate is off on the server (uvicorn ws_per_message_deflate=False).

GQL_DELAYS_MS = (10, 50, 120)
GQL_CONCURRENT_MS = (80, 10)
GQL_COUNT = 5
GQL_INTERVAL_MS = 40
GQL_SLOW = "query Slow($d: Int!) { slow(delayMs: $d) }"


def _graphql_schema() -> Any:
    """The schema. strawberry resolves string annotations (this module has `from __future__ import
    annotations`) in the module's globals: hence AsyncGenerator imported at the top and the local
    Message type given as graphql_type."""
    import strawberry

    @strawberry.type
    class Message:
        id: int
        text: str

    @strawberry.type
    class Query:
        @strawberry.field
        def hello(self, name: str) -> str:
            log("server", "resolver", field="hello", args={"name": name})
            return f"hello {name}"

        @strawberry.field
        async def slow(self, delay_ms: int) -> int:
            log("server", "resolver", field="slow", args={"delayMs": delay_ms})
            await asyncio.sleep(delay_ms / 1000)
            return delay_ms

        @strawberry.field
        def boom(self) -> str:
            log("server", "resolver", field="boom", args={}, raises="boom: the resolver failed")
            raise ValueError("boom: the resolver failed")

    @strawberry.type
    class Mutation:
        @strawberry.mutation(graphql_type=Message)
        def add_message(self, text: str) -> Message:
            log("server", "resolver", field="addMessage", args={"text": text})
            return Message(id=1, text=text)

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def count(self, to: int, interval_ms: int) -> AsyncGenerator[int, None]:
            log("server", "resolver", field="count", args={"to": to, "intervalMs": interval_ms})
            for n in range(1, to + 1):
                log("server", "item_yielded", field="count", item=n)
                yield n
                await asyncio.sleep(interval_ms / 1000)

    return strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def _ariadne_app() -> Any:
    """ariadne's ASGI app with its graphql-ws handler (keep-alive "ka" every second): the same
    schema and resolver logs as _graphql_schema. strawberry's own graphql-ws handler runs only
    subscriptions (it answers queries and mutations with "queries are not allowed"), ariadne's runs
    queries and mutations too."""
    from ariadne import MutationType, QueryType, SubscriptionType, make_executable_schema
    from ariadne.asgi import GraphQL
    from ariadne.asgi.handlers import GraphQLWSHandler

    type_defs = """
        type Query { hello(name: String!): String!  slow(delayMs: Int!): Int!  boom: String }
        type Message { id: Int!  text: String! }
        type Mutation { addMessage(text: String!): Message! }
        type Subscription { count(to: Int!, intervalMs: Int!): Int! }
    """
    query, mutation, subscription = QueryType(), MutationType(), SubscriptionType()

    @query.field("hello")
    def hello(_: Any, info: Any, name: str) -> str:
        log("server", "resolver", field="hello", args={"name": name})
        return f"hello {name}"

    @query.field("slow")
    async def slow(_: Any, info: Any, delayMs: int) -> int:
        log("server", "resolver", field="slow", args={"delayMs": delayMs})
        await asyncio.sleep(delayMs / 1000)
        return delayMs

    @query.field("boom")
    def boom(_: Any, info: Any) -> str:
        log("server", "resolver", field="boom", args={}, raises="boom: the resolver failed")
        raise ValueError("boom: the resolver failed")

    @mutation.field("addMessage")
    def add_message(_: Any, info: Any, text: str) -> dict:
        log("server", "resolver", field="addMessage", args={"text": text})
        return {"id": 1, "text": text}

    @subscription.source("count")
    async def count_source(_: Any, info: Any, to: int, intervalMs: int) -> AsyncGenerator[int, None]:
        log("server", "resolver", field="count", args={"to": to, "intervalMs": intervalMs})
        for n in range(1, to + 1):
            log("server", "item_yielded", field="count", item=n)
            yield n
            await asyncio.sleep(intervalMs / 1000)

    @subscription.field("count")
    def count(n: int, info: Any, **_: Any) -> int:
        return n

    schema = make_executable_schema(type_defs, query, mutation, subscription)
    return GraphQL(schema, websocket_handler=GraphQLWSHandler(keepalive=1))


async def _graphql_server(port: int, protocol: str) -> None:
    import uvicorn

    if protocol == "graphql-transport-ws":
        from strawberry.asgi import GraphQL

        app = GraphQL(_graphql_schema(), subscription_protocols=(protocol,))
    else:
        app = _ariadne_app()

    async def logged(scope: dict, receive: Any, send: Any) -> None:
        """The app, with each WebSocket message it sends logged (and the subprotocol it accepted)."""
        if scope["type"] != "websocket":
            return await app(scope, receive, send)

        async def send_logged(msg: dict) -> None:
            if msg["type"] == "websocket.accept":
                emit("conn", client_port=scope["client"][1], subprotocol=msg.get("subprotocol"))
            elif msg["type"] == "websocket.send":
                wire("server", msg["text"] if msg.get("text") is not None else msg["bytes"])
            await send(msg)

        return await app(scope, receive, send_logged)

    config = uvicorn.Config(logged, host=HOST, port=port, ws="websockets", ws_per_message_deflate=False,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    print("READY", flush=True)
    await task


class GqlWire(logging.Handler):
    """gql logs each message it sent (">>> %s", after the send) and received ("<<< %s")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == ">>> %s" and isinstance(record.args, tuple):
            text = str(record.args[0])
            wire("client", text, record.created)
            self.sent.append(json.loads(text))


async def _graphql_client(port: int, protocol: str) -> None:
    from gql import Client, GraphQLRequest
    from gql.transport.exceptions import TransportQueryError
    from gql.transport.websockets import WebsocketsTransport

    logger = logging.getLogger("gql.transport.common.base")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    gql_wire = GqlWire()
    logger.addHandler(gql_wire)
    start = "subscribe" if protocol == "graphql-transport-ws" else "start"

    def op_id(request: GraphQLRequest) -> str | None:
        """The id gql gave the operation: that of the last start/subscribe message it sent with
        the same operation name and variables."""
        for m in reversed(gql_wire.sent):
            p = m.get("payload") or {}
            if (m.get("type") == start and p.get("operationName") == request.operation_name
                    and (p.get("variables") or None) == (request.variable_values or None)):
                return str(m["id"])
        return None

    transport = WebsocketsTransport(
        url=f"ws://{HOST}:{port}/graphql",
        subprotocols=[protocol],
        ping_interval=1 if protocol == "graphql-transport-ws" else None,
    )
    client = Client(transport=transport, fetch_schema_from_transport=False)

    async def run(op_type: str, text: str, name: str, variables: dict | None = None,
                  delay_ms: int | None = None, **rec: Any) -> None:
        request = GraphQLRequest(text, variable_values=variables, operation_name=name)
        log("client", "operation_sent", operation_type=op_type, operation_name=name, variables=variables)
        t0 = time.time()
        try:
            answer: Any = {"data": await session.execute(request)}
        except TransportQueryError as e:
            answer = {"errors": e.errors, "data": e.data}
        t1 = time.time()
        oid = op_id(request)
        log("client", "error_received" if "errors" in answer else "result_received", id=oid,
            operation_name=name, **answer)
        request_done("client", op_type, name, t0, t1, id=oid, delay_ms=delay_ms, answer=answer, **rec)

    async def stop_after_three() -> None:
        """A subscription the client stops after 3 items: gql sends "complete". Not with graphql-ws:
        ariadne 1.1.1 answers "stop" of a running subscription with aclose() on its generator while
        it runs (RuntimeError) and drops the connection."""
        ticker = GraphQLRequest(
            "subscription Ticker { count(to: 50, intervalMs: 30) }", operation_name="Ticker"
        )
        log("client", "operation_sent", operation_type="subscription", operation_name="Ticker",
            variables=None)
        t0 = time.time()
        items = []
        gen = session.subscribe(ticker)
        async for item in gen:
            items.append(time.time())
            log("client", "item_received", id=op_id(ticker), operation_name="Ticker", data=item)
            if len(items) == 3:
                break
        log("client", "stop_sent", id=op_id(ticker), operation_name="Ticker")
        await gen.aclose()  # gql sends complete
        request_done("client", "subscription", "Ticker", t0, items[0], id=op_id(ticker), delay_ms=None,
                     items=len(items), t_items=items, stopped_by_client=True)
        await asyncio.sleep(0.1)

    async with client as session:
        emit("conn", subprotocol=transport.adapter.websocket.subprotocol,
             client_port=transport.adapter.websocket.local_address[1])
        await run("query", 'query Hello { hello(name: "gql") }', "Hello")
        for d in GQL_DELAYS_MS:
            await run("query", GQL_SLOW, "Slow", {"d": d}, d)
        await run("mutation", 'mutation AddMessage { addMessage(text: "hi there") { id text } }',
                  "AddMessage")
        sub = GraphQLRequest(
            f"subscription Count {{ count(to: {GQL_COUNT}, intervalMs: {GQL_INTERVAL_MS}) }}",
            operation_name="Count",
        )
        log("client", "operation_sent", operation_type="subscription", operation_name="Count", variables=None)
        t0 = time.time()
        items = []
        async for item in session.subscribe(sub):
            items.append(time.time())
            log("client", "item_received", id=op_id(sub), operation_name="Count", data=item)
        t1 = time.time()
        log("client", "complete_received", id=op_id(sub), operation_name="Count")
        request_done("client", "subscription", "Count", t0, items[0], id=op_id(sub), delay_ms=None,
                     items=len(items), t_items=items, t_complete=t1)
        if protocol == "graphql-transport-ws":
            await stop_after_three()
        await asyncio.gather(*(run("query", GQL_SLOW, "Slow", {"d": d}, d, concurrent=True)
                               for d in GQL_CONCURRENT_MS))
        await run("query", "query Boom { boom }", "Boom")  # the resolver raises: data null + errors
        await run("query", "query Bad { noSuchField }", "Bad")  # fails validation: no execution
        await asyncio.sleep(1.6)  # pings (graphql-transport-ws, client) or keep-alives (graphql-ws)
    log("client", "closed")


# --------------------------------------------------------------------------------------------
# peers and scenarios

PEERS: dict[tuple[str, str], Callable[[int], Any]] = {
    ("socketio", "server"): _socketio_server,
    ("socketio", "client"): _socketio_client,
    ("jsonrpc", "server"): _jsonrpc_server,
    ("jsonrpc", "client"): _jsonrpc_client,
    ("graphql_transport_ws", "server"): functools.partial(_graphql_server, protocol="graphql-transport-ws"),
    ("graphql_transport_ws", "client"): functools.partial(_graphql_client, protocol="graphql-transport-ws"),
    ("graphql_ws", "server"): functools.partial(_graphql_server, protocol="graphql-ws"),
    ("graphql_ws", "client"): functools.partial(_graphql_client, protocol="graphql-ws"),
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


def ws_sequence(frames: list[dict], sender: str) -> list[tuple[str, int, int]]:
    """tshark's data messages of one side: (type, payload length, frame number of the last frame),
    continuation frames summed."""
    seen: list[tuple[str, int, int]] = []
    cur: list = []
    for f in frames:
        if f["sender"] != sender or f["opcode"] not in (0, 1, 2):
            continue
        if f["opcode"] in (1, 2):
            cur = ["text" if f["opcode"] == 1 else "binary", 0]
        cur[1] += f["payload_len"]
        if f["fin"]:
            seen.append((cur[0], cur[1], f["frame_no"]))
    return seen


def frame_times(path: Path) -> dict[int, float]:
    """Capture timestamp (seconds since the epoch) of every packet, by frame number."""
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch"],
        capture_output=True, check=True, text=True, timeout=300,
    )
    return {int(n): float(t) for n, t in (line.split("\t") for line in proc.stdout.splitlines() if line)}


def check_with_tshark(
    path: Path, port: int, client_port: int | None, wires: list[dict], logs: list[dict]
) -> tuple[list[dict], list[dict], list[str]]:
    """Match the sides' wire logs with tshark's WebSocket data messages, per side in order (type
    and size must agree). Returns the wire records that reached the capture, each given the
    frame_no and capture time `ts` of the packet that completed it and sorted in capture order (the
    sides' log times interleave only roughly), the records logged but never sent, and the
    disagreements. Logged but never sent: python-socketio's AsyncClient.disconnect() queues
    DISCONNECT and CLOSE packets (its logger says "Sending packet") and closes the WebSocket
    before its write loop runs; such a tail is accepted only when it was logged after that side's
    "disconnect" log record."""
    from tshark_frames import tshark_frames

    frames = tshark_frames(path, {port})
    times = frame_times(path)
    errors = []
    sent: list[tuple[int, int, dict]] = []
    unsent: list[dict] = []
    ports = {f["client_port"] for f in frames}
    if ports != {client_port}:
        errors.append(f"tshark sees WebSocket connections from ports {ports}, the programs: {client_port}")
    for side in ("client", "server"):
        mine = [w for w in wires if w["sender"] == side]
        logged = [(w["type"], w["size"]) for w in mine]
        seen = ws_sequence(frames, side)
        bye = [r["t"] for r in logs if r["sender"] == side and r["kind"] == "disconnect"]
        tail = mine[len(seen):]
        if logged[: len(seen)] != [(t, n) for t, n, _ in seen]:
            errors.append(f"{side}: logged {logged}, tshark {seen}")
        elif tail and not (bye and all(w["t"] >= bye[0] for w in tail)):
            errors.append(f"{side}: logged but not in the capture: {tail}")
        else:
            unsent += tail
            for n, (w, (_, _, frame_no)) in enumerate(zip(mine, seen)):
                sent.append((frame_no, n, {**w, "frame_no": frame_no, "ts": round(times[frame_no], 6)}))
        if len(seen) > len(logged):
            errors.append(f"{side}: tshark has {len(seen) - len(logged)} data messages more than logged")
    if any(f["rsv1"] for f in frames):
        errors.append("compressed frames: the logged sizes would not be the frame sizes")
    return [w for _, _, w in sorted(sent, key=lambda x: (x[0], x[1]))], unsent, errors


def _first(wires: list[dict], sender: str, pred: Callable[[Any], bool]) -> dict:
    """The first wire record of `sender` whose parsed text satisfies `pred`."""
    for w in wires:
        if w["sender"] == sender and w["text"] is not None and pred(w["text"]):
            return w
    raise RuntimeError(f"no {sender} message matches")


def _last_attachment(wires: list[dict], packet: dict) -> dict:
    """A Socket.IO BINARY_EVENT / BINARY_ACK ("45N-..." / "46N-...") is complete with the last of
    its N attachments, the sender's next N binary messages; another packet is its own message."""
    m = re.match(r"4[56](\d+)-", packet["text"])
    if not m:
        return packet
    after = [w for w in wires[wires.index(packet) + 1:] if w["sender"] == packet["sender"]]
    return after[int(m.group(1)) - 1]


def request_messages(protocol: str, r: dict, wires: list[dict]) -> tuple[dict, dict]:
    """The wire records of a timed request and of its answer, found by the id the asker logged:
    Socket.IO EVENT / ACK with that ack id on that namespace (binary ones at their last
    attachment), JSON-RPC request / response (a batch: its first id), GraphQL
    subscribe|start / the first message back with that operation id."""
    asker = r["sender"]
    other = "server" if asker == "client" else "client"
    if protocol == "socketio":
        nsp = "" if r["namespace"] == "/" else r["namespace"] + ","
        head = r"(?:\d+-)?" + re.escape(nsp) + str(r["id"]) + r"\["
        req = _last_attachment(wires, _first(wires, asker, lambda t: re.match("4[25]" + head, t) is not None))
        ans = _last_attachment(wires, _first(wires, other, lambda t: re.match("4[36]" + head, t) is not None))
    elif protocol == "jsonrpc":
        rid = r["id"][0] if isinstance(r["id"], list) else r["id"]
        req = _first(wires, asker, lambda t: any(i.get("id") == rid and "method" in i for i in _rpc_items(t)))
        ans = _first(wires, other, lambda t: any(i.get("id") == rid and "method" not in i
                                                 for i in _rpc_items(t)))
    else:
        req = _first(wires, asker, lambda t: json.loads(t).get("id") == r["id"]
                     and json.loads(t)["type"] in ("subscribe", "start"))
        ans = _first(wires, other, lambda t: json.loads(t).get("id") == r["id"])
    return req, ans


def add_capture_latencies(protocol: str, requests: list[dict], wires: list[dict]) -> list[str]:
    """Give each timed request the capture frames of its request and answer messages and the
    latency between their timestamps; that latency must lie between the delay the answering side
    added and the latency the asker measured (both sides' clocks bracket the wire)."""
    errors = []
    for r in requests:
        req, ans = request_messages(protocol, r, wires)
        cap = round((ans["ts"] - req["ts"]) * 1000, 3)
        r.update(request_frame=req["frame_no"], answer_frame=ans["frame_no"], capture_latency_ms=cap)
        if not (r["delay_ms"] or 0) <= cap <= r["latency_ms"]:
            errors.append(f"{r['name']} {r['id']}: capture latency {cap} ms, delay {r['delay_ms']} ms, "
                          f"measured by the {r['sender']} {r['latency_ms']} ms")
    return errors


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


def _graphql_counts(wires: list[dict], logs: list[dict]) -> dict:
    """Per side: messages by the protocol's "type" field, from the senders' wire lists."""
    out: dict[str, dict[str, int]] = {"client": {}, "server": {}}
    for w in wires:
        t = json.loads(w["text"])["type"]
        out[w["sender"]][t] = out[w["sender"]].get(t, 0) + 1
    return out


_GQL_OPS = (
    "query Hello; query Slow answered after {delays} ms (the server sleeps); mutation AddMessage; "
    "subscription Count yielding {count} items {interval} ms apart, then completed by the server; "
)


def _graphql_info(port: int, subprotocol: str, server: str, specifics: str) -> dict:
    return {
        "port": port,
        # the decoders' names (analyzer/app/protocols/graphql_ws.py)
        "protocol": subprotocol if subprotocol == "graphql-transport-ws" else "subscriptions-transport-ws",
        "libraries": ("gql", "websockets", "uvicorn", "graphql-core",
                      *(("strawberry-graphql",) if "strawberry" in server else ("ariadne",))),
        "counts": _graphql_counts,
        "description": (
            f"GraphQL over WebSocket, subprotocol {subprotocol} (the only one the client offers): {server} "
            "on uvicorn (websockets implementation, no permessage-deflate), gql 4 client "
            "(WebsocketsTransport), path /graphql. connection_init/connection_ack; "
            + _GQL_OPS.format(delays=", ".join(map(str, GQL_DELAYS_MS)), count=GQL_COUNT,
                              interval=GQL_INTERVAL_MS)
            + specifics
        ),
    }


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
    "graphql_transport_ws": _graphql_info(
        9303, "graphql-transport-ws", "strawberry-graphql's ASGI app",
        "subscription Ticker stopped by the client (complete) after 3 items; two Slow queries sent "
        f"together ({' and '.join(map(str, GQL_CONCURRENT_MS))} ms: answered in the other order); query "
        "Boom whose resolver raises (next with data null and errors, then complete); query Bad that "
        "fails validation (error message, no complete); client pings every second, answered by pong; "
        "the client closes 1000",
    ),
    "graphql_ws": _graphql_info(
        9304, "graphql-ws", "ariadne's ASGI app with its GraphQLWSHandler (keepalive 1 s)",
        f"two Slow queries sent together ({' and '.join(map(str, GQL_CONCURRENT_MS))} ms): ariadne runs "
        "queries one after the other on a connection, so the 10 ms one is answered after the 80 ms one; "
        "query Boom whose resolver raises (data {boom: null} and errors); query Bad that fails "
        "validation (a data message with errors); ariadne sends no complete after a query or mutation "
        "(only after a subscription); ka keep-alives every second; the client sends "
        "connection_terminate and closes 1000. No client-stopped subscription: ariadne 1.1.1 drops "
        "the connection on stop of a running subscription (aclose() of a running generator)",
    ),
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
    wires, unsent, errors = check_with_tshark(path, port, conn.get("client_port"), wires, logs)
    if not errors:
        errors = add_capture_latencies(info["protocol"], requests, wires)
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
            "epoch, one clock for both sides); wire t: when the sender logged the message (queued or "
            "written); wire frame_no and ts: the capture's packet that completed the message (tshark) "
            "and its timestamp; the wire list is in capture order"
        ),
        "wire": wires,
        "logged_not_sent": unsent,
        "log": logs,
        "requests": requests,
        "counts": info["counts"](wires, logs),
        "tshark_check": (
            "per side, the wire list's (type, size) sequence equals tshark's WebSocket data messages "
            "(dissected with -d tcp.port==PORT,http)"
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
