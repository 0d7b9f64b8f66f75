"""Socket.IO v4 (protocol 5) over Engine.IO v4 on the WebSocket transport.

On WebSocket, Engine.IO sends one packet per message: a text message is `<type digit><data>`
(0 open, 1 close, 2 ping, 3 pong, 4 message, 5 upgrade, 6 noop) and a binary message is a message
packet carrying raw bytes. A Socket.IO packet rides in an Engine.IO message packet as
`<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]` (socket.io-protocol v5, and the
socket.io-parser decoder's reading of it: a namespace runs from its "/" to the next "," or the end;
the payload rules of its isPayloadValid: CONNECT an object, CONNECT_ERROR an object or a string,
DISCONNECT none, EVENT an array naming an event that is not reserved, ACK an array).
BINARY_EVENT and BINARY_ACK carry `{"_placeholder": true, "num": n}` objects in their JSON, filled
by the sender's next n binary messages; the packet is reported at the last of them. One whose
attachments stop short (the sender's next text packet, or the connection's end, comes first) is
an AppMalformed that still carries it, with fields["attachments_missing"].

Pairing (correlation ids):
- Engine.IO heartbeat: ping "2" (from the server in v4) → pong "3": "eio-ping"; the transport
  upgrade probe "2probe" → "3probe": "eio-probe".
- namespace connection: the client's CONNECT → the server's CONNECT (ok) or CONNECT_ERROR
  (status "error: <message>"): "c:connect:<namespace>".
- EVENT or BINARY_EVENT with an ack id → ACK or BINARY_ACK from the other side:
  "<sender initial>:<namespace>:<ack id>"; the ACK's channel is the event name it answers.

Credentials are not kept: a CONNECT's auth object gives only its key names (auth_keys), and the
query string protocol 4 clients append to a namespace ("/admin?token=…") is dropped
(namespace_query: true says there was one).

What is not decoded: Engine.IO v3 is read as v4 (its heartbeat from the client pairs the same way;
its binary messages' leading 0x04 is counted in attachment_bytes), and HTTP long-polling never
reaches a WebSocket decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.json_payload import FIELD_CHARS, clip, load_json
from analyzer.app.protocols._common import BoundedMap

__all__ = ["SocketIODecoder"]

#: Engine.IO v4 packet types by their digit (engine.io-protocol "Packet encoding")
EIO_TYPES = {
    ord("0"): "open", ord("1"): "close", ord("2"): "ping", ord("3"): "pong",
    ord("4"): "message", ord("5"): "upgrade", ord("6"): "noop",
}
#: Socket.IO protocol 5 packet types, indexed by their number
SIO_TYPES = ("CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK")
_CONNECT, _DISCONNECT, _EVENT, _ACK, _CONNECT_ERROR, _BINARY_EVENT, _BINARY_ACK = range(7)

#: event names a receiver refuses (socket.io-parser RESERVED_EVENTS: its isPayloadValid)
RESERVED_EVENTS = frozenset(
    ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"))
#: at most this many attachments to one packet (more is a hostile count, not a sender's)
MAX_ATTACHMENTS = 1000
#: at most this many ack ids remembered per connection to name the ACK's event (oldest forgotten)
MAX_OPEN_ACKS = 1024
#: a first message larger than this is not decoded to sniff the protocol
_MAX_SNIFF_BYTES = 1 << 20
#: ack ids and attachment counts longer than this are not numbers a sender produces
_MAX_DIGITS = 16

# type, attachments ("N-"), namespace up to "," or the end, ack id; the JSON payload follows
# (numbers are matched up to _MAX_DIGITS digits: a longer one leaves digits where JSON should be)
_SIO_HEADER = re.compile(rb"([0-6])(?:(\d{1,%d})-)?(?:(/[^,]*),?)?(\d{1,%d})?" % (_MAX_DIGITS, _MAX_DIGITS))

_OPEN_FIELDS = ("sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload")


@dataclass(slots=True)
class _Binary:
    """A BINARY_EVENT or BINARY_ACK waiting for its attachments."""

    message: AppMessage
    expected: int
    placeholders_error: str | None     # why the JSON's placeholders do not fit `expected`
    received: int = 0
    sizes: list[int] = field(default_factory=list)

    def done(self) -> AppMessage:
        """The packet with all its attachments.

        Raises:
            AppMalformed: its placeholders do not fit its attachment count (carrying the packet).
        """
        self.message.fields["attachment_bytes"] = sum(self.sizes)
        if self.placeholders_error:
            raise AppMalformed(f"{self.message.type}: {self.placeholders_error}", [self.message])
        return self.message

    def cut(self, why: str, after: list[AppMessage]) -> AppMalformed:
        """The error for this packet short of attachments, carrying it (with attachments_missing)
        and `after`, what the message that ended it decoded to."""
        self.message.fields["attachment_bytes"] = sum(self.sizes)
        self.message.fields["attachments_missing"] = self.expected - self.received
        return AppMalformed(
            f"{self.message.type}: {self.received} of {self.expected} attachment(s), then {why}",
            [self.message, *after])


def _placeholder_error(data: Any, expected: int) -> str | None:
    """Why the placeholders in `data` do not number 0..expected-1 once each (None: they do)."""
    seen: list[int] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            num = item.get("num")
            if item.get("_placeholder") is True and type(num) is int:
                seen.append(num)
            else:
                stack.extend(item.values())
    if sorted(seen) != list(range(expected)):
        return f"placeholders {sorted(seen)[:10]} do not match {expected} attachment(s)"
    return None


def _open_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The handshake values of an Engine.IO open packet, short: numbers, strings cut, the upgrade
    list comma-joined."""
    fields: dict[str, Any] = {}
    for key in _OPEN_FIELDS:
        value = info.get(key)
        if isinstance(value, list):
            value = ",".join(str(item) for item in value[:10])
        if isinstance(value, str):
            fields[key] = clip(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            fields[key] = value
    return fields


def _status_error(data: Any) -> str:
    """CONNECT_ERROR's status: its message (an object with "message" in v5, a string in v4)."""
    if isinstance(data, dict):
        message = data.get("message")
        return f"error: {clip(str(message))}" if message is not None else "error"
    if isinstance(data, str):
        return f"error: {clip(data)}"
    return "error"


class SocketIODecoder(AppDecoder):
    """Engine.IO v4 and Socket.IO protocol 5 on one WebSocket connection."""

    name: ClassVar[str] = "socketio"
    subprotocols: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._binary: dict[str, _Binary] = {}          # by sender: the packet collecting attachments
        self._acks: BoundedMap[str, str] = BoundedMap(MAX_OPEN_ACKS)   # correlation -> event name

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        if not msg.text:
            return 0.0
        head = msg.payload[:64]
        if head.startswith(b"0{") and b'"sid"' in head:
            return 0.95
        if msg.payload == b"2probe":
            return 0.9
        if head.startswith((b"40", b"42[", b"42/")) and len(msg.payload) <= _MAX_SNIFF_BYTES:
            try:        # "404 Not Found" is no CONNECT: the packet must decode
                cls().feed(msg)
            except AppMalformed:
                return 0.0
            return 0.7
        return 0.0

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        if not msg.text:
            return self._attachment(msg)
        payload = msg.payload
        if not payload:
            raise AppMalformed("empty Engine.IO packet")
        kind = EIO_TYPES.get(payload[0])
        if kind is None:
            raise AppMalformed(f"unknown Engine.IO packet type {clip(repr(payload[:1]))}")
        if kind != "message":
            return [self._engineio(kind, payload[1:], msg)]
        left = self._binary.pop(msg.sender, None)
        if left is None:
            return self._socketio(payload[1:], msg)
        # a new packet: the previous one will get no more attachments
        try:
            after = self._socketio(payload[1:], msg)
        except AppMalformed as exc:
            raise left.cut(f"a packet that is malformed too ({exc})", exc.messages) from None
        raise left.cut("a new packet", after)

    def finish(self) -> list[AppMessage]:
        left = list(self._binary.values())
        self._binary.clear()
        if not left:
            return []
        error = left[0].cut("the end of the connection", [])
        if len(left) == 2:      # both directions were waiting
            error = left[1].cut(f"the end of the connection; {error}", error.messages)
        raise error

    # Engine.IO

    def _engineio(self, kind: str, data: bytes, msg: WsMessage) -> AppMessage:
        if kind == "open":
            info = load_json(data, "Engine.IO open", complete=msg.complete)
            if not isinstance(info, dict):
                raise AppMalformed("Engine.IO open: the handshake data is not a JSON object")
            return AppMessage(self.name, kind, fields=_open_fields(info))
        if kind in ("ping", "pong"):
            probe = data == b"probe"
            fields = {"data": clip(data[:FIELD_CHARS * 4].decode("utf-8", "replace"))} if data else {}
            return AppMessage(
                self.name, kind, correlation_id="eio-probe" if probe else "eio-ping",
                role="request" if kind == "ping" else "response",
                status="ok" if kind == "pong" else None, fields=fields,
            )
        return AppMessage(self.name, kind)

    def _attachment(self, msg: WsMessage) -> list[AppMessage]:
        pending = self._binary.get(msg.sender)
        if pending is None:
            raise AppMalformed("binary message with no BINARY_EVENT or BINARY_ACK awaiting attachments")
        pending.received += 1
        pending.sizes.append(len(msg.payload))
        if pending.received < pending.expected:
            return []
        del self._binary[msg.sender]
        return [pending.done()]

    # Socket.IO

    def _socketio(self, body: bytes, msg: WsMessage) -> list[AppMessage]:
        header = _SIO_HEADER.match(body)
        if header is None:
            raise AppMalformed(f"not a Socket.IO packet: {clip(repr(body[:40]))}")
        ptype = int(header[1])
        kind = SIO_TYPES[ptype]
        attachments_text, nsp_raw, ack_text = header[2], header[3], header[4]
        rest = body[header.end():]
        if rest[:1].isdigit():
            raise AppMalformed(f"{kind}: a number longer than {_MAX_DIGITS} digits")
        binary = ptype in (_BINARY_EVENT, _BINARY_ACK)
        if binary != (attachments_text is not None):
            raise AppMalformed(f"{kind}: attachment count {'missing' if binary else 'not allowed'}")
        try:
            nsp = nsp_raw.decode() if nsp_raw is not None else "/"
        except UnicodeDecodeError:
            raise AppMalformed(f"{kind}: namespace is not UTF-8") from None
        nsp, query_mark, _ = nsp.partition("?")     # protocol 4's "/nsp?token=…": never kept
        data = load_json(rest, kind, complete=msg.complete) if rest else None
        ack_id = int(ack_text) if ack_text is not None else None
        fields: dict[str, Any] = {"namespace": clip(nsp)}
        if query_mark:
            fields["namespace_query"] = True
        if ack_id is not None:
            fields["ack_id"] = ack_id
        me = msg.sender[:1]
        if ptype in (_EVENT, _BINARY_EVENT):
            app = self._event(kind, nsp, ack_id, data, me, fields)
        elif ptype in (_ACK, _BINARY_ACK):
            app = self._ack(kind, nsp, ack_id, data, "s" if me == "c" else "c", fields)
        elif ptype == _CONNECT:
            app = self._connect(nsp, data, msg.sender, fields)
        elif ptype == _CONNECT_ERROR:
            if not isinstance(data, (str, dict)):
                raise AppMalformed("CONNECT_ERROR: the payload is neither a JSON object nor a string")
            app = AppMessage(self.name, kind, correlation_id=f"c:connect:{nsp}", role="response",
                             status=_status_error(data), fields=fields)
        else:
            if rest:
                raise AppMalformed("DISCONNECT: a payload (DISCONNECT has none)")
            app = AppMessage(self.name, kind, fields=fields)
        if not binary:
            return [app]
        expected = int(attachments_text)
        if expected > MAX_ATTACHMENTS:
            raise AppMalformed(f"{kind}: {expected} attachments (more than {MAX_ATTACHMENTS})")
        fields["attachments"] = expected
        pending = _Binary(app, expected, _placeholder_error(data, expected))
        if expected == 0:
            return [pending.done()]
        self._binary[msg.sender] = pending
        return []

    def _event(self, kind: str, nsp: str, ack_id: int | None, data: Any, me: str,
               fields: dict[str, Any]) -> AppMessage:
        if not isinstance(data, list) or not data:
            raise AppMalformed(f"{kind}: the payload is not a non-empty JSON array")
        event = data[0]
        if not isinstance(event, (str, int)) or isinstance(event, bool):
            raise AppMalformed(f"{kind}: the event name is not a string")
        if event in RESERVED_EVENTS:
            raise AppMalformed(f"{kind}: {event!r} is a reserved event name")
        channel = clip(str(event))
        fields["args"] = len(data) - 1
        if ack_id is None:
            return AppMessage(self.name, kind, channel=channel, fields=fields)
        correlation = f"{me}:{nsp}:{ack_id}"
        self._acks[correlation] = channel
        return AppMessage(self.name, kind, channel=channel, correlation_id=correlation,
                          role="request", fields=fields)

    def _ack(self, kind: str, nsp: str, ack_id: int | None, data: Any, asker: str,
             fields: dict[str, Any]) -> AppMessage:
        if ack_id is None:
            raise AppMalformed(f"{kind}: no ack id")
        if not isinstance(data, list):
            raise AppMalformed(f"{kind}: the payload is not a JSON array")
        correlation = f"{asker}:{nsp}:{ack_id}"
        fields["args"] = len(data)
        return AppMessage(self.name, kind, channel=self._acks.pop(correlation),
                          correlation_id=correlation, role="response", status="ok", fields=fields)

    def _connect(self, nsp: str, data: Any, sender: str, fields: dict[str, Any]) -> AppMessage:
        if data is not None and not isinstance(data, dict):
            raise AppMalformed("CONNECT: the payload is not a JSON object")
        correlation = f"c:connect:{nsp}"
        if sender == "client":
            if data:
                fields["auth_keys"] = clip(",".join(sorted(str(key) for key in data)))
            return AppMessage(self.name, "CONNECT", correlation_id=correlation, role="request",
                              fields=fields)
        if data and isinstance(data.get("sid"), str):
            fields["sid"] = clip(data["sid"])
        return AppMessage(self.name, "CONNECT", correlation_id=correlation, role="response",
                          status="ok", fields=fields)
