"""Record captures/incident.pcapng: a WebSocket service having a bad afternoon, for the triage notebook.

    python captures/make_incident.py [--out captures/]      # needs root (tcpdump on lo), ~10 s

A python `websockets` 17 server on 127.0.0.1:9100 echoes every message. Around it, recorded by
tcpdump on the loopback interface:

- two well-behaved `websockets` clients: one with permessage-deflate that chats (and pings) through
  the whole recording and closes 1000, one without compression that stays until the server shuts
  down (1001 going away);
- a client still using the retired path /v1/chat: the server refuses the upgrade with 404;
- two hand-written clients that never send a close frame: one ends with a TCP RST (SO_LINGER 0),
  the other with a FIN; the server then closes TCP without a close frame either;
- four hand-written misbehaving clients on raw sockets, one violation each after a valid "hello":
  an unmasked client frame, a 200-byte ping (control frame over 125 bytes), a text message that is
  not UTF-8, a frame with the reserved opcode 0x3. The server fails each connection (1002 or 1007);
  two clients echo the close frame, two just send a FIN;
- an uploader sending a 64,000-byte binary message in four 16,000-byte fragments, one TCP segment
  each; the server echoes it whole.

A real packet loss cannot be forced on loopback, so the TCP gap is made after recording: the
segment that carried the uploader's second fragment is removed with `editcap` (the packet number is
written to the expected file). The analyzer then sees the message cut after its first fragment
(complete=False, 16,000 bytes) and must resynchronise on the third fragment's header.

Every expectation comes from the programs: each sender logs what it sent, each raw client logs the
close frame it got and what it did next. The expected file follows captures/README.md, plus
`edits` (what was done to the recording) and `problems` (problem kinds that must be found, per
connection and sender).

This is a separate script from make_captures.py (which it borrows helpers from) because its capture
is edited after recording and its expectations are partly about defects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_captures import (  # noqa: E402
    CONN_KEYS,
    FRAME_KEYS,
    Log,
    _abnormal_client,
    _refused_client,
    connect_kw,
    cross_check,
    hybi_handshake,
    payload_binary,
    raw_connect,
    read_ws_frame,
    send_logged,
    sha,
    tcpdump,
    ws_conn_facts,
    ws_frame,
)
from tshark_frames import tshark_frames  # noqa: E402

PORT = 9100
NAME = "incident"
FRAGMENT = 16_000
FRAGMENTS = 4
LOST_FRAME = 2  # the uploader's frames: text, 4 fragments, text, close; the 2nd fragment is removed

DESCRIPTION = (
    "triage exercise: python websockets 17 echo server on port 9100 with trouble around two healthy "
    "clients (permessage-deflate chat closing 1000; a second one closed 1001 by the server's shutdown): "
    "a 404 refused upgrade (/v1/chat), an RST and a FIN without close frames, four hand-written "
    "misbehaving clients (unmasked client frame, 200-byte ping, invalid UTF-8 text, reserved opcode 0x3; "
    "the server closes 1002/1007), and a TCP gap made after recording by removing with editcap the "
    "segment that carried the 2nd of 4 fragments of a 64,000-byte upload (a real loss cannot be forced "
    "on loopback)"
)


# --------------------------------------------------------------------------------------------
# the programs


def _misbehaving_client(log: Log, name: str, bad: bytes, bad_message: bytes | None, then: str) -> None:
    """Say hello properly, send one bad frame, read the server's close frame, then echo it or FIN."""
    s = raw_connect("127.0.0.1", PORT)
    cport = s.getsockname()[1]
    head, rest = hybi_handshake(s, "127.0.0.1", PORT, f"/chat?client={name}", 13)
    buf = bytearray(rest)
    hello = f"hello from {name}"
    s.sendall(ws_frame(1, hello.encode()))
    log.sent(cport, "client", hello)
    op, data = read_ws_frame(s, buf)
    assert (op, data) == (1, hello.encode()), (op, data)
    s.sendall(bad)
    if bad_message is not None:  # the analyzer still sees a text message in the bad frame
        with log.lock:
            log.messages.append({"client_port": cport, "sender": "client", "type": "text",
                                 "size": len(bad_message), "sha256": sha(bad_message),
                                 "text_prefix": bad_message.decode("utf-8", "replace")[:64]})
    while True:
        op, data = read_ws_frame(s, buf)
        if op == 8:
            break
    code = struct.unpack("!H", data[:2])[0]
    reason = data[2:].decode()
    if then == "echo":
        s.sendall(ws_frame(8, struct.pack("!H", code)))
    else:
        s.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        while s.recv(65536):
            pass
    s.close()
    log.conn(cport, server_port=PORT, version=13, draft="rfc6455", http_status=int(head.split()[1]),
             handshake_ok=True, subprotocol=None, extensions=None, compression=False,
             close_code_client=code if then == "echo" else None, close_code_server=code,
             close_reason_client="" if then == "echo" else None, close_reason_server=reason,
             close_status="clean" if then == "echo" else "half-closed", close_initiator="server",
             role=name)


def _uploader(log: Log) -> dict:
    """A 64,000-byte binary message in 4 fragments, each written alone so it travels in one segment."""
    s = raw_connect("127.0.0.1", PORT)
    cport = s.getsockname()[1]
    head, rest = hybi_handshake(s, "127.0.0.1", PORT, "/chat?client=uploader", 13)
    buf = bytearray(rest)
    start = "upload starting"
    s.sendall(ws_frame(1, start.encode()))
    log.sent(cport, "client", start)
    assert read_ws_frame(s, buf) == (1, start.encode())
    parts = [payload_binary(FRAGMENT, 100 + i) for i in range(FRAGMENTS)]
    for i, part in enumerate(parts):
        s.sendall(ws_frame(2 if i == 0 else 0, part, fin=i == FRAGMENTS - 1))
        time.sleep(0.05)
    whole = b"".join(parts)
    log.sent(cport, "client", whole)
    assert read_ws_frame(s, buf) == (2, whole)
    text = "upload done"
    s.sendall(ws_frame(1, text.encode()))
    log.sent(cport, "client", text)
    assert read_ws_frame(s, buf) == (1, text.encode())
    s.sendall(ws_frame(8, struct.pack("!H", 1000) + b"done"))
    op, data = read_ws_frame(s, buf)
    assert op == 8
    with contextlib.suppress(OSError):
        while s.recv(65536):
            pass
    s.close()
    log.conn(cport, server_port=PORT, version=13, draft="rfc6455", http_status=int(head.split()[1]),
             handshake_ok=True, subprotocol=None, extensions=None, compression=False,
             close_code_client=1000, close_code_server=struct.unpack("!H", data[:2])[0],
             close_reason_client="done", close_reason_server=data[2:].decode(), close_status="clean",
             close_initiator="client", role="uploader")
    fragments = [(2 if i == 0 else 0, i == FRAGMENTS - 1, FRAGMENT) for i in range(FRAGMENTS)]
    frames = [(1, True, len(start)), *fragments, (1, True, len(text)), (8, True, 6)]
    return {"client_port": cport, "parts": parts, "frames": frames}


async def _chatter(log: Log, stop: asyncio.Event) -> None:
    """The healthy client: permessage-deflate JSON chat and pings until told to stop, then 1000."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{PORT}/chat?client=dashboard", compression="deflate",
                       user_agent_header="dashboard/2.3", **connect_kw()) as ws:
        cport = ws.local_address[1]
        i = 0
        while not stop.is_set():
            msg = json.dumps({"type": "status", "seq": i, "queue": (i * 7) % 13, "ok": True})
            await send_logged(ws, log, cport, "client", msg)
            await ws.recv()
            if i % 5 == 2:
                await (await ws.ping(f"dashboard-{i}".encode()))
            i += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.35)
        await ws.close(1000, "bye")
    log.conn(cport, **ws_conn_facts(ws, PORT), role="dashboard")


async def _stayer(log: Log) -> None:
    """A client without compression that sends a little and stays until the server shuts down."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{PORT}/chat?client=worker", compression=None,
                       user_agent_header="worker/0.9", **connect_kw()) as ws:
        cport = ws.local_address[1]
        for i in range(3):
            await send_logged(ws, log, cport, "client", f"worker heartbeat {i}")
            await ws.recv()
            await asyncio.sleep(0.3)
        await ws.wait_closed()
    log.conn(cport, **ws_conn_facts(ws, PORT), role="worker")


def _borrowed(log: Log, role: str, fn, *args) -> None:
    """Run one of make_captures.py's clients and tag the connection it logged with `role`."""
    before = set(log.conns)
    fn(log, *args)
    (port,) = set(log.conns) - before
    log.conn(port, role=role)


def _record(log: Log, raw: Path) -> dict:
    """Run the server and all clients while tcpdump records `raw`; returns the uploader's facts."""
    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers
    from websockets.exceptions import ConnectionClosed
    from websockets.http11 import Response

    def process_request(conn, request):
        if request.path.startswith("/v1/"):
            return Response(404, "Not Found", Headers({"Content-Type": "text/plain"}),
                            b"no such endpoint: use /chat\n")
        return None

    async def handler(ws):
        cport = ws.remote_address[1]
        with contextlib.suppress(ConnectionClosed):
            async for msg in ws:
                await send_logged(ws, log, cport, "server", msg)

    bad_text = b"caf\xc3\x28 au lait"  # \xc3 must start a 2-byte sequence; \x28 cannot continue it

    async def main() -> dict:
        server = await serve(handler, "127.0.0.1", PORT, compression="deflate", ping_interval=None,
                             max_size=None, process_request=process_request, server_header="echo/1.0")
        stop = asyncio.Event()
        chat = asyncio.create_task(_chatter(log, stop))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(_borrowed, log, "refused-v1", _refused_client, PORT, "/v1/chat", 13)
        await asyncio.sleep(0.3)
        stay = asyncio.create_task(_stayer(log))
        up = await asyncio.to_thread(_uploader, log)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(_borrowed, log, "rst", _abnormal_client, PORT, "rst")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(_borrowed, log, "fin", _abnormal_client, PORT, "fin")
        await asyncio.sleep(0.3)
        unmasked = b"unmasked hello"
        for name, bad, message, then in (
            ("unmasked", ws_frame(1, unmasked, mask=False), unmasked, "echo"),
            ("long-ping", ws_frame(9, b"p" * 200), None, "fin"),
            ("bad-utf8", ws_frame(1, bad_text), bad_text, "echo"),
            ("reserved-opcode", ws_frame(3, b"what is opcode 3?"), None, "fin"),
        ):
            await asyncio.to_thread(_misbehaving_client, log, name, bad, message, then)
            await asyncio.sleep(0.3)
        stop.set()
        await chat
        await asyncio.sleep(0.3)
        server.close()  # the worker still connected gets 1001 going away
        await server.wait_closed()
        await stay
        return up

    with tcpdump(raw, f"tcp port {PORT}"):
        return asyncio.run(main())


# --------------------------------------------------------------------------------------------
# the edit and the expected file


def _segments(path: Path, client_port: int) -> list[tuple[int, int, int]]:
    """(packet number, relative seq, tcp.len) of the client's data segments on that connection."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", f"tcp.srcport=={client_port} && tcp.len>0",
         "-T", "fields", "-e", "frame.number", "-e", "tcp.seq", "-e", "tcp.len"],
        capture_output=True, text=True, check=True).stdout
    return [tuple(int(x) for x in line.split("\t")) for line in out.splitlines() if line.strip()]


def _packet_to_remove(raw: Path, client_port: int) -> int:
    """The packet that carried the 2nd fragment, alone: header (8 bytes: 16-bit length, mask) + payload."""
    seg_len = 2 + 2 + 4 + FRAGMENT
    fragments = [s for s in _segments(raw, client_port) if s[2] == seg_len]
    if len(fragments) != FRAGMENTS:
        raise RuntimeError(f"expected {FRAGMENTS} one-fragment segments of {seg_len} bytes, "
                           f"found {fragments}: the fragments were coalesced or split; run again")
    return fragments[1][0]


def build(out_dir: Path) -> dict:
    path = out_dir / f"{NAME}.pcapng"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.pcap"
        for attempt in range(3):  # loopback almost always keeps one write in one segment; retry if not
            log = Log()
            up = _record(log, raw)
            try:
                removed = _packet_to_remove(raw, up["client_port"])
                break
            except RuntimeError as e:
                if attempt == 2:
                    raise
                print(f"{e}; recording again", file=sys.stderr)
        cmd = ["editcap", "-F", "pcapng", str(raw), str(path), str(removed)]
        subprocess.run(cmd, check=True)
    os.chmod(path, 0o644)

    # The uploader's message as the capture now holds it: only the first fragment arrived before the
    # hole; the 3rd and 4th are continuations of a message whose start the analyzer has already cut.
    cport = up["client_port"]
    first = up["parts"][0]
    for m in log.messages:
        if m["client_port"] == cport and m["sender"] == "client" and m["size"] == FRAGMENT * FRAGMENTS:
            m.update({"size": len(first), "sha256": sha(first), "cut_by_gap": True,
                      "sent_size": FRAGMENT * FRAGMENTS, "sent_sha256": m["sha256"]})
    conns = sorted(({k: c[k] for k in CONN_KEYS if k in c} for c in log.conns.values()),
                   key=lambda c: c["client_port"])
    port_of = {c["role"]: c["client_port"] for c in log.conns.values()}
    problems = [
        {"client_port": port_of["refused-v1"], "sender": None, "kind": "handshake-failed"},
        {"client_port": cport, "sender": "client", "kind": "tcp-gap"},
        {"client_port": port_of["unmasked"], "sender": "client", "kind": "unmasked-client-frame"},
        {"client_port": port_of["long-ping"], "sender": "client", "kind": "control-frame-too-long"},
        {"client_port": port_of["bad-utf8"], "sender": "client", "kind": "invalid-utf8"},
        {"client_port": port_of["reserved-opcode"], "sender": "client", "kind": "reserved-opcode"},
    ]
    tf = tshark_frames(path, {PORT})
    errors = cross_check([c for c in conns if c["client_port"] != cport], log.messages,
                         [f for f in tf if f["client_port"] != cport])
    if errors:
        raise RuntimeError("senders' logs and tshark disagree:\n  " + "\n  ".join(errors))
    gap_client = sum(1 for f in tf if f["client_port"] == cport and f["sender"] == "client")
    expected = {
        "capture": path.name,
        "description": DESCRIPTION,
        "generator": "make_incident.py",
        "tshark_dissects": False,
        "tshark_notes": (
            f"tshark 4.0 (-d tcp.port=={PORT},http) dissects the other connections, and the senders' logs "
            "were checked against its frames there (they are kept under tshark_frames); but after the "
            f"removed segment on client port {cport} it lists no more of that client's frames (it waits for "
            f"the missing bytes; {gap_client} of the {len(up['frames']) - 1} client frames left in the "
            "capture are listed), so its list is not a reference for the whole capture"
        ),
        "edits": {
            "removed_packet": removed,
            "command": f"editcap -F pcapng raw.pcap {path.name} {removed}",
            "why": "a real packet loss cannot be forced on loopback: the TCP gap was made by removing, "
                   f"after recording, packet {removed} of the raw recording (the segment carrying the 2nd "
                   f"of {FRAGMENTS} fragments of the {FRAGMENT * FRAGMENTS}-byte upload on client port "
                   f"{cport}); packets after it are numbered one lower in {path.name}",
            "gap_connection": cport,
            "gap_bytes": 8 + FRAGMENT,
            "gap_client_frames": [
                {"opcode": op, "fin": fin, "payload_len": n}
                for i, (op, fin, n) in enumerate(up["frames"]) if i != LOST_FRAME
            ],
        },
        "clients": dict(sorted(port_of.items(), key=lambda kv: kv[1])),
        "problems": problems,
        "connections": conns,
        "messages": log.messages,
        "tshark_frames": [{k: f[k] for k in FRAME_KEYS} for f in tf if f["client_port"] != cport],
    }
    out = path.with_name(f"{NAME}.expected.json")
    out.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    return expected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE), help="output folder (default: captures/)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("make_incident.py needs root (tcpdump on the loopback interface)", file=sys.stderr)
        return 2
    exp = build(Path(args.out))
    size = (Path(args.out) / exp["capture"]).stat().st_size
    print(f"{exp['capture']}: {len(exp['connections'])} connections, {len(exp['messages'])} messages, "
          f"{len(exp['tshark_frames'])} tshark frames, packet {exp['edits']['removed_packet']} removed, "
          f"{size / 1024:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
