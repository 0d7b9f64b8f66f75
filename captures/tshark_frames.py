"""Run tshark on a capture and return its WebSocket frames as plain dicts.

Owns the one place where the capture corpus talks to tshark: make_captures.py uses it to write the
"frames" list of each expected file, and tests/test_tshark_agreement.py uses it to check that tshark
still says the same thing. tshark only finds the HTTP Upgrade on ports it knows, so every server port
of the capture is decoded as HTTP (``-d tcp.port==P,http``); detection by the analyzer must not need
this hint, tshark does.

PDML is parsed (not ``-T fields``) because one TCP segment can complete several WebSocket frames and
``-T fields`` flattens their fields into comma lists that cannot be re-aligned when only some of the
frames carry a field (the close status code).
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def tshark_command(
    path: str | Path,
    server_ports: Iterable[int],
    *,
    tls: bool = False,
    keylog: str | Path | None = None,
) -> list[str]:
    """The tshark command line; `tls`: the server ports carry TLS with HTTP inside (decrypted with
    `keylog`, or with the secrets embedded in a pcapng when keylog is None)."""
    cmd = [
        "tshark",
        "-n",
        "-r",
        str(path),
        "-o",
        "tcp.reassemble_out_of_order:TRUE",
        "-o",
        "tcp.desegment_tcp_streams:TRUE",
    ]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for port in sorted(set(server_ports)):
        if tls:
            cmd += ["-d", f"tcp.port=={port},tls", "-d", f"tls.port=={port},http"]
        else:
            cmd += ["-d", f"tcp.port=={port},http"]
    cmd += ["-Y", "websocket", "-T", "pdml", "-J", "tcp websocket"]
    return cmd


def _fields(proto: ET.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in proto.iter("field"):
        name = f.get("name")
        if name and name not in out:
            out[name] = f.get("show", "")
    return out


def _packets(pdml: bytes) -> Iterator[tuple[int, int, int, list[ET.Element]]]:
    """Per packet of tshark's PDML: its number, TCP source and destination ports, and its protocols."""
    for packet in ET.fromstring(pdml).iter("packet"):
        protos = packet.findall("proto")
        frame_no = src = dst = 0
        for proto in protos:
            if proto.get("name") == "geninfo":
                frame_no = int(_fields(proto)["num"])
            elif proto.get("name") == "tcp":
                f = _fields(proto)
                src, dst = int(f["tcp.srcport"]), int(f["tcp.dstport"])
        yield frame_no, src, dst, protos


def tshark_frames(
    path: str | Path,
    server_ports: Iterable[int],
    *,
    tls: bool = False,
    keylog: str | Path | None = None,
) -> list[dict]:
    """One dict per WebSocket frame tshark dissects, in capture order.

    Keys: frame_no, client_port, server_port, sender, opcode, fin, rsv1, masked, payload_len,
    close_code (None when not a close frame or the close payload is empty), close_reason.
    """
    server_ports = set(server_ports)
    cmd = tshark_command(path, server_ports, tls=tls, keylog=keylog)
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=300)
    frames: list[dict] = []
    for frame_no, src, dst, protos in _packets(proc.stdout):
        for proto in protos:
            if proto.get("name") == "websocket":
                f = _fields(proto)
                if "websocket.opcode" not in f:
                    continue
                plen = int(f["websocket.payload_length"])
                if plen == 126:
                    plen = int(f["websocket.payload_length_ext_16"])
                elif plen == 127:
                    plen = int(f["websocket.payload_length_ext_64"])
                opcode = int(f["websocket.opcode"])
                code = f.get("websocket.payload.close.status_code")
                reason = f.get("websocket.payload.close.reason")
                if dst in server_ports:
                    sender, client_port, server_port = "client", src, dst
                else:
                    sender, client_port, server_port = "server", dst, src
                frames.append(
                    {
                        "frame_no": frame_no,
                        "client_port": client_port,
                        "server_port": server_port,
                        "sender": sender,
                        "opcode": opcode,
                        "fin": f["websocket.fin"] in ("1", "True", "true"),
                        "rsv1": (int(f["websocket.rsv"], 0) & 0x4) != 0,
                        "masked": f["websocket.mask"] in ("1", "True", "true"),
                        "payload_len": plen,
                        "close_code": int(code) if (opcode == 8 and code) else None,
                        "close_reason": reason if opcode == 8 else None,
                    }
                )
    return frames


def tshark_fields(
    path: str | Path,
    server_ports: Iterable[int],
    display_filter: str,
    fields: Iterable[str],
    *,
    keylog: str | Path | None = None,
) -> list[list[str]]:
    """`-T fields` rows (one list of field values per packet matching `display_filter`) of a capture
    whose server ports carry TLS: the generator's checks of handshake facts (HelloRetryRequest,
    KeyUpdate, encrypt_then_mac) that the senders cannot log themselves."""
    cmd = ["tshark", "-n", "-r", str(path)]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for port in sorted(set(server_ports)):
        cmd += ["-d", f"tcp.port=={port},tls"]
    cmd += ["-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=300, text=True)
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


def tshark_h2_frames(
    path: str | Path,
    server_ports: Iterable[int],
    *,
    tls: bool = False,
    keylog: str | Path | None = None,
) -> list[dict]:
    """tshark's HTTP/2 frames (h2c on the server ports, or h2 inside TLS found by ALPN), one dict per
    frame in capture order: frame_no, client_port, sender, type, stream_id, length (of the frame
    payload: DATA bytes plus any padding), and protocol (the :protocol of a HEADERS frame, else "").

    tshark 4.0 does not dissect WebSocket inside HTTP/2; the capture generator checks these against
    the DATA bytes and CONNECT streams its programs logged."""
    server_ports = set(server_ports)
    cmd = ["tshark", "-n", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for port in sorted(server_ports):
        cmd += ["-d", f"tcp.port=={port},{'tls' if tls else 'http2'}"]
    cmd += ["-Y", "http2.type", "-T", "pdml", "-J", "tcp http2"]
    proc = subprocess.run(cmd, capture_output=True, check=True, timeout=300)
    out: list[dict] = []
    for frame_no, src, dst, protos in _packets(proc.stdout):
        for proto in protos:
            if proto.get("name") == "http2":
                for stream in proto.iter("field"):
                    if stream.get("name") != "http2.stream":
                        continue
                    f = _fields(stream)
                    if "http2.type" not in f:
                        continue
                    protocol = ""
                    for h in stream.iter("field"):
                        if h.get("name") == "http2.header":
                            hf = _fields(h)
                            if hf.get("http2.header.name") == ":protocol":
                                protocol = hf.get("http2.header.value", "")
                    client = dst in server_ports
                    out.append(
                        {
                            "frame_no": frame_no,
                            "client_port": src if client else dst,
                            "sender": "client" if client else "server",
                            "type": int(f["http2.type"]),
                            "stream_id": int(f["http2.streamid"]),
                            "length": int(f["http2.length"]),
                            "protocol": protocol,
                        }
                    )
    return out
