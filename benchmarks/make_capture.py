"""Record the large benchmark capture: real WebSocket traffic between real libraries on loopback.

    python benchmarks/make_capture.py [--packets 1000000] [--scale 0.1] [--out benchmarks/data/bench.pcap]
                                      [--tls [--tls-version 1.3|1.2]] [--shape mix|long|short]

Nothing is synthesised: a python `websockets` server and an `aiohttp` server talk to ~50 concurrent
client connections (websockets and aiohttp clients, in two processes) while `tcpdump -i lo` records
them. Each connection sends a mix of JSON-ish chat text, binary messages from a few bytes to 256 KB
(half random, half compressible), and pings; some connections negotiate permessage-deflate and some
do not; each ends with one of several close codes (client-initiated, server-initiated, or aborted
with no close frame at all), and a new connection takes its place. Recording stops once tcpdump
has captured the packet target (asked with SIGUSR1), after every open connection has closed.

Beside the capture it writes `<out>.json`: ports (tshark needs `-d tcp.port==P,http` for them),
packet and byte counts, kernel drops, and what the senders counted (messages, pings, closes).

With --tls the same traffic (mix, seeds, endings) runs as wss://: both servers serve TLS (1.3, or
1.2 with ECDHE-ECDSA AES-GCM given --tls-version 1.2) with a self-signed certificate made at start,
the clients verify it, send SNI "localhost" and write the key log to `<out>.keylog`; the sidecar
says so under "tls" (tshark: `-o tls.keylog_file:<out>.keylog -d tcp.port==P,tls`).

Shapes (--shape, issue 21; the knobs below set per shape in SHAPES, the same traffic code):

* mix (default): the mix above: ~50 connections at a time, each 20-1,500 messages, 40 % of them
  with permessage-deflate, binary messages up to 256 KB (1M packets: ~677 connections);
* long: few long connections: 24 at a time, each 200-15,000 messages (so most run until recording
  stops), 55 % with permessage-deflate, messages of 12 B to 64 KB;
* short: many short connections: 64 clients, each in a loop opening a websockets connection (no
  extension), sending one chat text message, reading the one reply and closing it cleanly (1000),
  from a local address of 127.0.0.2-127.0.0.41 in turn (fewer reused 4-tuples): ~12 packets a
  connection, so 1M packets are ~80,000 connections.

Needs root (tcpdump on lo) and tcpdump; websockets >= 12 and aiohttp >= 3.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from benchmarks.tls_material import SERVER_NAME, VERSIONS, TlsSetup, make_certificate  # noqa: E402

DEFAULT_OUT = HERE / "data" / "bench.pcap"

CONNECTIONS = 50          # concurrent WebSocket connections, all the time
AIOHTTP_SHARE = 0.2       # fraction of them that use aiohttp (client and server) instead of websockets
DEFLATE_SHARE = 0.4       # fraction of connections that offer permessage-deflate
BASE_PORT = 18080         # first port tried for the servers (outside Linux's ephemeral range)

# Close endings: (weight, how, code). "client"/"server" send a close frame with the code; "abort"
# drops the TCP connection with no close frame (the application sees 1006).
ENDINGS = [
    (50, "client", 1000), (10, "client", 1001), (4, "client", 1003), (3, "client", 1008),
    (4, "client", 3000), (4, "client", 4000), (3, "client", 4999),
    (8, "server", 1000), (4, "server", 1001), (3, "server", 1011), (2, "server", 1013),
    (3, "server", 4001), (2, "server", 1008),
    (5, "abort", 0),
]

# What a client sends: (weight, kind, min size, max size). Binary sizes are drawn log-uniformly.
# Most messages are small-to-medium: loopback's MTU is 65536, so big messages make big packets.
MIX = [
    (50.0, "chat", 0, 0),
    (26.0, "bin", 2, 512),
    (14.0, "bin", 512, 8192),
    (2.0, "bin", 8192, 65536),
    (0.15, "bin", 65536, 262144),
    (2.0, "ping", 4, 16),
]
# How many client messages may await their reply: 1 for most connections (request/response, one
# message a packet), more for a few "streaming" ones, whose frames then share packets.
WINDOWS = [(85, 1), (10, 4), (5, 16)]
MESSAGES_SCALE = 1        # multiplies the messages a connection sends (websockets 20-1,500, aiohttp 20-1,200)
SHORT = False             # one message each way per connection, then a clean close (the "short" shape)
SHORT_SOURCES = 40        # short connections come from 127.0.0.2 .. 127.0.0.(1 + this)

#: per shape, the globals above that it changes (the traffic processes are forked: they see them)
SHAPES: dict[str, dict[str, object]] = {
    "mix": {},
    "long": {"CONNECTIONS": 24, "DEFLATE_SHARE": 0.55, "MESSAGES_SCALE": 10,
             "MIX": [(50.0, "chat", 0, 0), (26.0, "bin", 12, 512), (14.0, "bin", 512, 8192),
                     (2.0, "bin", 8192, 65536), (2.0, "ping", 4, 16)]},
    "short": {"CONNECTIONS": 64, "SHORT": True, "AIOHTTP_SHARE": 0.0, "DEFLATE_SHARE": 0.0},
}

WORDS = ["hello", "there", "ok", "sure", "lol", "the", "price", "is", "up", "again", "anyone", "seen",
         "new", "build", "shipping", "today", "deploy", "failed", "retry", "later", "thanks", "great",
         "meeting", "at", "noon", "coffee?", "ping", "me", "when", "done", "latency", "spike", "on",
         "eu-west", "looks", "fine", "now", "merged", "rebased", "reverted"]
USERS = [f"user{i:03d}" for i in range(200)]
ROOMS = ["general", "random", "ops", "dev", "trading", "support", "emea", "apac"]


# --------------------------------------------------------------------------------------------
# payloads


class Payloads:
    """Cheap payloads: slices of a random pool and of a compressible pool, and chat JSON."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.random_pool = self.rng.randbytes(1 << 20) * 2
        # "telemetry": fixed-layout records whose values barely change → deflate shrinks them a lot
        rec = bytearray()
        for i in range(40000):
            rec += (i.to_bytes(4, "little") + b"\x00\x01" + bytes([i % 7, 42, 0, 0, 17, i % 3]) + b"sens")
        self.soft_pool = bytes(rec) * 2
        self.seq = 0

    def binary(self, size: int) -> bytes:
        pool = self.random_pool if self.rng.random() < 0.5 else self.soft_pool
        start = self.rng.randrange(len(pool) // 2)
        return pool[start:start + size]

    def chat(self) -> str:
        rng = self.rng
        self.seq += 1
        words = " ".join(rng.choices(WORDS, k=rng.randint(2, 40)))
        msg = {"type": "chat", "seq": self.seq, "room": rng.choice(ROOMS), "from": rng.choice(USERS),
               "ts": round(time.time(), 3), "text": words}
        if rng.random() < 0.1:
            msg["text"] += " ✓ héllo 日本語 😀"
        return json.dumps(msg, ensure_ascii=False)

    def size(self, lo: int, hi: int) -> int:
        return round(lo * (hi / lo) ** self.rng.random())

    def ping_payload(self, size: int) -> bytes:
        """Unique per connection (websockets refuses two pings in flight with the same data)."""
        self.seq += 1
        return self.seq.to_bytes(4, "big") + self.rng.randbytes(size - 4)


def pick(rng: random.Random, table: list) -> tuple:
    return rng.choices(table, weights=[row[0] for row in table])[0]


# --------------------------------------------------------------------------------------------
# servers (one process: a websockets server and an aiohttp server)


def _server_reply(pl: Payloads, msg: str | bytes) -> str | bytes | tuple:
    """The server's one answer to one client message (a ("close", code) tuple: close instead)."""
    rng = pl.rng
    if isinstance(msg, str):
        if msg.startswith('{"type": "bye"'):
            return ("close", json.loads(msg)["code"])
        r = rng.random()
        if r < 0.75:
            return pl.chat()
        if r < 0.80:
            return pl.binary(pl.size(16, 4096))
        return json.dumps({"type": "ack", "seq": pl.seq})
    r = rng.random()
    if r < 0.15 and len(msg) <= 65536:
        return msg                                          # echo
    if r < 0.25:
        return pl.binary(pl.size(2, 2048))
    return json.dumps({"type": "ack", "bytes": len(msg), "seq": pl.seq})


def run_servers(ws_port: int, aio_port: int, ready, stop, results, tls: TlsSetup | None = None) -> None:
    """Process body: serve until `stop` is set, then put this side's counters on `results`."""
    counts: Counter[str] = Counter()
    server_ssl = tls.server_context() if tls is not None else None

    async def main() -> None:
        from aiohttp import WSMsgType, web
        from websockets.asyncio.server import serve
        from websockets.exceptions import ConnectionClosed

        pl = Payloads(seed=1)

        async def ws_handler(ws) -> None:
            counts["ws_connections"] += 1
            try:
                async for msg in ws:
                    out = _server_reply(pl, msg)
                    if isinstance(out, tuple):
                        counts[f"server_close_{out[1]}"] += 1
                        await ws.close(out[1], "server says bye")
                        break
                    await ws.send(out)
                    counts["server_messages"] += 1
                    if pl.rng.random() < 0.01:
                        await ws.ping(pl.ping_payload(pl.rng.randint(4, 8)))
                        counts["server_pings"] += 1
            except ConnectionClosed:
                pass

        async def aio_handler(request):
            ws = web.WebSocketResponse(compress=True, autoping=True, max_msg_size=0, protocols=("chat.v1",))
            await ws.prepare(request)
            counts["aiohttp_connections"] += 1
            try:
                async for m in ws:
                    if m.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        break
                    out = _server_reply(pl, m.data)
                    if isinstance(out, tuple):
                        counts[f"server_close_{out[1]}"] += 1
                        await ws.close(code=out[1], message=b"server says bye")
                        break
                    if isinstance(out, str):
                        await ws.send_str(out)
                    else:
                        await ws.send_bytes(out)
                    counts["server_messages"] += 1
            except ConnectionError:   # the client aborted
                pass
            return ws

        app = web.Application()
        app.router.add_get("/ws", aio_handler)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", aio_port, ssl_context=server_ssl)
        await site.start()
        async with serve(ws_handler, "127.0.0.1", ws_port, compression="deflate", ping_interval=None,
                         max_size=None, max_queue=64, ssl=server_ssl):
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
        await runner.cleanup()

    asyncio.run(main())
    results.put(("server", dict(counts)))


# --------------------------------------------------------------------------------------------
# clients


def run_clients(n: int, seed: int, ws_port: int, aio_port: int, go, stop, results,
                tls: TlsSetup | None = None, keylog: Path | None = None) -> None:
    """Process body: keep `n` connections busy until `stop` is set, then close them and report.

    Every data message gets exactly one reply from the server, so a semaphore of `window` permits,
    released by the reader for each reply, keeps the connection request/response paced. With `tls`,
    the connections are wss:// and their secrets go to `keylog`.
    """
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    counts: Counter[str] = Counter()
    client_ssl = tls.client_context(keylog) if tls is not None and keylog is not None else None
    # websockets passes ssl= and server_hostname= on to loop.create_connection; aiohttp takes both
    secure: dict = {"ssl": client_ssl, "server_hostname": SERVER_NAME} if client_ssl else {}
    ws_scheme, http_scheme = ("wss", "https") if client_ssl else ("ws", "http")

    class Conn:
        """What the send loop needs, for either library."""

        def __init__(self, send_text, send_bytes, ping, window: int) -> None:
            self.send_text, self.send_bytes, self.ping = send_text, send_bytes, ping
            self.permits = asyncio.Semaphore(window)

        def replied(self) -> None:
            counts["client_received"] += 1
            self.permits.release()

    async def talk(pl: Payloads, conn: Conn, count: int, closed) -> str:
        """Send `count` messages (fewer if stopped); returns how to end: a MIX-driven chat."""
        rng = pl.rng
        for _ in range(count):
            if stop.is_set() or closed():
                return "stopped"
            _, kind, lo, hi = pick(rng, MIX)
            if kind == "ping":
                await conn.ping(pl.ping_payload(pl.size(lo, hi)))
                counts["client_pings"] += 1
                continue
            await asyncio.wait_for(conn.permits.acquire(), 30)
            if kind == "chat":
                await conn.send_text(pl.chat())
            else:
                await conn.send_bytes(pl.binary(pl.size(lo, hi)))
            counts["client_messages"] += 1
        return "done"

    async def one_websockets(pl: Payloads, deflate: bool, window: int) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        rng = pl.rng
        uri = f"{ws_scheme}://127.0.0.1:{ws_port}/chat?client={rng.randrange(10**6)}"
        async with connect(uri, compression="deflate" if deflate else None, ping_interval=None,
                           max_size=None, max_queue=64, user_agent_header="bench-client/1.0", **secure) as ws:
            counts["connections"] += 1
            counts["deflate_connections"] += deflate
            conn = Conn(ws.send, ws.send, ws.ping, window)

            async def drain() -> None:
                try:
                    async for _ in ws:
                        conn.replied()
                except ConnectionClosed:
                    pass

            reader = asyncio.create_task(drain())
            try:
                state = await talk(pl, conn, rng.randint(20, 1500) * MESSAGES_SCALE, lambda: reader.done())
                _, how, code = ("", "client", 1001) if state == "stopped" else pick(rng, ENDINGS)
                if reader.done():
                    pass
                elif how == "abort":
                    counts["client_abort"] += 1
                    ws.transport.abort()
                elif how == "server":
                    await ws.send(json.dumps({"type": "bye", "code": code}))
                    counts["client_messages"] += 1
                    await asyncio.wait_for(reader, 10)
                else:
                    counts[f"client_close_{code}"] += 1
                    await ws.close(code, "client done")
            except (ConnectionClosed, asyncio.TimeoutError):
                counts["client_errors"] += 1
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def one_aiohttp(session, pl: Payloads, deflate: bool, window: int) -> None:
        from aiohttp import WSMsgType

        rng = pl.rng
        ws = await session.ws_connect(f"{http_scheme}://127.0.0.1:{aio_port}/ws",
                                      compress=15 if deflate else 0, autoping=True, max_msg_size=0,
                                      protocols=("chat.v2", "chat.v1"), **secure)
        counts["connections"] += 1
        counts["deflate_connections"] += deflate
        conn = Conn(ws.send_str, ws.send_bytes, ws.ping, window)

        async def drain() -> None:
            async for m in ws:
                if m.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    conn.replied()

        reader = asyncio.create_task(drain())
        try:
            state = await talk(pl, conn, rng.randint(20, 1200) * MESSAGES_SCALE,
                               lambda: ws.closed or reader.done())
            _, how, code = ("", "client", 1001) if state == "stopped" else pick(rng, ENDINGS)
            if ws.closed or reader.done():
                pass
            elif how == "abort":
                counts["client_abort"] += 1
                ws._response.connection.transport.abort()   # no close frame: the app sees 1006
            elif how == "server":
                await ws.send_str(json.dumps({"type": "bye", "code": code}))
                counts["client_messages"] += 1
                await asyncio.wait_for(reader, 10)
            else:
                counts[f"client_close_{code}"] += 1
                await ws.close(code=code, message=b"client done")
        except (ConnectionError, asyncio.TimeoutError, RuntimeError):
            counts["client_errors"] += 1
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if not ws.closed:
                await ws.close()

    async def one_short(pl: Payloads, source: str) -> None:
        """Open, one chat message each way, close with 1000: the whole life of a short connection."""
        from websockets.asyncio.client import connect

        uri = f"{ws_scheme}://127.0.0.1:{ws_port}/short?client={pl.rng.randrange(10**6)}"
        async with connect(uri, compression=None, ping_interval=None, max_size=None,
                           user_agent_header="bench-client/1.0", local_addr=(source, 0), **secure) as ws:
            counts["connections"] += 1
            await ws.send(pl.chat())
            counts["client_messages"] += 1
            await asyncio.wait_for(ws.recv(), 30)
            counts["client_received"] += 1
            await ws.close(1000, "client done")
            counts["client_close_1000"] += 1

    async def worker(i: int, session) -> None:
        pl = Payloads(seed=seed * 1000 + i)
        use_aiohttp = i < round(n * AIOHTTP_SHARE)
        turn = i
        while SHORT and not stop.is_set():
            turn += n
            try:
                await one_short(pl, f"127.0.0.{2 + turn % SHORT_SOURCES}")
            except Exception as exc:   # a refused or reset connection: count it and go on
                counts[f"error_{type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)
        while not stop.is_set():
            deflate = pl.rng.random() < DEFLATE_SHARE
            window = pick(pl.rng, WINDOWS)[1]
            try:
                if use_aiohttp:
                    await one_aiohttp(session, pl, deflate, window)
                else:
                    await one_websockets(pl, deflate, window)
            except Exception as exc:   # a refused or reset connection: count it and go on
                counts[f"error_{type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)

    async def main() -> None:
        import aiohttp

        while not go.is_set():
            await asyncio.sleep(0.05)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(worker(i, session) for i in range(n)))

    asyncio.run(main())
    results.put(("clients", dict(counts)))


# --------------------------------------------------------------------------------------------
# recording


class Tcpdump:
    """tcpdump on lo writing `out`; `captured()` asks it (SIGUSR1) how many packets it has so far."""

    _COUNT = re.compile(rb"(\d+) packets? captured")
    _RECEIVED = re.compile(rb"(\d+) packets? received by filter")
    _DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")

    def __init__(self, out: Path, port_filter: str) -> None:
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "--immediate-mode", "-B", "262144", "-s", "0", "-w", str(out),
             port_filter], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.last = {"captured": 0, "received": 0, "dropped": 0}
        self.stderr = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr += line
                for key, rx in (("captured", self._COUNT), ("received", self._RECEIVED),
                                ("dropped", self._DROPPED)):
                    m = rx.search(line)
                    if m:
                        self.last[key] = int(m.group(1))

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait for "listening on": a SIGUSR1 before tcpdump sets its handler would kill it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if b"listening on" in self.stderr:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self._thread.join(timeout=1)
        raise RuntimeError(f"tcpdump did not start: {self.stderr.decode(errors='replace')}")

    def captured(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.05)
        with self._lock:
            return self.last["captured"]

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=5)
        return dict(self.last)


def free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + 199}")


def keylog_path(out: Path) -> Path:
    return out.with_name(out.name + ".keylog")


def record(target: int, out: Path, max_seconds: float, tls: TlsSetup | None = None) -> dict:
    """Run servers, clients and tcpdump until tcpdump has `target` packets; return what happened.

    With `tls`, each client process writes its own part of the key log (no two writers on one
    file); the parts are joined into `<out>.keylog` once the clients have stopped."""
    ws_port = free_port(BASE_PORT)
    aio_port = free_port(ws_port + 1)
    ctx = mp.get_context("fork")
    ready, go, stop, stop_server = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    results = ctx.Queue()
    server = ctx.Process(target=run_servers, args=(ws_port, aio_port, ready, stop_server, results, tls))
    per = [CONNECTIONS // 2, CONNECTIONS - CONNECTIONS // 2]
    parts = [out.with_name(f"{out.name}.keylog.{k}") for k in range(len(per))] if tls else [None] * len(per)
    for part in (keylog_path(out), *parts):
        if part is not None:
            part.unlink(missing_ok=True)
    clients = [ctx.Process(target=run_clients, args=(n, k + 1, ws_port, aio_port, go, stop, results,
                                                     tls, parts[k]))
               for k, n in enumerate(per)]
    counts: dict[str, Counter[str]] = {"clients": Counter(), "server": Counter()}
    port_filter = f"tcp port {ws_port} or tcp port {aio_port}"
    out.parent.mkdir(parents=True, exist_ok=True)
    dump: Tcpdump | None = None
    t0 = time.monotonic()

    def collect(n: int, timeout: float) -> None:
        for _ in range(n):
            try:
                role, c = results.get(timeout=timeout)
            except Exception:   # queue.Empty: a process that did not report; its counts are missing
                return
            counts[role] += Counter(c)

    try:
        server.start()
        if not ready.wait(30):
            raise RuntimeError("the servers did not start")
        for c in clients:
            c.start()
        dump = Tcpdump(out, port_filter)
        dump.wait_ready()
        time.sleep(1.0)
        t0 = time.monotonic()
        go.set()
        last_print = 0.0
        while True:
            time.sleep(0.2)
            n = dump.captured()
            elapsed = time.monotonic() - t0
            if elapsed - last_print >= 5:
                last_print = elapsed
                size = out.stat().st_size if out.exists() else 0
                print(f"  {elapsed:6.1f} s  {n:>9,} packets  {size / 1e6:8.1f} MB  "
                      f"({n / max(elapsed, 1e-9):,.0f} packets/s)", flush=True)
            if n >= target or elapsed > max_seconds:
                break
            if not all(p.is_alive() for p in (server, *clients)):
                raise RuntimeError("a traffic process died")
    finally:
        stop.set()
        go.set()
        collect(sum(c.pid is not None for c in clients), 60)   # clients close their connections first
        stop_server.set()
        collect(1 if server.pid is not None else 0, 30)
        for p in (*clients, server):
            if p.pid is not None:
                p.join(10)
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        time.sleep(1.0)
        stats = dump.stop() if dump is not None else {}
        if tls is not None:
            with keylog_path(out).open("wb") as joined:
                for part in parts:
                    if part is not None and part.exists():
                        joined.write(part.read_bytes())
                        part.unlink()
    senders = {k: dict(sorted(v.items())) for k, v in counts.items()}
    return {"ws_port": ws_port, "aiohttp_port": aio_port, "filter": port_filter, "tcpdump": stats,
            "traffic_seconds": round(time.monotonic() - t0, 1), "senders": senders}


def capinfos(path: Path) -> dict[str, str]:
    if not shutil.which("capinfos"):
        return {}
    out = subprocess.run(["capinfos", "-M", "-c", "-s", "-d", str(path)], capture_output=True, text=True)
    info = {}
    for line in out.stdout.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000, help="stop once tcpdump captured this many")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply --packets (0.1 → a 100k-packet file for quick iterations)")
    ap.add_argument("--out", type=Path, help="default benchmarks/data/bench.pcap (bench-<N>k.pcap if scaled)")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop recording after this long anyway")
    ap.add_argument("--tls", action="store_true",
                    help="wss:// with a self-signed certificate; the clients' key log goes to <out>.keylog")
    ap.add_argument("--tls-version", choices=sorted(VERSIONS), default="1.3",
                    help="with --tls: TLS 1.3 (default) or TLS 1.2 (ECDHE-ECDSA AES-GCM)")
    ap.add_argument("--shape", choices=list(SHAPES), default="mix",
                    help="mix (default): ~50 connections at a time; long: 24 long connections, 55 %% "
                         "deflate; short: one message each way per connection (1M packets ~80k connections)")
    ap.add_argument("--base-port", type=int, default=BASE_PORT,
                    help=f"first port tried for the two servers (default {BASE_PORT})")
    args = ap.parse_args(argv)
    target = max(1000, int(args.packets * args.scale))
    prefix = "bench" if args.shape == "mix" else f"bench-{args.shape}"
    out = args.out or (DEFAULT_OUT.with_name(f"{prefix}.pcap") if target == 1_000_000
                       else DEFAULT_OUT.with_name(f"{prefix}-{target // 1000}k.pcap"))
    if shutil.which("tcpdump") is None:
        print("make_capture: tcpdump is not installed (apt-get install -y tcpdump)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("make_capture: recording on lo needs root", file=sys.stderr)
        return 2
    what = f"WebSocket over TLS {args.tls_version}" if args.tls else "WebSocket"
    print(f"recording {target:,} packets of {what} traffic on lo into {out}", flush=True)
    globals().update(SHAPES[args.shape], BASE_PORT=args.base_port)
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        tls = TlsSetup(args.tls_version, *make_certificate(Path(tmp))) if args.tls else None
        meta = record(target, out, args.max_seconds, tls)
    meta["file"] = out.name
    meta["shape"] = args.shape
    meta["bytes"] = out.stat().st_size
    meta["packets"] = meta["tcpdump"]["captured"]
    meta["capinfos"] = capinfos(out)
    ports = (meta["ws_port"], meta["aiohttp_port"])
    if tls is None:
        meta["tshark_decode_as"] = [f"tcp.port=={p},http" for p in ports]
    else:
        keylog = keylog_path(out)
        secrets = [line for line in keylog.read_bytes().splitlines() if not line.startswith(b"#")]
        meta["tls"] = {"version": tls.version, "keylog": keylog.name, "keylog_lines": len(secrets),
                       "server_name": SERVER_NAME,
                       "certificate": "self-signed EC P-256, made at start"}
        meta["tshark_decode_as"] = [f"tcp.port=={p},tls" for p in ports]   # the HTTP inside is found
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(meta, indent=1) + "\n")
    t = meta["tcpdump"]
    print(f"wrote {out}: {meta['packets']:,} packets, {meta['bytes'] / 1e6:.1f} MB in "
          f"{meta['traffic_seconds']} s (kernel dropped {t['dropped']:,}); details in {side.name}")
    print(json.dumps(meta["senders"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
