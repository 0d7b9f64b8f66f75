"""STOMP 1.0, 1.1 and 1.2 inside WebSocket messages (subprotocols "v10.stomp", "v11.stomp",
"v12.stomp").

A frame is `command EOL *(header EOL) EOL body NUL *(EOL)` (STOMP 1.2 "Augmented BNF"). Clients
such as stomp.js may put several frames in one WebSocket message or split a large frame across
messages, so each direction is a byte stream with a buffer; a frame is reported at the message
that completes it.

Rules:
1. A WebSocket message holding nothing but EOLs is a heart-beat: one AppMessage of type
   "HEARTBEAT" (role message). EOLs between frames are skipped.
2. The body ends after `content-length` octets (it may hold NULs; the next octet must be NUL),
   else at the first NUL.
3. Header names and values are unescaped (1.2: \\r \\n \\c \\\\; 1.1 without \\r; 1.0 none), except
   in CONNECT, STOMP and CONNECTED frames; an undefined escape is malformed. A repeated header
   keeps its first value. The version is the CONNECTED frame's `version` (1.2 until then).
4. Bounded memory: the header block is at most MAX_HEAD bytes; a body whose content-length is over
   MAX_BODY is passed over (the frame is still reported, with its length); a frame without
   content-length and with no NUL within MAX_BODY is malformed and dropped up to the next NUL.
   A frame that does not parse is an AppMalformed; decoding resumes after its NUL (a NUL before
   the blank line ending the headers ends such a frame).
5. At most MAX_PER_MESSAGE frames are decoded from one WebSocket message; the rest of it is
   dropped (an AppMalformed).
6. A message cut by a gap (complete=False) ends the frame it carried: the rest of that frame is
   dropped up to the next NUL.

Pairing (app_conv): CONNECT/STOMP → CONNECTED or ERROR ("connect"); a client frame with a
`receipt` header → RECEIPT or ERROR with that `receipt-id` ("receipt:<id>"). channel = destination
(UNSUBSCRIBE: the destination its subscription id was given).
"""

from __future__ import annotations

import re
from typing import Any

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.json_payload import clip
from analyzer.app.protocols import _common
from analyzer.app.protocols._common import BoundedMap, decoded_or_raise

__all__ = ["CLIENT_COMMANDS", "MAX_BODY", "MAX_HEAD", "SERVER_COMMANDS", "StompDecoder"]

CLIENT_COMMANDS = frozenset({"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "BEGIN", "COMMIT", "ABORT", "ACK",
                             "NACK", "DISCONNECT", "CONNECT", "STOMP"})
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
#: frames whose headers are never escaped (STOMP 1.2 "Value Encoding")
_UNESCAPED = frozenset({"CONNECT", "STOMP", "CONNECTED"})
#: headers each command needs (STOMP 1.2 frame sections; only those every version requires)
_REQUIRED = {"SEND": ("destination",), "SUBSCRIBE": ("destination",), "MESSAGE": ("destination",),
             "RECEIPT": ("receipt-id",), "BEGIN": ("transaction",), "COMMIT": ("transaction",),
             "ABORT": ("transaction",)}
#: headers copied into `fields` (under the same name) when present
_FIELD_HEADERS = ("subscription", "message-id", "content-type", "content-length", "transaction",
                  "ack", "id", "receipt", "version", "accept-version", "heart-beat", "server",
                  "session", "host", "message")

#: longest header block (command and headers) buffered
MAX_HEAD = 64 << 10
#: longest body buffered
MAX_BODY = 16 << 20

_CONNECT = (b"CONNECT\n", b"CONNECT\r\n", b"STOMP\n", b"STOMP\r\n")
_EOLS = re.compile(rb"[\r\n]*")
_HEAD_END = re.compile(rb"\n\r?\n")
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_ESCAPES = {"1.2": {"r": "\r", "n": "\n", "c": ":", "\\": "\\"},
            "1.1": {"n": "\n", "c": ":", "\\": "\\"}}


class _Bad(Exception):
    """A frame that does not parse (its reason)."""


def _unescape(text: str, table: dict[str, str]) -> str:
    if "\\" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        got = table.get(m.group(1))
        if got is None:
            raise _Bad(f"undefined escape \\{m.group(1)} in a header")
        return got

    return _ESCAPE.sub(one, text)


def _head(raw: bytes, version: str) -> tuple[str, dict[str, str]]:
    """The command and headers (first value of each) of a header block."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"header block is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    command = lines[0].removesuffix("\r")
    if command not in CLIENT_COMMANDS and command not in SERVER_COMMANDS:
        raise _Bad(f"unknown command {clip(command, 40)!r}")
    table = None if command in _UNESCAPED else _ESCAPES.get(version)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        line = line.removesuffix("\r")
        name, colon, value = line.partition(":")
        if not colon or not name:
            raise _Bad(f"header line {clip(line, 40)!r} is not name:value")
        if table is not None:
            name, value = _unescape(name, table), _unescape(value, table)
        headers.setdefault(name, value)
    for name in _REQUIRED.get(command, ()):
        if name not in headers:
            raise _Bad(f"{command} without {name}")
    return command, headers


class _Frame:
    """A frame cut from the stream: its command, headers and body length."""

    __slots__ = ("body_len", "command", "headers")

    def __init__(self, command: str, headers: dict[str, str], body_len: int) -> None:
        self.command = command
        self.headers = headers
        self.body_len = body_len


class _Stream:
    """One direction's bytes cut into frames (rules 2, 4, 5 and 6 of the module doc)."""

    __slots__ = ("buf", "dropping", "need", "skip", "waiting_nul")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = 0               # total length of the frame in buf, when content-length said
        self.waiting_nul = False    # buf holds a whole header block; the body ends at a NUL
        self.skip = 0               # octets of an oversized body (and its NUL) to pass over
        self.dropping = False       # passing over everything up to the next NUL

    def push(self, payload: bytes, version: str) -> tuple[list[_Frame], list[str]]:
        errors: list[str] = []
        start = 0
        if self.skip:
            start = min(self.skip, len(payload))
            self.skip -= start
        if self.dropping:
            nul = payload.find(b"\0", start)
            if nul < 0:
                return [], errors
            self.dropping = False
            start = nul + 1
        if self.buf:
            size = len(self.buf) + len(payload) - start
            if (self.need and size < self.need) or (
                    self.waiting_nul and payload.find(b"\0", start) < 0 and size <= MAX_BODY) or (
                    not self.need and not self.waiting_nul and size < MAX_HEAD
                    and _HEAD_END.search(bytes(self.buf[-2:]) + payload[start:start + 2]) is None
                    and _HEAD_END.search(payload, start) is None
                    and payload.find(b"\0", start) < 0):              # headers still incomplete
                self.buf += memoryview(payload)[start:]
                return [], errors
            self.buf += memoryview(payload)[start:]
            whole = bytes(self.buf)
            self.buf = bytearray()
        else:
            whole = payload[start:] if start else payload
        self.need = 0
        self.waiting_nul = False
        return self._split(whole, version, errors), errors

    def _split(self, data: bytes, version: str, errors: list[str]) -> list[_Frame]:
        frames: list[_Frame] = []
        n = len(data)
        pos = 0
        while True:
            m = _EOLS.match(data, pos)
            pos = m.end() if m else pos
            if pos >= n:
                return frames
            if len(frames) >= _common.MAX_PER_MESSAGE:
                errors.append(f"over {_common.MAX_PER_MESSAGE} frames in one message: its last "
                              f"{n - pos} bytes are not decoded")
                return frames
            end = _HEAD_END.search(data, pos, min(n, pos + MAX_HEAD))
            nul = -1 if end is None and n - pos >= MAX_HEAD else data.find(
                b"\0", pos, n if end is None else end.start())
            if nul >= 0:
                errors.append(f"frame ended (NUL) inside its header block, after {nul - pos} bytes")
                pos = nul + 1
                continue
            if end is None:
                if n - pos < MAX_HEAD:
                    break
                errors.append(f"no end of headers within {MAX_HEAD} bytes: frame dropped")
                skip_from = pos
            else:
                try:
                    command, headers = _head(data[pos:end.start()], version)
                    length = headers.get("content-length")
                    if length is not None and not (length.isascii() and length.isdigit()):
                        raise _Bad(f"{command}: content-length {clip(length, 20)!r}")
                except _Bad as exc:
                    errors.append(str(exc))
                    skip_from = end.end()
                else:
                    body = end.end()
                    if length is not None:
                        stop = body + int(length)
                        if stop >= n:
                            if int(length) > MAX_BODY:     # reported now, its body passed over
                                frames.append(_Frame(command, headers, int(length)))
                                self.skip = stop + 1 - n
                                return frames
                            self.need = stop + 1 - pos
                            break
                        if data[stop] == 0:
                            frames.append(_Frame(command, headers, int(length)))
                            pos = stop + 1
                            continue
                        errors.append(f"{command}: no NUL after the {length} octets of content-length")
                        skip_from = stop
                    else:
                        stop = data.find(b"\0", body)
                        if stop >= 0:
                            frames.append(_Frame(command, headers, stop - body))
                            pos = stop + 1
                            continue
                        if n - body <= MAX_BODY:
                            self.waiting_nul = True
                            break
                        errors.append(f"{command}: no NUL within {MAX_BODY >> 20} MiB: frame dropped")
                        skip_from = body
            # a frame that does not parse: pass over it up to the next NUL
            nul = data.find(b"\0", skip_from)
            if nul < 0:
                self.dropping = True
                return frames
            pos = nul + 1
        self.buf = bytearray(data[pos:])
        return frames

    def cut(self) -> None:
        """The message just pushed was cut by a gap (rule 6)."""
        if self.buf or self.need or self.waiting_nul:
            self.dropping = True
        self.buf = bytearray()
        self.need = 0
        self.waiting_nul = False


class StompDecoder(AppDecoder):
    """STOMP frames of one connection (see the module doc)."""

    name = "stomp"
    subprotocols = ("v12.stomp", "v11.stomp", "v10.stomp")

    def __init__(self) -> None:
        self.version = "1.2"
        self._streams = {"client": _Stream(), "server": _Stream()}
        self._connecting = False
        #: receipt id → the destination of the frame that asked for it
        self._receipts: BoundedMap[str, str | None] = BoundedMap()
        #: subscription id → destination
        self._subscriptions: BoundedMap[str, str] = BoundedMap()

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        """A first message that is a CONNECT or STOMP frame: 0.9."""
        return 0.9 if msg.payload.startswith(_CONNECT) else 0.0

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        stream = self._streams.get(msg.sender)
        if stream is None:
            raise AppMalformed(f"unknown sender {msg.sender!r}")
        if (msg.payload and not msg.payload.strip(b"\r\n") and not stream.buf and not stream.skip
                and not stream.dropping):
            return [AppMessage("stomp", "HEARTBEAT")]
        out: list[AppMessage] = []
        frames, errors = stream.push(msg.payload, self.version)
        for frame in frames:
            try:
                out.append(self._message(msg.sender, frame))
            except _Bad as exc:
                errors.append(str(exc))
        if not msg.complete:
            stream.cut()
        return decoded_or_raise(out, errors)

    def finish(self) -> list[AppMessage]:
        left = [f"{side}: {len(s.buf)} bytes of an unfinished frame at the end"
                for side, s in self._streams.items() if s.buf]
        if left:
            raise AppMalformed("; ".join(left))
        return []

    def _message(self, sender: str, frame: _Frame) -> AppMessage:
        command, headers = frame.command, frame.headers
        if (command in CLIENT_COMMANDS) != (sender == "client"):
            raise _Bad(f"{command} sent by the {sender}")
        fields: dict[str, Any] = {clip(k, 40): clip(headers[k]) for k in _FIELD_HEADERS if k in headers}
        if "login" in headers or "passcode" in headers:
            fields["login"] = True
        fields["body_len"] = frame.body_len
        destination = headers.get("destination")
        channel = clip(destination) if destination is not None else None
        if command in ("CONNECT", "STOMP"):
            self._connecting = True
            return AppMessage("stomp", command, correlation_id="connect", role="request", fields=fields)
        if command == "CONNECTED":
            self._connecting = False
            self.version = headers.get("version", "1.0")
            return AppMessage("stomp", command, correlation_id="connect", role="response", status="ok",
                              fields=fields)
        if command == "RECEIPT":
            rid = headers["receipt-id"]
            fields["receipt-id"] = clip(rid)
            return AppMessage("stomp", command, channel=self._receipts.pop(rid),
                              correlation_id=f"receipt:{clip(rid)}", role="response", status="ok",
                              fields=fields)
        if command == "ERROR":
            return self._error(headers, fields)
        if command == "SUBSCRIBE" and "id" in headers and channel is not None:
            self._subscriptions[headers["id"]] = channel
        elif command == "UNSUBSCRIBE" and "id" in headers:
            channel = self._subscriptions.pop(headers["id"])
        receipt = headers.get("receipt") if command in CLIENT_COMMANDS else None
        if receipt is None:
            return AppMessage("stomp", command, channel=channel, fields=fields)
        self._receipts[receipt] = channel
        return AppMessage("stomp", command, channel=channel, correlation_id=f"receipt:{clip(receipt)}",
                          role="request", fields=fields)

    def _error(self, headers: dict[str, str], fields: dict[str, Any]) -> AppMessage:
        """ERROR answers the receipt it names, else a CONNECT still waiting, else nothing."""
        rid = headers.get("receipt-id")
        if rid is not None:
            fields["receipt-id"] = clip(rid)
            return AppMessage("stomp", "ERROR", channel=self._receipts.pop(rid),
                              correlation_id=f"receipt:{clip(rid)}", role="response", status="error",
                              fields=fields)
        if self._connecting:
            self._connecting = False
            return AppMessage("stomp", "ERROR", correlation_id="connect", role="response", status="error",
                              fields=fields)
        return AppMessage("stomp", "ERROR", status="error", fields=fields)
