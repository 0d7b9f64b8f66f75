"""Record the capture corpus: real WebSocket traffic between real implementations on loopback.

    python captures/make_captures.py [--only NAME[,NAME...]] [--out captures/] [--list]

Needs root (tcpdump on lo, ip netns), tcpdump, tshark/editcap, iproute2, node+npm, chromium, and the
Python packages websockets, aiohttp, tornado, cryptography, hypercorn, h2 and wsproto; `--install`
(or the first run when something is missing) installs them: pip install websockets aiohttp tornado
cryptography hypercorn h2 wsproto; npm install in captures/gen; apt-get install tcpdump tshark nodejs
npm chromium iproute2. Every sending program logs what it sent (type, size, sha256, text prefix, close
code and reason), and <name>.expected.json is written from those logs, cross-checked against tshark.
The wss:// (TLS) scenarios are in make_tls.py, the HTTP/2 (RFC 8441) ones in make_h2.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE / "gen"
sys.path.insert(0, str(HERE))

from tshark_frames import tshark_frames  # noqa: E402

# --------------------------------------------------------------------------------------------
# installation


def ensure_tools() -> None:
    """Install whatever is missing: Debian packages, Python packages, the npm deps in gen/."""
    apt = [
        p
        for p, exe in (
            ("tcpdump", "tcpdump"),
            ("tshark", "tshark"),
            ("nodejs", "node"),
            ("npm", "npm"),
            ("chromium", "chromium"),
            ("iproute2", "ip"),  # ip netns: the wss scenarios' network namespace
        )
        if shutil.which(exe) is None
    ]
    if apt and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *apt], check=False, env=env)
    missing = []
    for mod, pkg in (
        ("websockets", "websockets>=12"),
        ("aiohttp", "aiohttp>=3.9"),
        ("tornado", "tornado>=6.4"),
        ("cryptography", "cryptography>=42"),
        ("hypercorn", "hypercorn>=0.18"),  # the HTTP/2 (RFC 8441) scenarios, with h2 and wsproto
        ("h2", "h2>=4.1"),
        ("wsproto", "wsproto>=1.2"),
    ):
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", *missing], check=True)
    if not (GEN / "node_modules" / "ws-legacy").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=GEN, check=True)


# --------------------------------------------------------------------------------------------
# recording


@contextlib.contextmanager
def tcpdump(out: Path, port_filter: str, iface: str = "lo", prefix: tuple[str, ...] = ()) -> Iterator[None]:
    """Record `port_filter` traffic on `iface` into `out` while the block runs (`prefix`: a command
    that runs tcpdump, e.g. `ip netns exec NS`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            *prefix,
            "tcpdump",
            "-i",
            iface,
            "--immediate-mode",
            "-B",
            "262144",
            "-s",
            "0",
            "-U",
            "-w",
            str(out),
            port_filter,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # wait for tcpdump's "listening on" line (a fixed sleep loses the first packets on a busy machine)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode(errors="replace")
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"tcpdump failed: {line}{proc.stderr.read().decode(errors='replace')}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain the rest
    time.sleep(1.0)
    try:
        yield
    finally:
        time.sleep(1.2)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def to_pcapng(src: Path, dst: Path) -> None:
    subprocess.run(["editcap", "-F", "pcapng", str(src), str(dst)], check=True)
    src.unlink()


# --------------------------------------------------------------------------------------------
# sender logs


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def message_record(client_port: int, sender: str, data: str | bytes, **where: object) -> dict:
    """A sent message as the expected files list it (`where`: more keys, after client_port)."""
    if isinstance(data, str):
        raw, kind, prefix = data.encode(), "text", data[:64]
    else:
        raw, kind, prefix = bytes(data), "binary", None
    return {
        "client_port": client_port,
        **where,
        "sender": sender,
        "type": kind,
        "size": len(raw),
        "sha256": sha(raw),
        "text_prefix": prefix,
    }


@dataclass
class Log:
    """What the programs did: per-connection facts and every data message sent, in send order."""

    conns: dict[int, dict] = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, client_port: int, sender: str, data: str | bytes) -> None:
        with self.lock:
            self.messages.append(message_record(client_port, sender, data))

    def record(self, rec: dict) -> None:
        """A JSON line from a node/browser peer: {"event": "message"|"conn", ...}."""
        ev = rec.pop("event")
        if ev == "message":
            with self.lock:
                self.messages.append(
                    {
                        k: rec.get(k)
                        for k in ("client_port", "sender", "type", "size", "sha256", "text_prefix")
                    }
                )
        elif ev == "conn":
            self.conn(rec.pop("client_port"), **rec)

    def conn(self, client_port: int, **facts) -> None:
        with self.lock:
            self.conns.setdefault(client_port, {"client_port": client_port}).update(facts)


def ws_conn_facts(ws, server_port: int, side: str = "client") -> dict:
    """Connection facts from a python `websockets` connection after it closed; `side`: which end `ws`
    is (a server connection's close_sent is the server's close frame)."""
    p = ws.protocol
    resp = ws.response
    ext = resp.headers.get("Sec-WebSocket-Extensions") if resp is not None else None
    mine, theirs = p.close_sent, p.close_rcvd
    sent, rcvd = (mine, theirs) if side == "client" else (theirs, mine)  # by the client, to it
    if sent is not None and rcvd is not None:
        status = "clean"
    elif sent is not None or rcvd is not None:
        status = "half-closed"
    else:
        status = "abnormal"
    other = "server" if side == "client" else "client"
    if p.close_rcvd_then_sent is None:
        initiator = side if mine is not None else (other if theirs is not None else None)
    else:
        initiator = other if p.close_rcvd_then_sent else side
    return {
        "server_port": server_port,
        "version": 13,
        "draft": "rfc6455",
        "http_status": resp.status_code if resp is not None else None,
        "handshake_ok": True,
        "subprotocol": ws.subprotocol,
        "extensions": ext,
        "compression": bool(ext and "permessage-deflate" in ext),
        "close_code_client": int(sent.code) if sent else None,
        "close_code_server": int(rcvd.code) if rcvd else None,
        "close_reason_client": sent.reason if sent else None,
        "close_reason_server": rcvd.reason if rcvd else None,
        "close_status": status,
        "close_initiator": initiator,
    }


async def send_logged(ws, log: Log, client_port: int, sender: str, data) -> None:
    """Send through a python `websockets` connection and log it (lists are sent as fragments)."""
    if isinstance(data, list):
        whole = "".join(data) if isinstance(data[0], str) else b"".join(data)
        await ws.send(iter(data))
        log.sent(client_port, sender, whole)
    else:
        await ws.send(data)
        log.sent(client_port, sender, data)


# --------------------------------------------------------------------------------------------
# hand-written peers (raw sockets) for drafts and abnormal ends


def ws_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv1: bool = False
) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


def read_http_head(sock: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_ws_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    b0, b1 = recv_exact(sock, 2, buf)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(sock, 2, buf))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8, buf))
    if b1 & 0x80:
        recv_exact(sock, 4, buf)  # never from a server here
    return b0 & 0x0F, recv_exact(sock, n, buf)


def raw_connect(host: str, port: int, family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((host, port))
    return s


def hybi_handshake(
    sock: socket.socket, host: str, port: int, path: str, version: int, extra: str = ""
) -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16)).decode()
    origin_hdr = "Sec-WebSocket-Origin" if version < 13 else "Origin"
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n"
        f"{origin_hdr}: http://{host}:{port}\r\n{extra}\r\n"
    )
    sock.sendall(req.encode())
    return read_http_head(sock)


def http_status(head: bytes) -> int:
    return int(head.split(b"\r\n", 1)[0].split()[1])


# --------------------------------------------------------------------------------------------
# node peers (and other peer programs)


class Peer:
    """A program that prints JSON log lines (and READY when it listens); collects them into a Log."""

    def __init__(self, log: Log, command: list[str], env: dict[str, str] | None = None) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            command,
            cwd=GEN,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            self.lines.append(line)
            if line == "READY":
                self.ready.set()
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.log.record(rec)

    def wait_ready(self, timeout: float = 15) -> None:
        if not self.ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError(f"peer not ready: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def wait(self, timeout: float = 60) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.thread.join(5)
        if self.proc.returncode != 0:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"peer failed ({self.proc.returncode}): {err}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)


class NodePeer(Peer):
    """A node script under gen/ (`env`: the whole environment of the process, e.g. NODE_OPTIONS;
    `prefix`: a command that runs node, e.g. `ip netns exec NS`)."""

    def __init__(
        self,
        log: Log,
        script: str,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        super().__init__(log, [*prefix, "node", str(GEN / script), *args], env)


# --------------------------------------------------------------------------------------------
# expected files

CONN_KEYS = (
    "client_port",
    "server_port",
    "version",
    "draft",
    "http_status",
    "handshake_ok",
    "subprotocol",
    "extensions",
    "compression",
    "close_code_client",
    "close_code_server",
    "close_reason_client",
    "close_reason_server",
    "close_status",
    "close_initiator",
)
FRAME_KEYS = (
    "frame_no",
    "client_port",
    "sender",
    "opcode",
    "fin",
    "rsv1",
    "masked",
    "payload_len",
    "close_code",
)


def cross_check(conns: list[dict], messages: list[dict], frames: list[dict]) -> list[str]:
    """Disagreements between the senders' logs and tshark's dissection."""
    errors: list[str] = []
    by_conn: dict[int, list[dict]] = {}
    for f in frames:
        by_conn.setdefault(f["client_port"], []).append(f)
    known = {c["client_port"] for c in conns}
    for port in by_conn:
        if port not in known:
            errors.append(f"tshark sees frames on client port {port} that no program logged")
    for c in conns:
        port = c["client_port"]
        fr = by_conn.get(port, [])
        for side in ("client", "server"):
            closes = [f for f in fr if f["sender"] == side and f["opcode"] == 8]
            if "close_code_" + side in c:
                want = c["close_code_" + side]
                got = None if not closes else (closes[0]["close_code"] or 1005)
                if want != got:
                    errors.append(f"{port} {side}: close code logged {want}, tshark {got}")
            want_reason = c.get("close_reason_" + side)
            if closes and want_reason and closes[0]["close_reason"] != want_reason:
                errors.append(
                    f"{port} {side}: close reason logged {want_reason!r}, "
                    f"tshark {closes[0]['close_reason']!r}"
                )
            logged = [
                (m["type"], m["size"]) for m in messages if m["client_port"] == port and m["sender"] == side
            ]
            seen: list[tuple[str, int]] = []
            cur: list = []
            for f in fr:
                if f["sender"] != side or f["opcode"] not in (0, 1, 2):
                    continue
                if f["opcode"] in (1, 2):
                    cur = ["text" if f["opcode"] == 1 else "binary", 0]
                cur[1] += f["payload_len"]
                if f["fin"]:
                    seen.append((cur[0], cur[1]))
            if c.get("compression"):
                logged_cmp = [t for t, _ in logged]
                seen_cmp = [t for t, _ in seen]
            else:
                logged_cmp, seen_cmp = logged, seen
            if logged_cmp != seen_cmp:
                errors.append(f"{port} {side}: messages logged {logged_cmp[:8]}..., tshark {seen_cmp[:8]}...")
    return errors


def finish(
    name: str, path: Path, description: str, log: Log, tshark_ok: bool, notes: str, options: dict | None
) -> dict:
    conns = [{k: c[k] for k in CONN_KEYS if k in c} for c in log.conns.values()]
    conns.sort(key=lambda c: c["client_port"])
    expected: dict = {
        "capture": path.name,
        "description": description,
        "generator": f"make_captures.py {name}",
        "tshark_dissects": tshark_ok,
        "tshark_notes": notes,
        "connections": conns,
        "messages": log.messages,
    }
    if options:
        expected["analyze_options"] = options
    if tshark_ok and not notes:
        ports = ",".join(str(p) for p in sorted({c["server_port"] for c in conns}))
        expected["tshark_notes"] = (
            f"dissected with -d tcp.port=={ports},http: tshark looks for the HTTP "
            "Upgrade only on ports it knows"
        )
    if tshark_ok:
        server_ports = {c["server_port"] for c in conns}
        tf = tshark_frames(path, server_ports)
        errors = cross_check(conns, log.messages, tf)
        if errors:
            raise RuntimeError(f"{name}: senders' logs and tshark disagree:\n  " + "\n  ".join(errors))
        expected["frames"] = [{k: f[k] for k in FRAME_KEYS} for f in tf]
    out = path.with_name(path.name.split(".")[0] + ".expected.json")
    out.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    return expected


# --------------------------------------------------------------------------------------------
# scenarios

SCENARIOS: dict[str, Callable[[Path], dict]] = {}


def register(
    name: str,
    filename: str,
    description: str,
    port_filter: str,
    *,
    tshark: bool = True,
    notes: str = "",
    iface: str = "lo",
    pcapng: bool = False,
    options: dict | None = None,
    self_recording: bool = False,
):
    """Register fn(log) as a scenario (tcpdump records around it), or fn(log, record) when the
    scenario starts the recording itself (`with record(): ...`)."""

    def deco(fn):
        def run(out_dir: Path) -> dict:
            log = Log()
            path = out_dir / filename
            raw = path.with_name(path.name.split(".")[0] + ".tmp.pcap") if pcapng else path
            if self_recording:
                fn(log, lambda: tcpdump(raw, port_filter, iface=iface))
            else:
                with tcpdump(raw, port_filter, iface=iface):
                    fn(log)
            if pcapng:
                to_pcapng(raw, path)
            return finish(name, path, description, log, tshark, notes, options)

        SCENARIOS[name] = run
        return fn

    return deco


SIZES = [0, 1, 125, 126, 65535, 65536]
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "</td></tr></table><h1>broken</h1>",
    "&lt;not-an-entity&gt; & &amp; ' \" `",
    "{{ 7*7 }} ${7*7} <!-- comment -->",
    "<svg/onload=alert(3)>\u202e\u0000nul",
]


def payload_text(n: int, seed: int = 0) -> str:
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rnd.choices(alphabet, k=n))


def payload_binary(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


async def ws_server(
    port: int,
    log: Log,
    *,
    host: str = "127.0.0.1",
    compression: str | None = None,
    reply: Callable | None = None,
    after: Callable | None = None,
    **kw,
):
    """A python `websockets` server answering each message with reply(msg) (None: no answer; a list:
    fragments; default: echo). `after(ws, cport)` runs when the client's messages end."""
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws):
        cport = ws.remote_address[1]
        try:
            async for msg in ws:
                out = reply(msg) if reply else msg
                if isinstance(out, tuple):  # ("close", code, reason)
                    await ws.close(out[1], out[2])
                    break
                if out is not None:
                    await send_logged(ws, log, cport, "server", out)
        except ConnectionClosed:
            pass
        if after:
            await after(ws, cport)

    return await serve(handler, host, port, compression=compression, ping_interval=None, max_size=None, **kw)


def connect_kw(**kw) -> dict:
    base = {"ping_interval": None, "max_size": None, "close_timeout": 5}
    base.update(kw)
    return base


# ---- python websockets


def _sizes_reply(msg):
    if msg == "send big":
        return payload_binary(1 << 20, 98)
    return None if len(msg) > 70000 else msg


@register(
    "ws_sizes",
    "ws_sizes.pcap",
    "python websockets 17 server+client, no compression: text and binary of 0, 1, 125, 126, 65535, 65536 "
    "bytes from the client, each echoed by the server; a 1 MiB text from the client and a 1 MiB binary "
    "from the server; client closes 1000",
    "tcp port 9001",
)
def _ws_sizes(log: Log) -> None:
    from websockets.asyncio.client import connect

    async def main():
        server = await ws_server(9001, log, reply=_sizes_reply)
        async with connect("ws://127.0.0.1:9001/sizes", compression=None, **connect_kw()) as ws:
            cport = ws.local_address[1]
            for i, n in enumerate(SIZES):
                for data in (payload_text(n, i), payload_binary(n, i)):
                    await send_logged(ws, log, cport, "client", data)
                    await ws.recv()
            await send_logged(ws, log, cport, "client", payload_text(1 << 20, 99))
            await send_logged(ws, log, cport, "client", "send big")
            await ws.recv()
        log.conn(cport, **ws_conn_facts(ws, 9001))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def _frag_reply(msg):
    if isinstance(msg, str):
        return ["server ", "fragmented ", "reply to ", str(len(msg))]
    return [b"\xff" * 3, b"", b"\xee" * 300]


@register(
    "ws_fragments_ping",
    "ws_fragments_ping.pcap",
    "python websockets 17, no compression, subprotocol chat.v1 negotiated: fragmented text and binary "
    "messages both ways (iterators of fragments, including an empty fragment and a 70000-byte one), "
    "pings with payloads from both sides (and an empty ping), client closes 1000 'done'",
    "tcp port 9002",
)
def _ws_fragments(log: Log) -> None:
    from websockets.asyncio.client import connect

    async def after(ws, cport):
        return None

    async def main():
        server = await ws_server(9002, log, reply=_frag_reply, subprotocols=["chat.v2", "chat.v1"])
        async with connect(
            "ws://127.0.0.1:9002/chat", compression=None, subprotocols=["chat.v1"], **connect_kw()
        ) as ws:
            cport = ws.local_address[1]
            await (await ws.ping(b"client-ping-1"))
            await send_logged(ws, log, cport, "client", ["Hel", "lo, ", "frag", "ments ✓"])
            await ws.recv()
            await (await ws.ping(b""))
            await send_logged(ws, log, cport, "client", [b"\x00" * 10, b"\x01" * 200, b"\x02" * 70000])
            await ws.recv()
            await send_logged(ws, log, cport, "client", ["single fragment"])
            await ws.recv()
            await (await ws.ping(bytes(range(125))))
        log.conn(cport, **ws_conn_facts(ws, 9002))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


REASON_C = "au revoir — ça va? ✓ Grüße 👋"
REASON_S = "Ünïcödé server reason ✓ 日本語"


@register(
    "ws_close_reason_utf8",
    "ws_close_reason_utf8.pcap",
    "python websockets 17: close frames whose reasons hold non-ASCII UTF-8: the client closes 1000 "
    f"{REASON_C!r}; on a second connection the server closes 4000 {REASON_S!r}",
    "tcp port 9003",
)
def _ws_close_reason(log: Log) -> None:
    from websockets.asyncio.client import connect

    def reply(msg):
        return ("close", 4000, REASON_S) if msg == "please close" else msg

    async def main():
        server = await ws_server(9003, log, reply=reply)
        async with connect("ws://127.0.0.1:9003/", compression=None, **connect_kw()) as ws:
            cport = ws.local_address[1]
            await send_logged(ws, log, cport, "client", "hello")
            await ws.recv()
            await ws.close(1000, REASON_C)
        log.conn(cport, **ws_conn_facts(ws, 9003))
        async with connect("ws://127.0.0.1:9003/", compression=None, **connect_kw()) as ws:
            cport = ws.local_address[1]
            await send_logged(ws, log, cport, "client", "please close")
            await ws.wait_closed()
        log.conn(cport, **ws_conn_facts(ws, 9003))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def _chat_json(i: int, user: str) -> str:
    return json.dumps(
        {
            "type": "chat",
            "seq": i,
            "user": user,
            "room": "general",
            "text": f"message number {i} from {user}: " + "lorem ipsum dolor sit amet " * (1 + i % 5),
        }
    )


async def _deflate_conn(log: Log, port: int, **kw) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/deflate", **connect_kw(**kw)) as ws:
        cport = ws.local_address[1]
        for i in range(6):
            await send_logged(ws, log, cport, "client", _chat_json(i, "alice"))
            await ws.recv()
        for data in (b"\x00" * 5000, payload_binary(3000, 7), b"ABCD" * 2000):
            await send_logged(ws, log, cport, "client", data)
            await ws.recv()
    log.conn(cport, **ws_conn_facts(ws, port))


@register(
    "ws_deflate",
    "ws_deflate.pcap",
    "python websockets 17 with permessage-deflate (default parameters, context takeover on both sides): "
    "repetitive JSON chat text and compressible/incompressible binary, echoed by the server",
    "tcp port 9004",
)
def _ws_deflate(log: Log) -> None:
    async def main():
        server = await ws_server(9004, log, compression="deflate")
        await _deflate_conn(log, 9004, compression="deflate")
        server.close()
        await server.wait_closed()

    asyncio.run(main())


@register(
    "ws_deflate_no_context_takeover",
    "ws_deflate_no_context_takeover.pcap",
    "python websockets 17 permessage-deflate, two connections: one negotiates client_no_context_takeover, "
    "the other server_no_context_takeover; the same repetitive messages as ws_deflate",
    "tcp port 9005",
)
def _ws_deflate_nct(log: Log) -> None:
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    async def main():
        server = await ws_server(9005, log, compression="deflate")
        await _deflate_conn(
            log,
            9005,
            compression=None,
            extensions=[ClientPerMessageDeflateFactory(client_no_context_takeover=True)],
        )
        await _deflate_conn(
            log,
            9005,
            compression=None,
            extensions=[ClientPerMessageDeflateFactory(server_no_context_takeover=True)],
        )
        server.close()
        await server.wait_closed()

    asyncio.run(main())


CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]


@register(
    "ws_close_codes_client",
    "ws_close_codes_client.pcap",
    "python websockets 17: one connection per standard close code (1000-1003, 1007-1014), the client "
    "sends a text message, then closes with that code and reason 'client <code>'; the server echoes "
    "the close",
    "tcp port 9006",
)
def _ws_close_client(log: Log) -> None:
    from websockets.asyncio.client import connect

    async def main():
        server = await ws_server(9006, log)
        for code in CLOSE_CODES:
            async with connect("ws://127.0.0.1:9006/", compression=None, **connect_kw()) as ws:
                cport = ws.local_address[1]
                await send_logged(ws, log, cport, "client", f"will close with {code}")
                await ws.recv()
                await ws.close(code, f"client {code}")
            log.conn(cport, **ws_conn_facts(ws, 9006))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


@register(
    "ws_close_codes_server",
    "ws_close_codes_server.pcap",
    "python websockets 17: one connection per standard close code (1000-1003, 1007-1014), the client "
    "asks, the server closes with that code and reason 'server <code>', the client echoes the close",
    "tcp port 9007",
)
def _ws_close_server(log: Log) -> None:
    from websockets.asyncio.client import connect

    def reply(msg):
        return ("close", int(msg.split()[-1]), f"server {msg.split()[-1]}")

    async def main():
        server = await ws_server(9007, log, reply=reply)
        for code in CLOSE_CODES:
            async with connect("ws://127.0.0.1:9007/", compression=None, **connect_kw()) as ws:
                cport = ws.local_address[1]
                await send_logged(ws, log, cport, "client", f"close with {code}")
                await ws.wait_closed()
            log.conn(cport, **ws_conn_facts(ws, 9007))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


@register(
    "interleaved_9123",
    "interleaved_9123.pcap",
    "python websockets 17 on the non-standard port 9123: five concurrent clients (compression on for "
    "odd ones) whose messages interleave, random small delays; each closes 1000 itself",
    "tcp port 9123",
)
def _interleaved(log: Log) -> None:
    from websockets.asyncio.client import connect

    async def client(i: int) -> None:
        rnd = random.Random(i)
        await asyncio.sleep(0.05 * i)
        async with connect(
            "ws://127.0.0.1:9123/room", compression="deflate" if i % 2 else None, **connect_kw()
        ) as ws:
            cport = ws.local_address[1]
            for j in range(6):
                data = (
                    _chat_json(j, f"user{i}") if j % 3 else payload_binary(rnd.randint(10, 3000), i * 10 + j)
                )
                await send_logged(ws, log, cport, "client", data)
                await ws.recv()
                await asyncio.sleep(rnd.uniform(0.01, 0.15))
        log.conn(cport, **ws_conn_facts(ws, 9123))

    async def main():
        server = await ws_server(9123, log, compression="deflate")
        await asyncio.gather(*(client(i) for i in range(5)))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def _simple_exchange(
    log: Log, port: int, host: str = "127.0.0.1", compression: str | None = None, path: str = "/", **kw
) -> None:
    from websockets.asyncio.client import connect

    async def main():
        server = await ws_server(port, log, host=host, compression=compression)
        url_host = f"[{host}]" if ":" in host else host
        async with connect(
            f"ws://{url_host}:{port}{path}", compression=compression, **connect_kw(**kw)
        ) as ws:
            cport = ws.local_address[1]
            for data in ("hello", _chat_json(1, "bob"), payload_binary(2000, 5), "x" * 200):
                await send_logged(ws, log, cport, "client", data)
                await ws.recv()
            await ws.close(1000, "bye")
        log.conn(cport, **ws_conn_facts(ws, port))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


@register(
    "ipv6",
    "ipv6.pcap",
    "python websockets 17 over IPv6 loopback [::1]: text, JSON and binary echoed, client closes 1000 'bye'",
    "tcp port 9080",
)
def _ipv6(log: Log) -> None:
    _simple_exchange(log, 9080, host="::1")


@register(
    "any_interface_sll",
    "any_interface_sll.pcap",
    "recorded with tcpdump -i any (Linux cooked capture, SLL2 with tcpdump 4.99): python websockets 17, "
    "permessage-deflate, text, JSON and binary echoed, client closes 1000 'bye'",
    "tcp port 9081",
    iface="any",
)
def _any(log: Log) -> None:
    _simple_exchange(log, 9081, compression="deflate")


@register(
    "pcapng_format",
    "pcapng_format.pcapng",
    "pcapng file (tcpdump, converted by editcap -F pcapng): python websockets 17, permessage-deflate, "
    "text, JSON and binary echoed, client closes 1000 'bye'",
    "tcp port 9082",
    pcapng=True,
)
def _pcapng(log: Log) -> None:
    _simple_exchange(log, 9082, compression="deflate")


@register(
    "html_hostile",
    "html_hostile.pcap",
    "python websockets 17: messages, a User-Agent, an extra header, the path and the close reason carry "
    "HTML/JS-hostile text (<script>alert(1)</script>, attribute breakers, entities, RTL override, NUL)",
    "tcp port 9083",
)
def _hostile(log: Log) -> None:
    from websockets.asyncio.client import connect

    async def main():
        server = await ws_server(9083, log)
        async with connect(
            "ws://127.0.0.1:9083/%3Cscript%3Ealert(0)%3C/script%3E?q=%22%3E%3Cb%3E",
            compression=None,
            user_agent_header="<script>alert('ua')</script>",
            additional_headers={"X-Evil": "\"><img src=x onerror=alert('hdr')>"},
            **connect_kw(),
        ) as ws:
            cport = ws.local_address[1]
            for text in HOSTILE:
                await send_logged(ws, log, cport, "client", text)
                await ws.recv()
            await send_logged(ws, log, cport, "client", b"<script>alert('binary')</script>")
            await ws.recv()
            await ws.close(4001, "</td><script>alert('close')</script>")
        log.conn(cport, **ws_conn_facts(ws, 9083))
        server.close()
        await server.wait_closed()

    asyncio.run(main())


_MIDSTREAM_HANDSHAKE_KEYS = (
    "version",
    "draft",
    "http_status",
    "handshake_ok",
    "subprotocol",
    "extensions",
    "compression",
)


@register(
    "midstream",
    "midstream.pcap",
    "recording starts after the handshake: python websockets 17, no compression; the client connects, "
    "then tcpdump starts, then text/binary messages, a ping and a clean close 1000. Analyze with "
    "ports=[9090]; handshake facts are unknown and are left out of the expected connection",
    "tcp port 9090",
    self_recording=True,
    options={"ports": [9090]},
    notes="tshark needs the HTTP Upgrade to dissect WebSocket; none is in this capture",
    tshark=False,
)
def _midstream(log: Log, record) -> None:
    from websockets.asyncio.client import connect

    async def main():
        server = await ws_server(9090, log)
        async with connect("ws://127.0.0.1:9090/", compression=None, **connect_kw()) as ws:
            cport = ws.local_address[1]
            rec = record()
            await asyncio.to_thread(rec.__enter__)
            try:
                for data in ("first message seen", payload_binary(300, 3), payload_text(1000, 4)):
                    await send_logged(ws, log, cport, "client", data)
                    await ws.recv()
                await (await ws.ping(b"mid"))
                await ws.close(1000, "mid bye")
            finally:
                await asyncio.to_thread(rec.__exit__, None, None, None)
        facts = ws_conn_facts(ws, 9090)
        for k in _MIDSTREAM_HANDSHAKE_KEYS:
            facts.pop(k)
        log.conn(cport, **facts)
        server.close()
        await server.wait_closed()

    asyncio.run(main())


@register(
    "open_at_end",
    "open_at_end.pcap",
    "the recording stops while the connection is still open: python websockets 17, no compression, "
    "handshake, text and binary both ways, a ping; close frames and FIN come only after tcpdump stopped",
    "tcp port 9091",
    self_recording=True,
)
def _open_at_end(log: Log, record) -> None:
    from websockets.asyncio.client import connect

    async def main():
        server = await ws_server(9091, log)
        rec = record()
        await asyncio.to_thread(rec.__enter__)
        try:
            ws = await connect("ws://127.0.0.1:9091/stay", compression=None, **connect_kw())
            cport = ws.local_address[1]
            for data in ("still here", payload_binary(700, 8), payload_text(3000, 9)):
                await send_logged(ws, log, cport, "client", data)
                await ws.recv()
            await (await ws.ping(b"alive?"))
        finally:
            await asyncio.to_thread(rec.__exit__, None, None, None)
        await ws.close(1000, "after the capture")
        facts = ws_conn_facts(ws, 9091)
        facts.update(
            close_code_client=None,
            close_code_server=None,
            close_reason_client=None,
            close_reason_server=None,
            close_status="open-at-end",
            close_initiator=None,
        )
        log.conn(cport, **facts)
        server.close()
        await server.wait_closed()

    asyncio.run(main())


# ---- other implementations: aiohttp, node ws, ws@0.4 (hybi-08), chromium


async def _aiohttp_server(port: int, log: Log, handler_extra=None, compress: bool | int = True, routes=()):
    from aiohttp import WSMsgType, web

    async def ws_handler(request):
        ws = web.WebSocketResponse(compress=compress, autoping=True)
        await ws.prepare(request)
        cport = request.transport.get_extra_info("peername")[1]
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                out = json.dumps({"ack": len(msg.data), "echo": msg.data[:40]})
                await ws.send_str(out)
                log.sent(cport, "server", out)
            elif msg.type == WSMsgType.BINARY:
                out = msg.data[::-1]
                await ws.send_bytes(out)
                log.sent(cport, "server", out)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    for method, path, fn in routes:
        app.router.add_route(method, path, fn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner


@register(
    "aiohttp_compress",
    "aiohttp_compress.pcap",
    "aiohttp 3 server and aiohttp client with permessage-deflate (compress=15): text, JSON and binary; the "
    "server answers text with a JSON ack and binary reversed; a ping from the client; client closes "
    "1000 'aiohttp bye'",
    "tcp port 9010",
)
def _aiohttp(log: Log) -> None:
    import aiohttp

    async def main():
        runner = await _aiohttp_server(9010, log)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect("http://127.0.0.1:9010/ws", compress=15, autoping=True) as ws,
        ):
            cport = ws.get_extra_info("sockname")[1]
            ext = ws._response.headers.get("Sec-WebSocket-Extensions")
            for data in (
                "hello aiohttp",
                _chat_json(2, "carol"),
                b"\x10\x20" * 3000,
                payload_binary(500, 9),
                "ünïcödé ✓ " * 30,
            ):
                if isinstance(data, str):
                    await ws.send_str(data)
                else:
                    await ws.send_bytes(data)
                log.sent(cport, "client", data)
                await ws.receive()
            await ws.ping(b"aiohttp-ping")
            await asyncio.sleep(0.2)
            await ws.close(code=1000, message=b"aiohttp bye")
            log.conn(
                cport,
                server_port=9010,
                version=13,
                draft="rfc6455",
                http_status=101,
                handshake_ok=True,
                subprotocol=None,
                extensions=ext,
                compression=bool(ext),
                close_code_client=1000,
                close_code_server=ws.close_code,
                close_reason_client="aiohttp bye",
                close_status="clean",
                close_initiator="client",
            )
        await runner.cleanup()

    asyncio.run(main())


@register(
    "node_ws",
    "node_ws.pcap",
    "node `ws` 8 server (permessage-deflate) with two clients: a node `ws` 8 client (compression, "
    "subprotocol "
    "node.v1 chosen by the server, a ping, closes 1000 'node bye') and a python websockets 17 "
    "client without compression (closes 1001 'going away')",
    "tcp port 9020",
)
def _node_ws(log: Log) -> None:
    from websockets.asyncio.client import connect

    server = NodePeer(log, "ws_node.js", "server", "9020")
    try:
        server.wait_ready()
        client = NodePeer(log, "ws_node.js", "client", "9020")
        client.wait(30)

        async def py_client():
            async with connect("ws://127.0.0.1:9020/py", compression=None, **connect_kw()) as ws:
                cport = ws.local_address[1]
                for data in ("python to node", payload_binary(70000, 11)):
                    await send_logged(ws, log, cport, "client", data)
                    await ws.recv()
                await ws.close(1001, "going away")
            log.conn(cport, **ws_conn_facts(ws, 9020))

        asyncio.run(py_client())
        time.sleep(0.3)
    finally:
        server.stop()


@register(
    "hybi08_ws_legacy",
    "hybi08_ws_legacy.pcap",
    "npm ws@0.4.32 server and client speaking Sec-WebSocket-Version: 8 (hybi-08 framing, draft hybi-08): "
    "text and binary echoed, client closes 1000 'legacy bye'",
    "tcp port 9050",
)
def _legacy(log: Log) -> None:
    peer = NodePeer(log, "legacy_hybi.js", "9050")
    peer.wait(30)


def _raw_hybi_client(
    log: Log, port: int, version: int, draft: str, messages: list, close_reason: str
) -> None:
    s = raw_connect("127.0.0.1", port)
    cport = s.getsockname()[1]
    head, rest = hybi_handshake(s, "127.0.0.1", port, "/ws", version)
    status = http_status(head)
    buf = bytearray(rest)
    got_close = None
    for data in messages:
        op = 1 if isinstance(data, str) else 2
        s.sendall(ws_frame(op, data.encode() if op == 1 else data))
        log.sent(cport, "client", data)
        read_ws_frame(s, buf)
    s.sendall(ws_frame(8, struct.pack("!H", 1000) + close_reason.encode()))
    while got_close is None:
        op, payload = read_ws_frame(s, buf)
        if op == 8:
            got_close = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    s.close()
    log.conn(
        cport,
        server_port=port,
        version=version,
        draft=draft,
        http_status=status,
        handshake_ok=status == 101,
        subprotocol=None,
        extensions=None,
        compression=False,
        close_code_client=1000,
        close_code_server=got_close,
        close_reason_client=close_reason,
        close_status="clean",
        close_initiator="client",
    )


@register(
    "hybi07_aiohttp",
    "hybi07_aiohttp.pcap",
    "hand-written python client sending Sec-WebSocket-Version: 7 (hybi-07) to an aiohttp 3 server (which "
    "accepts 7, 8 and 13), no compression: text and binary, client closes 1000 'v7 bye'",
    "tcp port 9051",
)
def _hybi07(log: Log) -> None:
    async def main():
        runner = await _aiohttp_server(9051, log, compress=False)
        await asyncio.to_thread(
            _raw_hybi_client,
            log,
            9051,
            7,
            "hybi-07",
            ["hello hybi-07", payload_binary(200, 2), "second text"],
            "v7 bye",
        )
        await asyncio.sleep(0.2)
        await runner.cleanup()

    asyncio.run(main())


CHROMIUM_MESSAGES = [
    "hello from chromium",
    json.dumps({"type": "chat", "user": "browser", "text": "typed in a page " * 10}),
    "ünïcödé from the browser ✓",
]
CHROMIUM_BINARY = 1500  # bytes i % 251 for i in range(n), sent as an ArrayBuffer

CHROMIUM_PAGE = """<!doctype html><meta charset="utf-8"><title>ws</title><script>
const msgs = %s;
const ws = new WebSocket(%s);
ws.binaryType = "arraybuffer";
let n = 0;
function next() {
  if (n < msgs.length) { ws.send(msgs[n++]); return; }
  if (n === msgs.length) { n++; const b = new Uint8Array(%d);
                           for (let i = 0; i < b.length; i++) b[i] = i %% 251;
                           ws.send(b.buffer); return; }
  ws.close(1000, "page done");
}
ws.onopen = next;
ws.onmessage = next;
ws.onclose = (e) => { document.title = "closed " + e.code; };
</script>"""


def _chromium_exe() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def run_chromium(url: str, done: asyncio.Event, *flags: str, timeout: float = 60) -> None:
    """Headless Chromium loading `url` until `done` is set (the page's WebSocket closed)."""
    exe = _chromium_exe()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        *flags,
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(done.wait(), timeout)
        await asyncio.sleep(0.5)
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@register(
    "chromium_client",
    "chromium_client.pcap",
    "headless Chromium (Debian chromium package) as the browser client: a page served by aiohttp opens a "
    "WebSocket to the same aiohttp 3 server (compression negotiated), sends three texts and an "
    "ArrayBuffer, closes 1000 'page done'; the HTTP GETs for the page are in the capture too",
    "tcp port 9030",
)
def _chromium(log: Log) -> None:
    from aiohttp import web

    done = asyncio.Event()
    url = json.dumps("ws://127.0.0.1:9030/ws")
    page = CHROMIUM_PAGE % (json.dumps(CHROMIUM_MESSAGES), url, CHROMIUM_BINARY)

    async def index(request):
        return web.Response(text=page, content_type="text/html")

    async def favicon(request):
        return web.Response(status=204)

    async def main():
        nonlocal done
        done = asyncio.Event()
        from aiohttp import WSMsgType

        async def ws_handler(request):
            ws = web.WebSocketResponse(compress=True)
            await ws.prepare(request)
            cport = request.transport.get_extra_info("peername")[1]
            for m in CHROMIUM_MESSAGES:
                log.sent(cport, "client", m)
            log.sent(cport, "client", bytes(i % 251 for i in range(CHROMIUM_BINARY)))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    out = json.dumps({"ack": len(msg.data), "echo": msg.data[:40]})
                    await ws.send_str(out)
                    log.sent(cport, "server", out)
                elif msg.type == WSMsgType.BINARY:
                    out = msg.data[::-1]
                    await ws.send_bytes(out)
                    log.sent(cport, "server", out)
            ext = ws._headers.get("Sec-WebSocket-Extensions") if hasattr(ws, "_headers") else None
            ext = ws.headers.get("Sec-WebSocket-Extensions", ext)
            log.conn(
                cport,
                server_port=9030,
                version=13,
                draft="rfc6455",
                http_status=101,
                handshake_ok=True,
                subprotocol=None,
                extensions=ext,
                compression=bool(ext),
                close_code_client=1000,
                close_code_server=1000,
                close_reason_client="page done",
                close_status="clean",
                close_initiator="client",
            )
            done.set()
            return ws

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/favicon.ico", favicon)
        app.router.add_get("/ws", ws_handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 9030).start()
        try:
            await run_chromium("http://127.0.0.1:9030/", done)
        finally:
            await runner.cleanup()

    asyncio.run(main())


# ---- old drafts: hixie-75 / hixie-76 against npm websocket-driver

HIXIE76_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Host: 127.0.0.1:9041\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
    b"Origin: http://127.0.0.1:9041\r\n"
    b"\r\n"
    b"^n:ds[4U"
)
HIXIE76_CHALLENGE_RESPONSE = b"8jKS'y:G*Co,Wxa-"
HIXIE75_REQUEST = (
    b"GET /demo HTTP/1.1\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Host: 127.0.0.1:9040\r\n"
    b"Origin: http://127.0.0.1:9040\r\n"
    b"\r\n"
)
HIXIE_TEXTS = ["hello hixie", "ünïcödé ✓ über draft", "<b>not html</b>", ""]


def hixie_length_frame(payload: bytes) -> bytes:
    """A 0x80 length-prefixed frame: the length in 7-bit groups, high bit set on all but the last."""
    n, groups = len(payload), []
    while True:
        groups.append(n & 0x7F)
        n >>= 7
        if not n:
            break
    groups.reverse()
    return b"\x80" + bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]]) + payload


def _read_hixie_text(sock: socket.socket, buf: bytearray) -> bytes | None:
    """The next 0x00..0xFF frame's payload, or None for the 0xFF 0x00 closing frame."""
    while True:
        if len(buf) >= 2 and buf[0] == 0xFF and buf[1] == 0x00:
            del buf[:2]
            return None
        if buf and buf[0] == 0x00 and 0xFF in buf:
            end = buf.index(0xFF)
            out = bytes(buf[1:end])
            del buf[: end + 1]
            return out
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF")
        buf += chunk


def _hixie_client(log: Log, port: int, draft: str) -> None:
    s = raw_connect("127.0.0.1", port)
    cport = s.getsockname()[1]
    s.sendall(HIXIE76_REQUEST if draft == "hixie-76" else HIXIE75_REQUEST)
    head, rest = read_http_head(s)
    buf = bytearray(rest)
    if draft == "hixie-76":
        challenge = recv_exact(s, 16, buf)
        if challenge != HIXIE76_CHALLENGE_RESPONSE:
            raise RuntimeError(f"bad hixie-76 challenge response {challenge!r}")
    for text in HIXIE_TEXTS:
        s.sendall(b"\x00" + text.encode() + b"\xff")
        log.sent(cport, "client", text)
        _read_hixie_text(s, buf)
    # the server discards it, as the drafts say; no 0xFF inside: websocket-driver 0.7 ends a skipped
    # length-prefixed frame at the first 0xFF byte and echoes the rest as text
    blob = bytes(i % 255 for i in range(300))
    s.sendall(hixie_length_frame(blob))
    log.sent(cport, "client", blob)
    time.sleep(0.1)
    facts = dict(
        server_port=port,
        version=0 if draft == "hixie-76" else -1,
        draft=draft,
        http_status=http_status(head),
        handshake_ok=True,
        subprotocol=None,
        extensions=None,
        compression=False,
    )
    if draft == "hixie-76":
        s.sendall(b"\xff\x00")
        if _read_hixie_text(s, buf) is not None:
            raise RuntimeError("expected the server's closing frame")
        facts.update(
            close_code_client=1005, close_code_server=1005, close_status="clean", close_initiator="client"
        )
    else:  # hixie-75 has no closing handshake: the client just closes TCP
        facts.update(
            close_code_client=None, close_code_server=None, close_status="abnormal", close_initiator=None
        )
    s.close()
    log.conn(cport, **facts)


_HIXIE_NOTES = (
    "tshark 4.0 has no hixie-75/76 framing: after the 101 it decodes the 0x00...0xFF bytes as "
    "RFC 6455 frames (garbage), so no frames are listed"
)


@register(
    "hixie76_websocket_driver",
    "hixie76_websocket_driver.pcap",
    "hixie-76 (draft-hixie-thewebsocketprotocol-76 / hybi-00): hand-written python client sending the "
    "draft's own example handshake (Key1, Key2, 8-byte key3), npm websocket-driver 0.7 server "
    "(challenge response 8jKS'y:G*Co,Wxa-); 0x00..0xFF text frames echoed, one 0x80 length-prefixed "
    "binary frame from the client, closing frames 0xFF 0x00 both ways",
    "tcp port 9041",
    tshark=False,
    notes=_HIXIE_NOTES,
)
def _hixie76(log: Log) -> None:
    peer = NodePeer(log, "hixie_server.js", "9041")
    try:
        peer.wait_ready()
        _hixie_client(log, 9041, "hixie-76")
        time.sleep(0.3)
    finally:
        peer.stop()


@register(
    "hixie75_websocket_driver",
    "hixie75_websocket_driver.pcap",
    "hixie-75: hand-written python client (no keys, no version header), npm websocket-driver 0.7 server; "
    "0x00..0xFF text frames echoed, one 0x80 length-prefixed binary frame from the client; the "
    "client ends with a TCP FIN (hixie-75 has no closing frame)",
    "tcp port 9040",
    tshark=False,
    notes=_HIXIE_NOTES,
)
def _hixie75(log: Log) -> None:
    peer = NodePeer(log, "hixie_server.js", "9040")
    try:
        peer.wait_ready()
        _hixie_client(log, 9040, "hixie-75")
        time.sleep(0.3)
    finally:
        peer.stop()


# ---- abnormal ends and failed handshakes


def _abnormal_client(log: Log, port: int, how: str) -> None:
    s = raw_connect("127.0.0.1", port)
    cport = s.getsockname()[1]
    head, _ = hybi_handshake(s, "127.0.0.1", port, f"/{how}", 13)
    text = f"before {how}"
    s.sendall(ws_frame(1, text.encode()))
    log.sent(cport, "client", text)
    s.sendall(ws_frame(2, payload_binary(1000, 13)))
    log.sent(cport, "client", payload_binary(1000, 13))
    time.sleep(0.2)
    if how == "rst":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    else:
        s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while s.recv(65536):
                pass
        s.close()
    log.conn(
        cport,
        server_port=port,
        version=13,
        draft="rfc6455",
        http_status=http_status(head),
        handshake_ok=True,
        subprotocol=None,
        extensions=None,
        compression=False,
        close_code_client=None,
        close_code_server=None,
        close_status="abnormal",
        close_initiator=None,
    )


@register(
    "abnormal_ends",
    "abnormal_ends.pcap",
    "python websockets 17 server, two hand-written clients that never send a close frame: one ends with "
    "a TCP RST (SO_LINGER 0 close), the other with a FIN (shutdown) after which the server closes TCP "
    "without a close frame either",
    "tcp port 9060",
)
def _abnormal(log: Log) -> None:
    async def main():
        server = await ws_server(9060, log, reply=lambda m: None)
        await asyncio.to_thread(_abnormal_client, log, 9060, "rst")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(_abnormal_client, log, 9060, "fin")
        await asyncio.sleep(0.3)
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def _refused_client(log: Log, port: int, path: str, version: int, origin: str | None = None) -> None:
    s = raw_connect("127.0.0.1", port)
    cport = s.getsockname()[1]
    extra = f"Origin: {origin}\r\n" if origin else ""
    key = base64.b64encode(os.urandom(16)).decode()
    req = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    )
    s.sendall(req.encode())
    head, _ = read_http_head(s)
    time.sleep(0.1)
    s.close()
    facts = dict(
        server_port=port,
        http_status=http_status(head),
        handshake_ok=False,
        subprotocol=None,
        extensions=None,
        compression=False,
        close_code_client=None,
        close_code_server=None,
        close_status="handshake-failed",
        close_initiator=None,
    )
    if version == 13:
        facts.update(version=13, draft="rfc6455")
    log.conn(cport, **facts)


@register(
    "handshake_failed",
    "handshake_failed.pcap",
    "tornado 6 server refusing upgrades: 404 for an unknown path, 403 for a foreign Origin, 426 Upgrade "
    "Required for Sec-WebSocket-Version: 9 (version/draft of that one are not asserted); then one "
    "successful version-13 connection (text echoed, client closes 1000) for contrast",
    "tcp port 9070",
)
def _handshake_failed(log: Log) -> None:
    import tornado.web
    import tornado.websocket

    class Echo(tornado.websocket.WebSocketHandler):
        def open(self):
            self.cport = self.ws_connection.stream.socket.getpeername()[1]

        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))
            log.sent(self.cport, "server", message)

    async def main():
        app = tornado.web.Application([(r"/ws", Echo)])
        server = app.listen(9070, address="127.0.0.1")
        await asyncio.to_thread(_refused_client, log, 9070, "/nope", 13)
        await asyncio.to_thread(_refused_client, log, 9070, "/ws", 13, "http://evil.example")
        await asyncio.to_thread(_refused_client, log, 9070, "/ws", 9)
        await asyncio.to_thread(_raw_hybi_client, log, 9070, 13, "rfc6455", ["tornado says hi"], "ok bye")
        await asyncio.sleep(0.3)
        server.stop()

    asyncio.run(main())


# ---- the README's demo capture


DEMO_PORT = 8765
DEMO_SECONDS = 75


@dataclass(frozen=True)
class DemoClient:
    """One demo user: when it connects, what it does, how it ends."""

    name: str
    start: float
    compression: bool
    chats: int
    uploads: tuple[int, ...] = ()
    ending: str = "client"  # client | server | rst | stay (closed by the server's shutdown)
    code: int = 1000
    reason: str = ""
    fragmented: bool = False


DEMO_CLIENTS = [
    DemoClient("alice", 0.5, True, 12, (), "client", 1000, "see you"),
    DemoClient("bob", 3.0, False, 3, (1024, 20000, 150000), "client", 1001, "navigating away"),
    DemoClient("carol", 6.0, True, 6, (), "server", 1008, "policy violation: banned word"),
    DemoClient("dave", 10.0, False, 4, (4096,), "server", 1011, "internal error while saving"),
    DemoClient("heidi", 12.0, True, 25, (), "stay"),
    DemoClient("eve", 18.0, True, 5, (), "server", 4000, "session expired"),
    DemoClient("frank", 24.0, False, 6, (2048, 65536), "client", 4001, "user logout"),
    DemoClient("grace", 30.0, False, 4, (500,), "rst"),
    DemoClient("ivan", 36.0, True, 3, (30000, 8000, 120000), "client", 1000, "upload done"),
    DemoClient("judy", 44.0, True, 8, (), "client", 1000, "", fragmented=True),
    DemoClient("mallory", 50.0, False, 10, (), "stay"),
    DemoClient("oscar", 58.0, True, 4, (700,), "client", 4321, "app-specific goodbye"),
]


def _demo_server_reply(msg):
    if isinstance(msg, bytes):
        return json.dumps({"type": "stored", "bytes": len(msg), "sha256": sha(msg)[:16]})
    data = json.loads(msg)
    if data.get("type") == "close-me":
        return ("close", data["code"], data["reason"])
    return json.dumps({"type": "ack", "seq": data.get("seq"), "user": data.get("user"), "ok": True})


async def _demo_client(c: DemoClient, log: Log, t0: float) -> None:
    from websockets.asyncio.client import connect

    rnd = random.Random(c.name)
    await asyncio.sleep(max(0.0, t0 + c.start - time.monotonic()))
    async with connect(
        f"ws://127.0.0.1:{DEMO_PORT}/chat?user={c.name}",
        compression="deflate" if c.compression else None,
        user_agent_header=f"demo-{c.name}/1.0",
        **connect_kw(),
    ) as ws:
        cport = ws.local_address[1]
        uploads = list(c.uploads)
        try:
            for i in range(c.chats):
                words = rnd.choices(
                    [
                        "hello",
                        "ok",
                        "lunch?",
                        "ship it",
                        "the build is green",
                        "lgtm",
                        "who broke main",
                        "brb",
                        "café ☕",
                        "deploying",
                        "rollback!",
                    ],
                    k=rnd.randint(1, 12),
                )
                msg = json.dumps(
                    {"type": "chat", "seq": i, "user": c.name, "room": "general", "text": " ".join(words)}
                )
                if c.fragmented and i % 3 == 1:
                    await send_logged(ws, log, cport, "client", [msg[:10], msg[10:30], msg[30:]])
                else:
                    await send_logged(ws, log, cport, "client", msg)
                await ws.recv()
                if uploads and i % 2 == 0:
                    await send_logged(
                        ws, log, cport, "client", payload_binary(uploads.pop(0), hash(c.name) & 0xFFFF)
                    )
                    await ws.recv()
                if i % 4 == 3:
                    await (await ws.ping(f"{c.name}-{i}".encode()))
                await asyncio.sleep(rnd.uniform(0.3, 3.5) if c.ending != "stay" else rnd.uniform(1.0, 2.5))
            for size in uploads:
                await send_logged(ws, log, cport, "client", payload_binary(size, size))
                await ws.recv()
            if c.ending == "client":
                await ws.close(c.code, c.reason)
            elif c.ending == "server":
                await send_logged(
                    ws,
                    log,
                    cport,
                    "client",
                    json.dumps({"type": "close-me", "code": c.code, "reason": c.reason}),
                )
                await ws.wait_closed()
            elif c.ending == "rst":
                sock = ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                ws.transport.abort()
                await asyncio.sleep(0.2)
            else:  # stay until the server shuts down (1001 going away)
                await ws.wait_closed()
        finally:
            if c.ending == "rst":
                log.conn(
                    cport,
                    server_port=DEMO_PORT,
                    version=13,
                    draft="rfc6455",
                    http_status=101,
                    handshake_ok=True,
                    subprotocol=None,
                    extensions=ws.response.headers.get("Sec-WebSocket-Extensions"),
                    compression=c.compression,
                    close_code_client=None,
                    close_code_server=None,
                    close_status="abnormal",
                    close_initiator=None,
                )
    if c.ending != "rst":
        log.conn(cport, **ws_conn_facts(ws, DEMO_PORT))


def _demo_refused(log: Log) -> None:
    _refused_client(log, DEMO_PORT, "/admin", 13)


@register(
    "demo",
    "demo.pcapng",
    f"README quick-start demo, about {DEMO_SECONDS} s: a python websockets 17 chat server on port "
    f"{DEMO_PORT} with {len(DEMO_CLIENTS)} clients coming and going (JSON chat, binary uploads up to 150 kB, "
    "keepalive pings every 10 s plus client pings, permessage-deflate on some connections, a fragmented "
    "message), closes 1000/1001/1008/1011/4000/4001/4321, an RST, a 403 refused handshake, and two "
    "clients still connected until the server shuts down (1001)",
    f"tcp port {DEMO_PORT}",
    pcapng=True,
)
def _demo(log: Log) -> None:
    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Response

    def process_request(conn, request):
        if request.path.startswith("/admin"):
            return Response(403, "Forbidden", Headers({"Content-Type": "text/plain"}), b"admins only\n")
        return None

    async def handler(ws):
        cport = ws.remote_address[1]
        try:
            async for msg in ws:
                out = _demo_server_reply(msg)
                if isinstance(out, tuple):
                    await ws.close(out[1], out[2])
                    break
                await send_logged(ws, log, cport, "server", out)
        except ConnectionClosed:
            pass

    async def main():
        server = await serve(
            handler,
            "127.0.0.1",
            DEMO_PORT,
            compression="deflate",
            ping_interval=10,
            ping_timeout=10,
            max_size=None,
            process_request=process_request,
            server_header="demo-chat/1.0",
        )
        t0 = time.monotonic()

        async def refused():
            await asyncio.sleep(40)
            await asyncio.to_thread(_demo_refused, log)

        tasks = [asyncio.create_task(_demo_client(c, log, t0)) for c in DEMO_CLIENTS]
        tasks.append(asyncio.create_task(refused()))
        await asyncio.sleep(max(0.0, t0 + DEMO_SECONDS - time.monotonic()))
        server.close()  # the clients still connected get 1001 going away
        await server.wait_closed()
        await asyncio.gather(*tasks)

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# main


def _incident(out: Path) -> dict:
    """incident.pcapng, made by make_incident.py (which reuses this module's recorders)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import make_incident

    return make_incident.build(out)


SCENARIOS["incident"] = _incident


def _add_tls_scenarios() -> None:
    """The wss:// scenarios live in make_tls.py and the HTTP/2 ones in make_h2.py (which import this
    module's helpers, so they are imported here, when the scenarios are run, not at import time)."""
    import make_h2
    import make_tls

    SCENARIOS.update(make_tls.SCENARIOS)
    SCENARIOS.update(make_h2.SCENARIOS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--out", default=str(HERE), help="output folder (default: captures/)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--no-install", action="store_true", help="do not install missing tools")
    args = ap.parse_args(argv)
    _add_tls_scenarios()
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if os.geteuid() != 0:
        print("make_captures.py needs root (tcpdump on the loopback interface)", file=sys.stderr)
        return 2
    if not args.no_install:
        ensure_tools()
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    out = Path(args.out)
    failed = []
    for name in names:
        t0 = time.time()
        try:
            exp = SCENARIOS[name](out)
        except Exception as e:  # report and go on with the other scenarios
            failed.append(name)
            print(f"FAILED {name}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        print(
            f"{name}: {len(exp['connections'])} connections, {len(exp['messages'])} messages, "
            f"{len(exp.get('frames') or [])} tshark frames ({time.time() - t0:.1f} s)"
        )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
