"""The RFC 8441 scenarios of the capture corpus: WebSockets over HTTP/2 streams (extended CONNECT).

    python captures/make_captures.py --only h2c_hypercorn,h2_tls_hypercorn    (registered there)

The server is hypercorn 0.18 (an ASGI app with a websocket route; hypercorn sends
SETTINGS_ENABLE_CONNECT_PROTOCOL=1 and negotiates permessage-deflate with wsproto) or node's http2
module; the clients are written here on the `h2` library (one TCP connection, several WebSocket
streams at once, framed with wsproto's FrameProtocol), a node http2 client, or headless Chromium.
The peers run as subprocesses of this file (`make_h2.py peer server|client ...`) and print what they
sent as JSON lines. Every WebSocket stream is one expected connection, keyed by client port and
h2_stream_id. tshark 4.0 does not dissect WebSocket inside HTTP/2, so there are no tshark frames: the
generator checks with tshark instead that the HTTP/2 DATA bytes per stream and direction are those the
client counted, and that the CONNECT streams are the ones the programs logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from make_captures import (  # noqa: E402
    CHROMIUM_BINARY,
    CHROMIUM_MESSAGES,
    CHROMIUM_PAGE,
    CONN_KEYS,
    Log,
    NodePeer,
    Peer,
    _chat_json,
    message_record,
    payload_binary,
    run_chromium,
    tcpdump,
)
from make_tls import (  # noqa: E402
    IANA,
    TLS_CONN_KEYS,
    make_cert,
    scenario_registry,
    tls_version_name,
)
from tshark_frames import tshark_fields, tshark_h2_frames  # noqa: E402

H2_CONN_KEYS = ("h2_stream_id",)
SNI = "localhost"

# --------------------------------------------------------------------------------------------
# the peers' logs


def emit(rec: dict) -> None:
    print(json.dumps(rec), flush=True)


def message(client_port: int, sender: str, data: str | bytes, **where: Any) -> dict:
    """A message log line with where it went: h2_stream_id (client) or path (server)."""
    return {"event": "message", **message_record(client_port, sender, data, **where)}


class H2Log(Log):
    """The peers' JSON lines. A WebSocket stream is keyed by (client_port, h2_stream_id); the server
    does not know stream ids, so its records name the path, which the client's records map to the
    stream (paths are unique per TCP connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: dict[tuple[int, int], dict] = {}
        self.server_recs: list[dict] = []
        self.msgs_with_sid: list[dict] = []

    def record(self, rec: dict) -> None:
        ev = rec.pop("event")
        with self.lock:
            if ev == "message" and "h2_stream_id" in rec:
                self.msgs_with_sid.append(rec)
            elif ev == "message" or ev == "server":
                self.server_recs.append({"event": ev, **rec})
            elif ev == "stream":
                key = (rec["client_port"], rec["h2_stream_id"])
                self.streams.setdefault(key, {}).update(rec)
            elif ev == "tcp":  # a TCP connection's facts (TLS), merged into its streams at the end
                self.conns.setdefault(rec["client_port"], {}).update(rec)

    def stream_of(self, client_port: int, path: str) -> int:
        for (port, sid), s in self.streams.items():
            if port == client_port and s.get("path") == path:
                return sid
        raise RuntimeError(f"no stream of client port {client_port} has the path {path}")

    def messages_in_order(self) -> list[dict]:
        """Client messages with their stream ids, server messages with the stream of their path."""
        out = [dict(m) for m in self.msgs_with_sid]
        for r in self.server_recs:
            if r["event"] == "message":
                m = {k: v for k, v in r.items() if k not in ("event", "path")}
                m["h2_stream_id"] = self.stream_of(r["client_port"], r["path"])
                out.append(m)
        keys = ("client_port", "h2_stream_id", "sender", "type", "size", "sha256", "text_prefix")
        return [{k: m[k] for k in keys} for m in out]


# --------------------------------------------------------------------------------------------
# the hypercorn server peer


PAGE_WS = "/ws/page"


def _accepted(scope: dict) -> dict:
    """The HTTP version and the extensions hypercorn answered to the offer of `scope`, computed as
    hypercorn 0.18 does (ws_stream.Handshake.accept: wsproto's server_extensions_handshake with
    PerMessageDeflate())."""
    from wsproto.extensions import PerMessageDeflate
    from wsproto.handshake import server_extensions_handshake
    from wsproto.utilities import split_comma_header

    offer = [v for k, v in scope["headers"] if k.lower() == b"sec-websocket-extensions"]
    accepts = (
        server_extensions_handshake(split_comma_header(offer[0]), [PerMessageDeflate()]) if offer else None
    )
    return {
        "http_version": scope["http_version"],
        "extensions_offered": offer[0].decode() if offer else None,
        "extensions": accepts.decode() if accepts else None,
    }


def asgi_app(page: str | None) -> Callable[..., Any]:
    """The ASGI app: GET / (the Chromium page, or a text), GET /hello; WebSocket routes: /refuse*
    answers 403 (the ASGI websocket.http.response extension), others echo (text: a JSON ack, binary:
    reversed) and the text "close please" makes the server close 4001 'server 4001'."""

    async def http(scope: dict, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        path = scope["path"]
        if path == "/" and page is not None:
            status, ctype, body = 200, b"text/html; charset=utf-8", page.encode()
        elif path in ("/", "/hello"):
            status, ctype, body = 200, b"text/plain", b"hello over HTTP/2\n"
        else:
            status, ctype, body = 404, b"text/plain", b"no\n"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": body})

    async def websocket(scope: dict, receive: Any, send: Any) -> None:
        port, path = scope["client"][1], scope["path"]
        await receive()  # websocket.connect
        if path.startswith("/refuse"):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": b"forbidden\n"})
            emit({"event": "server", "client_port": port, "path": path, "refused": 403})
            return
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": "chat.v1" if "chat.v1" in offered else None})
        if path == PAGE_WS:  # a browser: what it offered and sent is known only here
            emit({"event": "server", "client_port": port, "path": path, **_accepted(scope)})
        while True:
            ev = await receive()
            if path == PAGE_WS and ev["type"] == "websocket.receive":
                emit(
                    message(
                        port, "client", ev["text"] if ev.get("text") is not None else ev["bytes"], path=path
                    )
                )
            if ev["type"] == "websocket.disconnect":
                emit({"event": "server", "client_port": port, "path": path, "disconnect": ev.get("code")})
                return
            text, data = ev.get("text"), ev.get("bytes")
            if text == "close please":
                await send({"type": "websocket.close", "code": 4001, "reason": "server 4001"})
                emit({"event": "server", "client_port": port, "path": path, "closed": 4001})
                return
            out: str | bytes = (
                json.dumps({"ack": len(text), "echo": text[:40]}) if text is not None else data[::-1]
            )
            await send(
                {"type": "websocket.send", "text": out}
                if isinstance(out, str)
                else {"type": "websocket.send", "bytes": out}
            )
            emit(message(port, "server", out, path=path))

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                ev = await receive()
                kind = ev["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await (http if scope["type"] == "http" else websocket)(scope, receive, send)

    return app


def _server_peer(args: argparse.Namespace) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.accesslog = None
    config.errorlog = "-"
    if args.cert:
        config.certfile, config.keyfile = args.cert, args.key
        config.alpn_protocols = ["h2", "http/1.1"]
    page = None
    if args.page:
        page = CHROMIUM_PAGE % (
            json.dumps(CHROMIUM_MESSAGES),
            f'"wss://" + location.host + "{PAGE_WS}"',
            CHROMIUM_BINARY,
        )

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.ensure_future(serve(asgi_app(page), config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        print("READY", flush=True)
        await task

    asyncio.run(main())


# --------------------------------------------------------------------------------------------
# the h2 client peer: several WebSockets on one HTTP/2 connection


class WsStream:
    """One RFC 8441 WebSocket on an HTTP/2 stream, client side: wsproto's FrameProtocol frames and
    parses it (masking, permessage-deflate); DATA bytes are counted both ways for the tshark check."""

    def __init__(self, port: int, sid: int, path: str, deflate: bool, subprotocols: list[str]) -> None:
        from wsproto.extensions import PerMessageDeflate
        from wsproto.frame_protocol import FrameProtocol

        self.port, self.sid, self.path = port, sid, path
        self.pmd = PerMessageDeflate() if deflate else None
        self.proto = FrameProtocol(client=True, extensions=[])
        self.subprotocols = subprotocols
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.received: list[str | bytes] = []
        self.partial: list[Any] = []
        self.close_sent: tuple[int, str] | None = None
        self.close_rcvd: tuple[int, str] | None = None
        self.initiator: str | None = None
        self.data_sent = 0
        self.data_rcvd = 0
        self.ended = False  # END_STREAM from the server
        self.reset: int | None = None
        # answer the server's close frame with one (hypercorn 0.18 forgets a stream once it has sent
        # END_STREAM, which it does right after its close frame: DATA on it then, even an empty
        # END_STREAM one, makes it drop the whole connection, a KeyError in H2Protocol._handle_events)
        self.answer_close = True

    def request_headers(self, authority: str, scheme: str) -> list[tuple[str, str]]:
        h = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", scheme),
            (":path", self.path),
            (":authority", authority),
            ("sec-websocket-version", "13"),
            ("origin", f"{scheme}://{authority}"),
            ("user-agent", "make_h2.py (python h2)"),
        ]
        if self.pmd is not None:
            h.append(("sec-websocket-extensions", f"{self.pmd.name}; {self.pmd.offer()}"))
        if self.subprotocols:
            h.append(("sec-websocket-protocol", ", ".join(self.subprotocols)))
        return h

    def answered(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers
        ext = headers.get("sec-websocket-extensions")
        if self.pmd is not None and ext:
            from wsproto.frame_protocol import FrameProtocol

            self.pmd.finalize(ext)  # before the FrameProtocol is made: it keeps only enabled extensions
            self.proto = FrameProtocol(client=True, extensions=[self.pmd])

    def feed(self, data: bytes) -> bytes:
        """Frames received; returns what to send back (a close answering the server's)."""
        from wsproto.frame_protocol import Opcode

        self.data_rcvd += len(data)
        if self.status is None or not 200 <= self.status < 300:  # a refusal's body: no frames
            return b""
        self.proto.receive_bytes(data)
        reply = b""
        for frame in self.proto.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                self.partial.append(frame.payload)
                if frame.message_finished:
                    parts = self.partial
                    self.received.append("".join(parts) if isinstance(parts[0], str) else b"".join(parts))
                    self.partial = []
            elif frame.opcode is Opcode.CLOSE:
                code, reason = frame.payload
                self.close_rcvd = (int(code), reason or "")
                if self.close_sent is None:
                    self.initiator = "server"
                    if self.answer_close:
                        self.close_sent = self.close_rcvd
                        reply += bytes(self.proto.close(code, reason))
        return reply

    def facts(self, server_port: int, transport: str) -> dict:
        ok = self.status is not None and 200 <= self.status < 300
        facts: dict[str, Any] = {
            "event": "stream",
            "client_port": self.port,
            "h2_stream_id": self.sid,
            "path": self.path,
            "server_port": server_port,
            "transport": transport,
            "version": 13,
            "draft": "rfc6455",
            "http_status": self.status,
            "handshake_ok": ok,
            "subprotocol": self.headers.get("sec-websocket-protocol") if ok else None,
            "extensions": self.headers.get("sec-websocket-extensions") if ok else None,
            "compression": bool(ok and self.headers.get("sec-websocket-extensions")),
            "data_sent": self.data_sent,
            "data_rcvd": self.data_rcvd,
            "reset": self.reset,
        }
        if not ok:
            return facts | {
                "close_code_client": None,
                "close_code_server": None,
                "close_status": "handshake-failed",
                "close_initiator": None,
            }
        sent_by_client = self.close_sent
        sent_by_server = self.close_rcvd
        facts |= {
            "close_code_client": sent_by_client[0] if sent_by_client else None,
            "close_code_server": sent_by_server[0] if sent_by_server else None,
            "close_reason_client": sent_by_client[1] if sent_by_client else None,
            "close_reason_server": sent_by_server[1] if sent_by_server else None,
            "close_status": "clean" if sent_by_client and sent_by_server else "half-closed",
            "close_initiator": self.initiator,
        }
        return facts


class H2Client:
    """A blocking HTTP/2 client connection on the `h2` library."""

    def __init__(self, sock: socket.socket, authority: str, scheme: str) -> None:
        import h2.config
        import h2.connection

        self.sock = sock
        self.port = sock.getsockname()[1]
        self.authority, self.scheme = authority, scheme
        # validate_outbound_headers off: the refused scenario sends :protocol to a server that did
        # not enable it (h2 would refuse to)
        cfg = h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False
        )
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        self.ws: dict[int, WsStream] = {}
        self.plain: dict[int, dict] = {}
        self.connect_enabled: bool | None = None
        self.settings_seen = False
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self) -> None:
        import h2.events
        import h2.settings

        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise ConnectionError("the server closed the TCP connection")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings_seen = True
                c = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                if c is not None:
                    self.connect_enabled = c.new_value == 1
            elif isinstance(ev, h2.events.ResponseReceived):
                headers = {k: v for k, v in ev.headers}
                status = int(headers.pop(":status"))
                if ev.stream_id in self.ws:
                    self.ws[ev.stream_id].answered(status, headers)
                else:
                    self.plain[ev.stream_id]["status"] = status
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id in self.ws:
                    reply = self.ws[ev.stream_id].feed(ev.data)
                    if reply:
                        self.send(ev.stream_id, reply)
                else:
                    self.plain[ev.stream_id]["body"] += ev.data
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in self.ws:
                    self.ws[ev.stream_id].ended = True
                else:
                    self.plain[ev.stream_id]["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if ev.stream_id in self.ws:
                    self.ws[ev.stream_id].reset = int(ev.error_code)
                    self.ws[ev.stream_id].ended = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()

    def until(self, cond: Callable[[], bool], timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("h2 client: timed out waiting")
            self.pump()

    def send(self, sid: int, data: bytes) -> None:
        """DATA within the flow-control windows (waits for WINDOW_UPDATEs)."""
        view = memoryview(data)
        while view:
            n = min(len(view), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if n == 0:
                self.flush()
                self.pump()
                continue
            self.conn.send_data(sid, bytes(view[:n]))
            if sid in self.ws:
                self.ws[sid].data_sent += n
            view = view[n:]
        self.flush()

    def open_ws(self, path: str, deflate: bool = False, subprotocols: list[str] | None = None) -> WsStream:
        sid = self.conn.get_next_available_stream_id()
        ws = WsStream(self.port, sid, path, deflate, subprotocols or [])
        self.ws[sid] = ws
        self.conn.send_headers(sid, ws.request_headers(self.authority, self.scheme))
        self.flush()
        return ws

    def get(self, path: str) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.plain[sid] = {"status": None, "body": b"", "ended": False}
        headers = [
            (":method", "GET"),
            (":scheme", self.scheme),
            (":path", path),
            (":authority", self.authority),
        ]
        self.conn.send_headers(sid, headers, end_stream=True)
        self.flush()
        return sid

    def ws_send(self, ws: WsStream, data: str | bytes) -> None:
        self.send(ws.sid, bytes(ws.proto.send_data(data)))
        emit(message(self.port, "client", data, h2_stream_id=ws.sid))

    def ws_close(self, ws: WsStream, code: int, reason: str) -> None:
        ws.close_sent, ws.initiator = (code, reason), "client"
        self.send(ws.sid, bytes(ws.proto.close(code, reason)))


def client_socket(args: argparse.Namespace) -> tuple[socket.socket, dict]:
    raw = socket.create_connection(("127.0.0.1", args.port), timeout=15)
    if not args.cert:
        return raw, {"transport": "h2c"}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(args.cert)
    ctx.keylog_filename = args.keylog
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(raw, server_hostname=SNI)
    cipher = sock.cipher()
    facts = {
        "transport": "h2",
        "tls_version": tls_version_name(sock.version()),
        "tls_cipher": IANA.get(cipher[0], cipher[0]) if cipher else None,
        "sni": SNI,
        "alpn": sock.selected_alpn_protocol(),
        "decrypted": True,
    }
    if facts["alpn"] != "h2":
        raise RuntimeError(f"ALPN chose {facts['alpn']}, not h2")
    return sock, facts


def _multiplexed(c: H2Client) -> None:
    """Three WebSockets at once on one connection (deflate / subprotocol / a big binary), messages
    interleaved across them, a plain GET in the middle; A and C closed 1000 by the client, B 4001 by
    the server."""
    c.until(lambda: c.connect_enabled is not None or c.settings_seen)
    if not c.connect_enabled:
        raise RuntimeError("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1")
    a = c.open_ws("/ws/a", deflate=True)
    b = c.open_ws("/ws/b", subprotocols=["chat.v1", "chat.v2"])
    cc = c.open_ws("/ws/c")
    streams = (a, b, cc)
    c.until(lambda: all(s.status is not None for s in streams))
    if any(s.status != 200 for s in streams):
        raise RuntimeError(f"WebSocket answers {[s.status for s in streams]}")
    plan: dict[int, list[str | bytes]] = {
        a.sid: ["hello stream A " * 4, _chat_json(1, "h2a"), payload_binary(3000, 1), "compress me " * 200],
        b.sid: ["hello stream B", payload_binary(700, 2), _chat_json(2, "h2b")],
        cc.sid: ["hello stream C", payload_binary(40000, 3), "x" * 126, payload_binary(0, 4)],
    }
    get_sid = None
    for i in range(4):
        for s in streams:
            if i < len(plan[s.sid]):
                c.ws_send(s, plan[s.sid][i])
        if i == 1:
            get_sid = c.get("/hello")
        c.until(lambda i=i: all(len(s.received) >= min(i + 1, len(plan[s.sid])) for s in streams))
    assert get_sid is not None
    c.until(lambda: c.plain[get_sid]["ended"])
    b.answer_close = False
    c.ws_send(b, "close please")
    c.until(lambda: b.close_rcvd is not None)  # stream 3 left half-closed: see WsStream.answer_close
    c.ws_close(a, 1000, "client bye")
    c.ws_close(cc, 1000, "stream C done")
    c.until(lambda: a.close_rcvd is not None and cc.close_rcvd is not None)
    # no END_STREAM from the client: see HYPERCORN_ENDS


def _refused(c: H2Client) -> None:
    """A CONNECT the app refuses (403), then a normal one for contrast, closed 1000 by the client."""
    c.until(lambda: c.settings_seen)
    if not c.connect_enabled:
        raise RuntimeError("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1")
    r = c.open_ws("/refuse/me", deflate=True)
    c.until(lambda: r.ended)
    ok = c.open_ws("/ws/after-refusal")
    c.until(lambda: ok.status is not None)
    c.ws_send(ok, "still welcome?")
    c.until(lambda: len(ok.received) == 1)
    c.ws_close(ok, 1000, "bye")
    c.until(lambda: ok.close_rcvd is not None)


def _not_enabled(c: H2Client) -> None:
    """An extended CONNECT to a server whose SETTINGS do not enable it (sent anyway)."""
    c.until(lambda: c.settings_seen)
    if c.connect_enabled:
        raise RuntimeError("this server enables extended CONNECT")
    r = c.open_ws("/not-enabled")
    with contextlib.suppress(ConnectionError):
        c.until(lambda: r.ended or r.status is not None or c.closed, timeout=5)


PLANS = {"multiplexed": _multiplexed, "refused": _refused, "not-enabled": _not_enabled}


def _client_peer(args: argparse.Namespace) -> None:
    sock, tcp_facts = client_socket(args)
    c = H2Client(sock, f"{SNI}:{args.port}", "https" if args.cert else "http")
    try:
        PLANS[args.plan](c)
    finally:
        for ws in c.ws.values():
            emit(ws.facts(args.port, tcp_facts["transport"]))
        emit({"event": "tcp", "client_port": c.port, **tcp_facts})
        with contextlib.suppress(OSError):
            c.conn.close_connection()
            c.flush()
            time.sleep(0.2)
        sock.close()


def peer_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--keylog")
    ap.add_argument("--page", action="store_true")
    ap.add_argument("--plan", choices=sorted(PLANS), default="multiplexed")
    args = ap.parse_args(argv)
    (_server_peer if args.role == "server" else _client_peer)(args)


def py_peer(log: Log, *args: str, prefix: tuple[str, ...] = ()) -> Peer:
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    return Peer(log, [*prefix, sys.executable, str(Path(__file__).resolve()), "peer", *args], env)


@contextlib.contextmanager
def running(peer: Peer) -> Iterator[Peer]:
    try:
        peer.wait_ready()
        yield peer
        time.sleep(0.3)
    finally:
        peer.stop()


# --------------------------------------------------------------------------------------------
# expected files


def _ws_connects(frames: list[dict]) -> set[tuple[int, int]]:
    return {
        (f["client_port"], f["stream_id"]) for f in frames if f["type"] == 1 and f["protocol"] == "websocket"
    }


def _data_bytes(frames: list[dict]) -> dict[tuple[int, int, str], int]:
    out: dict[tuple[int, int, str], int] = {}
    for f in frames:
        if f["type"] == 0:
            key = (f["client_port"], f["stream_id"], f["sender"])
            out[key] = out.get(key, 0) + f["length"]
    return out


def check_with_tshark(log: H2Log, h2frames: list[dict], counted: bool = True) -> list[str]:
    """The CONNECT streams tshark sees are the logged ones; with `counted`, each WebSocket stream's
    DATA bytes per direction are what the client counted (sent, and received before padding:
    none of these servers pads)."""
    errors = []
    seen, logged = _ws_connects(h2frames), set(log.streams)
    if seen != logged:
        errors.append(f"extended CONNECT streams: tshark {sorted(seen)}, logged {sorted(logged)}")
    data = _data_bytes(h2frames)
    for (port, sid), s in sorted(log.streams.items()) if counted else ():
        got = (data.get((port, sid, "client"), 0), data.get((port, sid, "server"), 0))
        if got != (s["data_sent"], s["data_rcvd"]):
            errors.append(
                f"{port}/{sid}: DATA bytes (client, server) tshark {got}, client counted "
                f"{(s['data_sent'], s['data_rcvd'])}"
            )
    return errors


def finish_h2(
    name: str,
    path: Path,
    description: str,
    log: H2Log,
    *,
    server_ports: set[int],
    keylog: Path | None = None,
    problems: list[dict] | None = None,
    notes: str = "",
    counted: bool = True,
    tcp_rows: bool = False,
) -> dict:
    """Write <name>.expected.json: one connection per WebSocket stream (client port, h2_stream_id),
    the TLS facts of its TCP connection, and the messages with their stream ids; checked against
    tshark's HTTP/2 frames first. `tcp_rows`: TCP connections without a WebSocket stream (Chromium's)
    are rows too, with their TLS facts only."""
    tls = keylog is not None
    h2frames = tshark_h2_frames(path, server_ports, tls=tls, keylog=keylog)
    errors = check_with_tshark(log, h2frames, counted)
    if errors:
        raise RuntimeError(f"{name}: the programs' logs and tshark disagree:\n  " + "\n  ".join(errors))
    conns = []
    for (port, _sid), s in sorted(log.streams.items()):
        tcp = log.conns.get(port, {})
        conns.append(
            {k: s[k] for k in (*CONN_KEYS, "transport", *H2_CONN_KEYS) if k in s}
            | {k: tcp[k] for k in TLS_CONN_KEYS if k in tcp and k != "transport"}
        )
    if tcp_rows:
        with_ws = {port for port, _ in log.streams}
        conns += [
            {k: v for k, v in c.items() if k != "event"} for p, c in log.conns.items() if p not in with_ws
        ]
        conns.sort(key=lambda c: (c["client_port"], c.get("h2_stream_id") or 0))
    ports = ",".join(str(p) for p in sorted(server_ports))
    data = _data_bytes(h2frames)
    opts = (
        f"-o tls.keylog_file:{keylog.name} -d tcp.port=={ports},tls"
        if keylog
        else f"-d tcp.port=={ports},http2"
    )
    how = (
        f"tshark 4.0 ({opts}) "
        "dissects the HTTP/2 frames (SETTINGS, HEADERS with :protocol websocket, DATA, WINDOW_UPDATE, "
        "GOAWAY) but not the WebSocket frames inside DATA, so no frames are listed; the generator checked "
        "that tshark's extended CONNECT streams are the logged ones"
        + (
            " and that their DATA bytes per direction (h2_data) are what the client counted"
            if counted
            else "; h2_data: their DATA bytes per direction"
        )
    )
    expected: dict = {
        "capture": path.name,
        "description": description,
        "generator": f"make_h2.py {name} (via make_captures.py)",
        "tshark_dissects": False,
        "tshark_notes": (notes + "; " if notes else "") + how,
        "h2": True,
        "connections": conns,
        "messages": log.messages_in_order(),
        # tshark's HTTP/2 DATA bytes of each WebSocket stream: its WebSocket frames, headers included
        "h2_data": [
            {
                "client_port": p,
                "h2_stream_id": sid,
                "client_bytes": data.get((p, sid, "client"), 0),
                "server_bytes": data.get((p, sid, "server"), 0),
            }
            for (p, sid), st in sorted(log.streams.items())
            if st["handshake_ok"]
        ],
    }
    if tls:
        assert keylog is not None
        keylog.chmod(0o644)
        expected["tls"] = True
        expected["analyze_options"] = {"keylog": keylog.name}
    if problems:
        expected["problems"] = problems
    out = path.with_name(name + ".expected.json")
    out.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    return expected


# --------------------------------------------------------------------------------------------
# scenarios


SCENARIOS: dict[str, Callable[[Path], dict]] = {}
scenario = scenario_registry(SCENARIOS, "h2-")


HYPERCORN_ENDS = (
    "How the streams end is hypercorn 0.18's: it forgets a WebSocket stream once the close frames are "
    "exchanged (after a client close it answers the close frame and sends no END_STREAM; after its own "
    "close it sends END_STREAM with the close frame) and then drops the whole connection (a KeyError in "
    "H2Protocol._handle_events) on any DATA for that stream, even an empty END_STREAM one; so the client "
    "sends nothing more on a closed stream: streams 1 and 5 have both close frames and no END_STREAM, "
    "stream 3 has the server's close frame and END_STREAM only (half-closed); the client then sends "
    "GOAWAY and closes TCP"
)
MULTIPLEXED = (
    "one TCP connection from a python client on the `h2` library 4.4 (frames by wsproto's FrameProtocol) "
    "opening three RFC 8441 WebSockets at once: stream 1 /ws/a offers permessage-deflate (negotiated), "
    "stream 3 /ws/b offers subprotocols chat.v1, chat.v2 (chat.v1 chosen), stream 5 /ws/c plain; texts, "
    "JSON and binary (a 40,000-byte one on stream 5, several DATA frames) interleaved across the streams, "
    "the server answers texts with a JSON ack and binary reversed; a plain GET /hello on stream 7 in the "
    "middle; stream 3 is closed 4001 'server 4001' by the server (asked by the text 'close please'), "
    "streams 1 and 5 1000 by the client ('client bye', 'stream C done'). "
    + HYPERCORN_ENDS
    + ". hypercorn 0.18 server (ASGI app; SETTINGS_ENABLE_CONNECT_PROTOCOL=1); recorded in a "
    "network namespace whose loopback has an Ethernet MTU (1500)"
)


def _record(run_path: Path, port_filter: str, netns: tuple[str, ...], body: Callable[[], None]) -> None:
    with tcpdump(run_path, port_filter, prefix=netns):
        body()


@scenario
def _h2c_hypercorn(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    port, log, path = 9501, H2Log(), out_dir / "h2c_hypercorn.pcap"

    def body() -> None:
        with running(py_peer(log, "server", "--port", str(port), prefix=netns)):
            py_peer(log, "client", "--port", str(port), prefix=netns).wait(60)

    _record(path, f"tcp port {port}", netns, body)
    return finish_h2(
        "h2c_hypercorn",
        path,
        "HTTP/2 cleartext (h2c, prior knowledge: the client starts with the connection preface): "
        + MULTIPLEXED,
        log,
        server_ports={port},
    )


@scenario
def _h2_tls_hypercorn(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    port, log, path = 9502, H2Log(), out_dir / "h2_tls_hypercorn.pcap"
    keylog = out_dir / "h2_tls_hypercorn.keylog"
    keylog.unlink(missing_ok=True)
    cert, key = make_cert(tmp)

    def body() -> None:
        server = py_peer(
            log, "server", "--port", str(port), "--cert", str(cert), "--key", str(key), prefix=netns
        )
        with running(server):
            client = ["client", "--port", str(port), "--cert", str(cert), "--keylog", str(keylog)]
            py_peer(log, *client, prefix=netns).wait(60)

    _record(path, f"tcp port {port}", netns, body)
    return finish_h2(
        "h2_tls_hypercorn",
        path,
        "HTTP/2 over TLS (ALPN h2, SNI localhost, self-signed certificate, TLS 1.3 with OpenSSL's default "
        "suite; key log written by the client's python ssl keylog_filename): " + MULTIPLEXED,
        log,
        server_ports={port},
        keylog=keylog,
    )


@scenario
def _h2_node(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    port, log, path = 9503, H2Log(), out_dir / "h2_node.pcap"

    def body() -> None:
        with running(NodePeer(log, "h2_node.js", "server", str(port), prefix=netns)):
            NodePeer(log, "h2_node.js", "client", str(port), prefix=netns).wait(60)

    _record(path, f"tcp port {port}", netns, body)
    return finish_h2(
        "h2_node",
        path,
        "node 20's http2 module at both ends, h2c (prior knowledge): the server's SETTINGS enable extended "
        "CONNECT (settings: { enableConnectProtocol: true }); the client waits for them, then opens two "
        "WebSockets on one connection with ':protocol': 'websocket' (gen/h2_node.js writes and parses the "
        "RFC 6455 frames itself; no compression). Stream 1 /chat (subprotocols chat.v1, chat.v2 offered, "
        "chat.v1 chosen): texts, JSON, a 70,000-byte binary (several DATA frames and WINDOW_UPDATEs), a "
        "text in three fragments, each echoed (text 'echo:'+text, binary reversed), a ping answered by a "
        "pong, client closes 1000 'node bye', the server answers the close and both end the stream. "
        "Stream 3 /feed: the server sends three messages (text, 2,000-byte binary, JSON) then closes 1001 "
        "'going away'; the client answers the close and ends the stream; node logs stream ids on both "
        "sides; recorded in a network namespace whose loopback has an Ethernet MTU (1500)",
        log,
        server_ports={port},
    )


@scenario
def _h2_refused(out_dir: Path, tmp: Path, netns: tuple[str, ...]) -> dict:
    port, bare, log, path = 9504, 9505, H2Log(), out_dir / "h2_refused.pcap"

    def body() -> None:
        hyper = py_peer(log, "server", "--port", str(port), prefix=netns)
        node = NodePeer(log, "h2_node.js", "server", str(bare), "--no-connect", prefix=netns)
        with running(hyper), running(node):
            py_peer(log, "client", "--port", str(port), "--plan", "refused", prefix=netns).wait(60)
            py_peer(log, "client", "--port", str(bare), "--plan", "not-enabled", prefix=netns).wait(60)

    _record(path, f"tcp port {port} or tcp port {bare}", netns, body)
    refused = [s for s in log.streams.values() if s["path"] == "/refuse/me"]
    if [s["http_status"] for s in refused] != [403]:
        raise RuntimeError(f"h2_refused: the refused CONNECT got {refused}")
    (not_enabled,) = [s for s in log.streams.values() if s["server_port"] == bare]
    if not_enabled["http_status"] is not None or not_enabled["reset"] is None:
        raise RuntimeError(f"h2_refused: node answered the CONNECT it did not enable: {not_enabled}")
    import h2.errors

    reset = h2.errors.ErrorCodes(not_enabled["reset"]).name
    return finish_h2(
        "h2_refused",
        path,
        f"refused WebSockets over HTTP/2, h2c. On port {port} a hypercorn 0.18 server (SETTINGS enable "
        "extended CONNECT) answers a CONNECT to /refuse/me (permessage-deflate offered) with :status 403 "
        "and a text body (the ASGI websocket.http.response extension); then, on the same connection, a "
        "CONNECT to /ws/after-refusal is accepted, one text echoed, client closes 1000 'bye'. On port "
        f"{bare} a node 20 http2 server whose SETTINGS do not enable extended CONNECT gets one anyway from "
        f"the python h2 client (header validation off): node resets the stream (RST_STREAM {reset}) "
        "without an answer and ends the connection with GOAWAY; python h2 clients; recorded in "
        "a network namespace whose loopback has an Ethernet MTU (1500)",
        log,
        server_ports={port, bare},
        problems=[
            {"client_port": refused[0]["client_port"], "kind": "h2-connect-refused"},
            {"client_port": not_enabled["client_port"], "kind": "h2-connect-not-enabled"},
        ],
    )


CHROMIUM_HOST = "h2-chromium.test"  # mapped to 127.0.0.1 by --host-resolver-rules, sent as SNI
TLS13_NAMES = {
    "0x1301": "TLS_AES_128_GCM_SHA256",
    "0x1302": "TLS_AES_256_GCM_SHA384",
    "0x1303": "TLS_CHACHA20_POLY1305_SHA256",
}


def _tls_facts_from_tshark(path: Path, port: int, keylog: Path) -> dict[int, dict]:
    """Per TCP connection (client port): SNI, version, suite and ALPN as tshark decodes them with the key
    log (the server, hypercorn, does not tell its app; the browser logs nothing)."""
    rows = {}
    for cport, sni in tshark_fields(
        path, {port}, "tls.handshake.type == 1", ["tcp.srcport", "tls.handshake.extensions_server_name"]
    ):
        rows[int(cport)] = {"client_port": int(cport), "server_port": port, "sni": sni}
    fields = ["tcp.dstport", "tls.handshake.ciphersuite", "tls.handshake.extensions.supported_version"]
    for cport, suite, version in tshark_fields(path, {port}, "tls.handshake.type == 2", fields):
        if version != "0x0304":
            raise RuntimeError(f"h2_chromium: TLS version {version} on {cport}, expected TLS 1.3")
        rows[int(cport)] |= {"tls_version": "TLS 1.3", "tls_cipher": TLS13_NAMES[suite]}
    fields = ["tcp.dstport", "tls.handshake.extensions_alpn_str"]
    for cport, alpn in tshark_fields(path, {port}, "tls.handshake.type == 8", fields, keylog=keylog):
        rows[int(cport)]["alpn"] = alpn
    return rows


def _h2_chromium(out_dir: Path) -> dict:
    port, log, path = 9506, H2Log(), out_dir / "h2_chromium.pcap"
    keylog = out_dir / "h2_chromium.keylog"
    keylog.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="h2-") as tmp:
        cert, key = make_cert(Path(tmp))

        def page_closed() -> bool:
            return any(
                r.get("disconnect") is not None and r["path"] == PAGE_WS for r in list(log.server_recs)
            )

        async def browse() -> None:
            done = asyncio.Event()

            async def watch() -> None:
                while not page_closed():
                    await asyncio.sleep(0.1)
                done.set()

            watcher = asyncio.ensure_future(watch())
            try:
                await run_chromium(
                    f"https://{CHROMIUM_HOST}:{port}/",
                    done,
                    "--ignore-certificate-errors",
                    f"--host-resolver-rules=MAP {CHROMIUM_HOST} 127.0.0.1",
                    f"--ssl-key-log-file={keylog}",
                )
            finally:
                watcher.cancel()

        def body() -> None:
            server = py_peer(
                log, "server", "--port", str(port), "--cert", str(cert), "--key", str(key), "--page"
            )
            with running(server):
                asyncio.run(browse())

        _record(path, f"tcp port {port}", (), body)
    keylog.chmod(0o644)  # Chromium writes its key log 0600
    (page,) = [r for r in log.server_recs if r["event"] == "server" and "http_version" in r]
    if page["http_version"] != "2":
        raise RuntimeError(f"h2_chromium: Chromium opened its WebSocket over HTTP/{page['http_version']}")
    h2frames = tshark_h2_frames(path, {port}, tls=True, keylog=keylog)
    ((cport, sid),) = _ws_connects(h2frames)
    if cport != page["client_port"]:
        raise RuntimeError(f"h2_chromium: tshark's CONNECT on {cport}, the app's on {page['client_port']}")
    # hypercorn tells its app 1006 for any close the client starts over HTTP/2 (its state is still
    # CONNECTED when the stream goes), so the close frames are checked by size instead: the page's
    # close(1000, "page done") masked (2 + 4 + 2 + 9 bytes) and wsproto's answer in kind (2 + 2 + 9),
    # each the last DATA frame of its direction on the stream
    last = {f["sender"]: f["length"] for f in h2frames if f["type"] == 0 and f["stream_id"] == sid}
    if last != {"client": 17, "server": 13}:
        raise RuntimeError(f"h2_chromium: last DATA frames {last}, expected the close frames (17, 13)")
    resets = tshark_fields(
        path,
        {port},
        "http2.type == 3",
        ["tcp.srcport", "http2.streamid", "http2.rst_stream.error"],
        keylog=keylog,
    )
    if resets != [[str(cport), str(sid), "8"]]:
        raise RuntimeError(
            f"h2_chromium: RST_STREAM frames {resets}, expected Chromium's CANCEL of the stream"
        )
    log.streams[(cport, sid)] = {
        "path": PAGE_WS,
        "client_port": cport,
        "h2_stream_id": sid,
        "server_port": port,
        "transport": "h2",
        "version": 13,
        "draft": "rfc6455",
        "http_status": 200,
        "handshake_ok": True,
        "subprotocol": None,
        "extensions": page["extensions"],
        "compression": page["extensions"] is not None,
        "close_code_client": 1000,
        "close_code_server": 1000,
        "close_reason_client": "page done",
        "close_reason_server": "page done",
        "close_status": "clean",
        "close_initiator": "client",
    }
    talking = {f["client_port"] for f in h2frames}
    for p, facts in _tls_facts_from_tshark(path, port, keylog).items():
        log.conns[p] = {"transport": "tls", **facts} | ({"decrypted": True} if p in talking else {})
    received = [m for m in log.server_recs if m["event"] == "message" and m["sender"] == "client"]
    sent = [*CHROMIUM_MESSAGES, bytes(i % 251 for i in range(CHROMIUM_BINARY))]
    want = [message_record(m["client_port"], "client", d) for m, d in zip(received, sent, strict=False)]
    if len(received) != len(sent) or [(m["size"], m["sha256"]) for m in received] != [
        (m["size"], m["sha256"]) for m in want
    ]:
        raise RuntimeError("h2_chromium: the server received other messages than the page sends")
    return finish_h2(
        "h2_chromium",
        path,
        f"headless Chromium {_chromium_version()} loads a page over https from a hypercorn 0.18 server "
        f"(TLS 1.3, ALPN h2, self-signed certificate, --ignore-certificate-errors; host {CHROMIUM_HOST} "
        "mapped to 127.0.0.1 by --host-resolver-rules, so it is the SNI); the page opens a wss:// "
        "WebSocket, which Chromium sends as an RFC 8441 extended CONNECT on the same HTTP/2 connection "
        "(the server's SETTINGS enable it), offering permessage-deflate; the page sends three texts and an "
        "ArrayBuffer, the server answers JSON acks and the reversed bytes, the page closes 1000 'page "
        "done', wsproto answers the close in kind; hypercorn sends no END_STREAM after it, and Chromium "
        "resets the stream (RST_STREAM CANCEL) a moment later. The server's app logged what it "
        "received and sent and the negotiated extensions (computed as hypercorn does); the close codes "
        "are the page's, checked by the close frames' sizes (hypercorn tells its app 1006); the stream "
        "id and each TCP connection's TLS facts are tshark's (decrypted with the key log); a TCP "
        "connection without a WebSocket (Chromium opens a spare one) is a TLS row with its TLS facts "
        "only; key log from --ssl-key-log-file",
        log,
        server_ports={port},
        keylog=keylog,
        counted=False,
        tcp_rows=True,
        problems=[{"client_port": cport, "kind": "h2-stream-reset"}],
    )


def _chromium_version() -> str:
    out = subprocess.run(["chromium", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[1] if out.split()[1:] else "(version unknown)"


SCENARIOS["h2_chromium"] = _h2_chromium


# --------------------------------------------------------------------------------------------

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        peer_main(sys.argv[2:])
    else:
        print("run the scenarios through make_captures.py (--only h2c_hypercorn,...)", file=sys.stderr)
        sys.exit(2)
