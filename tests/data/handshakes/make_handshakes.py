"""Record the real WebSocket handshakes in this folder (run as root: tcpdump on loopback).

    python tests/data/handshakes/make_handshakes.py            # all scenarios
    python tests/data/handshakes/make_handshakes.py websockets  # one

Each scenario starts tcpdump on `lo` for its own port, sleeps 1 s, runs a tiny server and client
from one library (one text message each way, then a normal close), sleeps 1 s and stops tcpdump:

    websockets_9123.pcap   websockets 17 server + client, port 9123 (non-standard), subprotocol
                           "chat" out of "chat, superchat", permessage-deflate (websockets' default)
    aiohttp_9124.pcap      aiohttp server + client, subprotocol "v2.json" out of "v2.json, v1.json",
                           no compression
    wsproto_9125.pcap      wsproto (h11) server + client over plain sockets, subprotocol "mqtt",
                           permessage-deflate negotiated by wsproto's PerMessageDeflate
    websockets_403_9126.pcap   websockets server refusing the upgrade with HTTP 403
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def record(name: str, port: int, traffic) -> None:
    out = HERE / name
    cmd = ["tcpdump", "-i", "lo", "--immediate-mode", "-B", "262144", "-s", "0", "-w", str(out),
           f"tcp port {port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        proc.stderr.readline()          # "listening on lo ...": the capture is running
        time.sleep(1)
        traffic(port)
        time.sleep(1)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    print(f"{out.name}: {out.stat().st_size} bytes")


# --- websockets ----------------------------------------------------------------------------

def websockets_traffic(port: int) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, subprotocols=["chat"]), \
                connect(f"ws://127.0.0.1:{port}/chat", subprotocols=["chat", "superchat"]) as ws:
            await ws.send("hello websockets")
            await ws.recv()

    asyncio.run(main())


def websockets_403_traffic(port: int) -> None:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import InvalidStatus

    def refuse(connection, request):
        return connection.respond(403, "Forbidden\n")

    async def main() -> None:
        async with serve(lambda ws: None, "127.0.0.1", port, process_request=refuse):
            try:
                async with connect(f"ws://127.0.0.1:{port}/private"):
                    pass
            except InvalidStatus:
                pass

    asyncio.run(main())


# --- aiohttp -------------------------------------------------------------------------------

def aiohttp_traffic(port: int) -> None:
    import aiohttp
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("v2.json",), compress=False)
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/ws", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"http://127.0.0.1:{port}/ws", protocols=("v2.json", "v1.json"),
                compress=0) as ws:
            await ws.send_str("hello aiohttp")
            await ws.receive()
            await ws.close()
        await runner.cleanup()

    asyncio.run(main())


# --- wsproto -------------------------------------------------------------------------------

def wsproto_traffic(port: int) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import (
        AcceptConnection,
        CloseConnection,
        Message,
        Request,
        TextMessage,
    )
    from wsproto.extensions import PerMessageDeflate

    listener = socket.create_server(("127.0.0.1", port))

    def server() -> None:
        sock, _ = listener.accept()
        ws = WSConnection(ConnectionType.SERVER)
        running = True
        while running:
            data = sock.recv(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, Request):
                    sock.sendall(ws.send(AcceptConnection(subprotocol="mqtt",
                                                          extensions=[PerMessageDeflate()])))
                elif isinstance(event, Message):
                    sock.sendall(ws.send(TextMessage(data=event.data)))
                elif isinstance(event, CloseConnection):
                    sock.sendall(ws.send(event.response()))
                    running = False
            if not data:
                running = False
        sock.close()

    thread = threading.Thread(target=server)
    thread.start()
    sock = socket.create_connection(("127.0.0.1", port))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target="/mqtt",
                                 subprotocols=["mqtt"], extensions=[PerMessageDeflate()])))
    done = False
    while not done:
        data = sock.recv(65536)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                sock.sendall(ws.send(TextMessage(data="hello wsproto")))
            elif isinstance(event, Message):
                sock.sendall(ws.send(CloseConnection(code=1000, reason="bye")))
            elif isinstance(event, CloseConnection):
                done = True
        if not data:
            done = True
    sock.close()
    thread.join(timeout=5)
    listener.close()


SCENARIOS = {
    "websockets": ("websockets_9123.pcap", 9123, websockets_traffic),
    "aiohttp": ("aiohttp_9124.pcap", 9124, aiohttp_traffic),
    "wsproto": ("wsproto_9125.pcap", 9125, wsproto_traffic),
    "websockets_403": ("websockets_403_9126.pcap", 9126, websockets_403_traffic),
}

if __name__ == "__main__":
    for key in sys.argv[1:] or list(SCENARIOS):
        record(*SCENARIOS[key])
