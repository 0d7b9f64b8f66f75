"""MQTT 3.1, 3.1.1 and 5.0 inside WebSocket messages (subprotocols "mqtt" and "mqttv3.1").

Control packets are a byte stream per direction (MQTT 5.0 §6.0, MQTT 3.1.1 §6: a WebSocket message
may hold several packets or part of one), so each direction keeps a buffer; a packet is reported at
the WebSocket message that completes it. The version comes from the client's CONNECT (3.1.1 until
one is seen).

Rules:
1. Fixed header (§2.1/§2.2): type 0 (or AUTH before MQTT 5), reserved flags not as the table says,
   QoS 3, or a Remaining Length longer than 4 bytes lose the packet boundaries: an AppMalformed,
   the buffer is dropped and the next WebSocket message of that direction is tried from its start;
   after MAX_RESYNC messages that do not start like a packet the direction is given up (one more
   AppMalformed) and its bytes are ignored.
2. A packet whose body does not parse (truncated fields, bad UTF-8, U+0000, unknown property,
   wildcard in a PUBLISH topic, wrong direction…) is an AppMalformed naming the packet; its length
   is known, so the stream stays in step and the packets around it are decoded
   (AppMalformed.messages holds those of the same WebSocket message).
3. Bounded memory: a packet longer than MAX_PACKET that does not arrive whole is not buffered: its
   bytes are skipped (an AppMalformed says so) and decoding resumes after it.
4. At most MAX_PER_MESSAGE packets are decoded from one WebSocket message; the rest of it is
   dropped (an AppMalformed) and the next message is tried from its start as in rule 1.
5. A WebSocket message cut by a gap (complete=False) ends the partial packet it carried; the next
   message is tried from its start as in rule 1, without a report.

Pairing (app_conv): CONNECT→CONNACK "connect"; PUBLISH QoS 1→PUBACK and QoS 2→PUBREC
"<publisher initial>:<packet id>", PUBREL→PUBCOMP "<publisher initial>:<packet id>:rel";
SUBSCRIBE→SUBACK and UNSUBSCRIBE→UNSUBACK "c:<packet id>"; PINGREQ→PINGRESP "ping". Status: "ok"
for a reason code below 0x80 (3.1.1: return code 0 / granted QoS), else the code as "0x87".
"""

from __future__ import annotations

import re
import struct
from typing import Any

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.json_payload import clip
from analyzer.app.protocols import _common
from analyzer.app.protocols._common import BoundedMap, decoded_or_raise

__all__ = ["MAX_ITEMS", "MAX_PACKET", "MAX_RESYNC", "PACKET_TYPES", "REASON_CODES", "MqttDecoder"]

#: §2.1.2 MQTT Control Packet types
PACKET_TYPES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
    8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT", 15: "AUTH",
}
#: §2.1.3 flags that are not PUBLISH's: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, others 0
_FLAGS = {6: 2, 8: 2, 10: 2}
#: packets only one side may send (§3.x "sent by")
_SENDER = {1: "client", 8: "client", 10: "client", 12: "client",
           2: "server", 9: "server", 11: "server", 13: "server"}

#: longest packet buffered across WebSocket messages (bytes, fixed header included)
MAX_PACKET = 16 << 20
#: WebSocket messages tried for a packet boundary after the boundaries were lost
MAX_RESYNC = 8
#: properties, or topic filters, read from one packet (the rest of the block is passed over)
MAX_ITEMS = 256

#: MQTT 5.0 §2.4 reason codes (0x00 is "Success", "Normal disconnection" or "Granted QoS 0")
REASON_CODES = {
    0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2",
    0x04: "Disconnect with Will Message", 0x10: "No matching subscribers",
    0x11: "No subscription existed", 0x18: "Continue authentication", 0x19: "Re-authenticate",
    0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password", 0x87: "Not authorized",
    0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned", 0x8B: "Server shutting down",
    0x8C: "Bad authentication method", 0x8D: "Keep Alive timeout", 0x8E: "Session taken over",
    0x8F: "Topic Filter invalid", 0x90: "Topic Name invalid", 0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found", 0x93: "Receive Maximum exceeded", 0x94: "Topic Alias invalid",
    0x95: "Packet too large", 0x96: "Message rate too high", 0x97: "Quota exceeded",
    0x98: "Administrative action", 0x99: "Payload format invalid", 0x9A: "Retain not supported",
    0x9B: "QoS not supported", 0x9C: "Use another server", 0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported", 0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time", 0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}
#: MQTT 3.1.1 §3.2.2.3 CONNACK return codes
_CONNACK_V3 = {
    0: "Connection Accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
    3: "Server unavailable", 4: "bad user name or password", 5: "not authorized",
}
#: MQTT 3.1.1 §3.9.3 SUBACK return codes
_SUBACK_V3 = {0: "Success - Maximum QoS 0", 1: "Success - Maximum QoS 1", 2: "Success - Maximum QoS 2",
              0x80: "Failure"}

_SUBACK_V3_CODES = bytes(_SUBACK_V3)
_FAILED = re.compile(rb"[\x80-\xff]")

#: MQTT 5.0 §2.2.2.2 properties: identifier → (name, data type)
_PROPERTIES = {
    0x01: ("payload_format_indicator", "byte"), 0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"), 0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"), 0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"), 0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"), 0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"), 0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"), 0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"), 0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"), 0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"), 0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"), 0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"), 0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
#: properties that may appear more than once (§3.3.2.3.8, §3.3.2.3.7)
_REPEATABLE = frozenset({"user_property", "subscription_identifier"})

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class _Bad(Exception):
    """A packet body that does not parse (its reason)."""


class _Reader:
    """Fields of one packet body, read from the front (§1.5 data representation)."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n > self.end - self.pos:
            raise _Bad(f"truncated {what} (needs {n} bytes, {self.end - self.pos} left)")
        start = self.pos
        self.pos += n
        return self.data[start:self.pos]

    def u8(self, what: str) -> int:
        if self.pos >= self.end:
            raise _Bad(f"truncated {what} (needs 1 byte, 0 left)")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self, what: str) -> int:
        value: int = _U16.unpack(self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = _U32.unpack(self.take(4, what))[0]
        return value

    def varint(self, what: str) -> int:
        """§1.5.5 Variable Byte Integer: at most 4 bytes."""
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise _Bad(f"{what} longer than 4 bytes")

    def binary(self, what: str) -> bytes:
        return bytes(self.take(self.u16(what), what))

    def string(self, what: str) -> str:
        """§1.5.4 UTF-8 Encoded String: well-formed UTF-8 without U+0000."""
        raw = self.take(self.u16(what), what)
        try:
            text = str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise _Bad(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if "\x00" in text:
            raise _Bad(f"{what} contains U+0000")
        return text

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise _Bad(f"{self.end - self.pos} bytes after the end of the {what}")


def _properties(r: _Reader) -> dict[str, Any]:
    """§2.2.2 a Property Length then the properties (values shortened for `fields`)."""
    length = r.varint("property length")
    if length > r.left():
        raise _Bad(f"property length {length} beyond the packet ({r.left()} bytes left)")
    stop = r.pos + length
    props: dict[str, Any] = {}
    saved_end, r.end = r.end, stop
    try:
        for _ in range(MAX_ITEMS):
            if r.pos >= stop:
                break
            ident = r.varint("property identifier")
            spec = _PROPERTIES.get(ident)
            if spec is None:
                raise _Bad(f"unknown property identifier 0x{ident:02x}")
            name, kind = spec
            value: Any
            if kind == "byte":
                value = r.u8(name)
            elif kind == "u16":
                value = r.u16(name)
            elif kind == "u32":
                value = r.u32(name)
            elif kind == "varint":
                value = r.varint(name)
            elif kind == "str":
                value = clip(r.string(name))
            elif kind == "bin":
                value = f"<{len(r.binary(name))} bytes>"
            else:
                value = [clip(r.string(name)), clip(r.string(name))]
            if name in _REPEATABLE:
                props.setdefault(name, []).append(value)
            elif name in props:
                raise _Bad(f"property {name} given twice")
            else:
                props[name] = value
        else:
            if r.pos < stop:        # bounded work and memory: the rest of the block is not read
                props["unread_bytes"] = stop - r.pos
                r.pos = stop
    finally:
        r.end = saved_end
    return props


def _add_properties(r: _Reader, fields: dict[str, Any], key: str = "properties") -> dict[str, Any]:
    """MQTT 5 properties read into fields[key] (left out when there are none)."""
    props = _properties(r)
    if props:
        fields[key] = props
    return props


def _status(code: int) -> str:
    return "ok" if code < 0x80 else f"0x{code:02x}"


def _header_error(ptype: int, flags: int) -> str | None:
    """Why a fixed header's first byte cannot start a packet (None: it can)."""
    if ptype == 0:
        return "reserved packet type 0"
    if ptype == 3:
        return "PUBLISH with QoS 3" if flags & 0x06 == 0x06 else None
    if flags != _FLAGS.get(ptype, 0):
        return f"{PACKET_TYPES[ptype]} with reserved flags 0x{flags:x}"
    return None


class _Stream:
    """One direction's bytes cut into control packets (rules 1, 3, 4 and 5 of the module doc)."""

    __slots__ = ("buf", "dead", "lost", "misses", "need", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = 0       # length of the packet whose start is in buf (0: header incomplete)
        self.skip = 0       # bytes of an oversized packet still to pass over
        self.lost = False   # boundaries lost: try the next message's start
        self.misses = 0     # messages tried since they were lost
        self.dead = False   # given up

    def push(self, payload: bytes) -> tuple[list[tuple[int, int, memoryview]], list[str]]:
        """The whole packets (type, flags, body) this message completes, and framing errors."""
        errors: list[str] = []
        if self.dead:
            return [], errors
        data = memoryview(payload)
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = data[n:]
            if not data:
                return [], errors
        if self.lost:
            if not _plausible_start(data):
                self.misses += 1
                if self.misses >= MAX_RESYNC:
                    self.dead = True
                    errors.append(f"no packet starts any of {self.misses} messages since the packet "
                                  "boundaries were lost: this direction is no longer decoded")
                return [], errors
            self.lost = False
            self.misses = 0
        if self.buf:
            self.buf += data
            if len(self.buf) < self.need:
                return [], errors
            data = memoryview(bytes(self.buf))
            self.buf = bytearray()
            self.need = 0
        return self._split(data, errors), errors

    def _split(self, data: memoryview, errors: list[str]) -> list[tuple[int, int, memoryview]]:
        packets: list[tuple[int, int, memoryview]] = []
        n = len(data)
        off = 0
        while n - off >= 2:
            if len(packets) >= _common.MAX_PER_MESSAGE:
                errors.append(f"over {_common.MAX_PER_MESSAGE} packets in one message: its last "
                              f"{n - off} bytes are not decoded")
                self.lost = True
                return packets
            first = data[off]
            problem = _header_error(first >> 4, first & 0x0F)
            length, pos = 0, off + 1
            if problem is None:
                for shift in (0, 7, 14, 21):
                    if pos >= n:
                        length = -1     # header not complete yet
                        break
                    byte = data[pos]
                    pos += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                else:
                    problem = "remaining length longer than 4 bytes"
            if problem is not None:
                errors.append(f"{problem}: packet boundaries lost")
                self.lost = True
                return packets
            if length < 0:
                break
            total = pos - off + length
            if off + total > n:
                if total > MAX_PACKET:
                    errors.append(f"{PACKET_TYPES[first >> 4]} of {total} bytes over the "
                                  f"{MAX_PACKET >> 20} MiB limit: skipped")
                    self.skip = off + total - n
                    return packets
                self.need = total
                break
            packets.append((first >> 4, first & 0x0F, data[pos:off + total]))
            off += total
        if off < n:
            self.buf = bytearray(data[off:])
        return packets

    def cut(self) -> None:
        """The message just pushed was cut by a gap: what it started cannot be finished."""
        self.buf = bytearray()
        self.need = self.skip = 0
        if not self.dead:
            self.lost = True


def _plausible_start(data: memoryview | bytes) -> bool:
    """Whether a message may start with a packet: a valid first byte and Remaining Length."""
    if not data or _header_error(data[0] >> 4, data[0] & 0x0F) is not None:
        return False
    tail = data[1:5]
    return not (len(tail) == 4 and all(b & 0x80 for b in tail))


class MqttDecoder(AppDecoder):
    """MQTT 3.1/3.1.1/5.0 control packets of one connection (see the module doc)."""

    name = "mqtt"
    subprotocols = ("mqtt", "mqttv3.1")

    def __init__(self) -> None:
        self.v5 = False
        self._streams = {"client": _Stream(), "server": _Stream()}
        #: correlation id of an open request → its topic / filters (for the response's channel)
        self._topics: BoundedMap[str, str] = BoundedMap()
        #: MQTT 5 topic aliases per sender (§3.3.2.3.4: each direction has its own)
        self._aliases: dict[str, BoundedMap[int, str]] = {
            "client": BoundedMap(1024), "server": BoundedMap(1024)}

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        """A CONNECT with protocol name "MQTT" or "MQIsdp" (§3.1.2.1): 0.95."""
        data = msg.payload
        if msg.text or len(data) < 10 or data[0] != 0x10:
            return 0.0
        pos = 1
        while pos < 5 and data[pos] & 0x80:
            pos += 1
        name = data[pos + 1:pos + 9]
        return 0.95 if name.startswith((b"\x00\x04MQTT", b"\x00\x06MQIsdp")) else 0.0

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        stream = self._streams.get(msg.sender)
        if stream is None:
            raise AppMalformed(f"unknown sender {msg.sender!r}")
        packets, errors = stream.push(msg.payload)
        out: list[AppMessage] = []
        for ptype, flags, body in packets:
            try:
                out.append(self._decode(msg.sender, ptype, flags, body))
            except _Bad as exc:
                errors.append(f"{PACKET_TYPES[ptype]}: {exc}")
        if not msg.complete:
            stream.cut()
        return decoded_or_raise(out, errors)

    def finish(self) -> list[AppMessage]:
        left = [f"{side}: {len(s.buf)} bytes of an unfinished packet"
                + (f" of {s.need}" if s.need else "") + " at the end"
                for side, s in self._streams.items() if s.buf and not s.dead]
        if left:
            raise AppMalformed("; ".join(left))
        return []

    # -- packets -----------------------------------------------------------------------------

    def _decode(self, sender: str, ptype: int, flags: int, body: memoryview) -> AppMessage:
        if _SENDER.get(ptype, sender) != sender:
            raise _Bad(f"sent by the {sender}")
        r = _Reader(body)
        me = sender[0]
        peer = "s" if me == "c" else "c"
        if ptype == 1:
            return self._connect(r)
        if ptype == 2:
            return self._connack(r)
        if ptype == 3:
            return self._publish(r, sender, flags)
        if ptype in (4, 5, 6, 7):
            return self._ack(r, ptype, me, peer)
        if ptype in (8, 10):
            return self._subscribe(r, ptype, me)
        if ptype in (9, 11):
            return self._suback(r, ptype, peer)
        if ptype in (12, 13):
            r.done(PACKET_TYPES[ptype])
            return AppMessage("mqtt", PACKET_TYPES[ptype], correlation_id="ping",
                              role="request" if ptype == 12 else "response",
                              status=None if ptype == 12 else "ok")
        return self._disconnect_or_auth(r, ptype)

    def _connect(self, r: _Reader) -> AppMessage:
        """§3.1 CONNECT: the version of everything that follows comes from here."""
        proto = r.string("protocol name")
        if proto not in ("MQTT", "MQIsdp"):
            raise _Bad(f"protocol name {clip(proto, 40)!r}")
        level = r.u8("protocol level")
        self.v5 = level == 5
        cflags = r.u8("connect flags")
        if cflags & 0x01:
            raise _Bad("reserved connect flag set")
        will, will_qos = bool(cflags & 0x04), (cflags >> 3) & 3
        if will_qos == 3 or (not will and cflags & 0x38):
            raise _Bad(f"will flags 0x{cflags & 0x3C:02x}")
        fields: dict[str, Any] = {"protocol": proto, "level": level, "keepalive": r.u16("keep alive"),
                                  "clean_start": bool(cflags & 0x02)}
        if self.v5:
            _add_properties(r, fields)
        fields["client_id"] = clip(r.string("client identifier"))
        if will:
            if self.v5:
                _add_properties(r, fields, "will_properties")
            fields["will_topic"] = clip(r.string("will topic"))
            fields["will_payload_len"] = len(r.binary("will payload"))
            fields["will_qos"] = will_qos
            fields["will_retain"] = bool(cflags & 0x20)
        fields["username"] = bool(cflags & 0x80)
        if cflags & 0x80:
            r.string("user name")
        fields["password"] = bool(cflags & 0x40)
        if cflags & 0x40:
            r.binary("password")
        r.done("CONNECT")
        return AppMessage("mqtt", "CONNECT", correlation_id="connect", role="request", fields=fields)

    def _connack(self, r: _Reader) -> AppMessage:
        ack = r.u8("acknowledge flags")
        if ack & 0xFE:
            raise _Bad(f"reserved acknowledge flags 0x{ack:02x}")
        code = r.u8("reason code")
        fields: dict[str, Any] = {"session_present": bool(ack & 1), "reason_code": code}
        if self.v5 and r.left():    # a v5 CONNACK has properties; 2 bytes is a 3.1.1 refusal
            fields["reason"] = REASON_CODES.get(code, "unknown")
            _add_properties(r, fields)
            status = _status(code)
        else:
            fields["reason"] = _CONNACK_V3.get(code, "unknown")
            status = "ok" if code == 0 else f"0x{code:02x}"
        r.done("CONNACK")
        return AppMessage("mqtt", "CONNACK", correlation_id="connect", role="response",
                          status=status, fields=fields)

    def _publish(self, r: _Reader, sender: str, flags: int) -> AppMessage:
        """§3.3 PUBLISH; QoS 1 and 2 are requests of the publisher."""
        qos = (flags >> 1) & 3
        topic = r.string("topic name")
        fields: dict[str, Any] = {"qos": qos, "retain": bool(flags & 1), "dup": bool(flags & 8)}
        if qos:
            pid = fields["packet_id"] = r.u16("packet identifier")
            if pid == 0:
                raise _Bad("packet identifier 0")
        elif flags & 8:
            raise _Bad("DUP set on a QoS 0 message")
        if self.v5:
            alias = _add_properties(r, fields).get("topic_alias")
            if alias is not None:
                fields["topic_alias"] = alias
                if alias == 0:
                    raise _Bad("topic alias 0")
                aliases = self._aliases[sender]
                if topic:
                    aliases[alias] = clip(topic)
                else:
                    topic = aliases.get(alias) or ""
        if "+" in topic or "#" in topic:
            raise _Bad(f"wildcard in the topic name {clip(topic, 60)!r}")
        if not topic and "topic_alias" not in fields:
            raise _Bad("empty topic name")
        fields["payload_len"] = r.left()
        channel = clip(topic) if topic else None
        if not qos:
            return AppMessage("mqtt", "PUBLISH", channel=channel, fields=fields)
        corr = f"{sender[0]}:{fields['packet_id']}"
        if channel is not None:
            self._topics[corr] = channel
        return AppMessage("mqtt", "PUBLISH", channel=channel, correlation_id=corr, role="request",
                          fields=fields)

    def _ack(self, r: _Reader, ptype: int, me: str, peer: str) -> AppMessage:
        """§3.4-3.7 PUBACK, PUBREC, PUBREL, PUBCOMP: a packet id, MQTT 5 a reason and properties."""
        name = PACKET_TYPES[ptype]
        pid = r.u16("packet identifier")
        fields: dict[str, Any] = {"packet_id": pid}
        code = 0
        if self.v5:     # §3.4.2.1: no reason code means 0x00 Success
            code = r.u8("reason code") if r.left() else 0
            fields["reason_code"] = code
            fields["reason"] = REASON_CODES.get(code, "unknown")
            if r.left():
                _add_properties(r, fields)
        r.done(name)
        if ptype == 6:      # PUBREL: the publisher's second request of QoS 2
            corr = f"{me}:{pid}"
            return AppMessage("mqtt", name, channel=self._topics.get(corr), correlation_id=corr + ":rel",
                              role="request", fields=fields)
        corr = f"{peer}:{pid}"
        if ptype == 7:
            return AppMessage("mqtt", name, channel=self._topics.pop(corr), correlation_id=corr + ":rel",
                              role="response", status=_status(code), fields=fields)
        # PUBACK ends QoS 1; PUBREC keeps the topic for the PUBREL unless it refused
        channel = self._topics.pop(corr) if ptype == 4 or code >= 0x80 else self._topics.get(corr)
        return AppMessage("mqtt", name, channel=channel, correlation_id=corr, role="response",
                          status=_status(code), fields=fields)

    def _id_and_properties(self, r: _Reader) -> tuple[int, dict[str, Any]]:
        """The packet identifier and, in MQTT 5, the properties that follow it."""
        pid = r.u16("packet identifier")
        fields: dict[str, Any] = {"packet_id": pid}
        if self.v5:
            _add_properties(r, fields)
        return pid, fields

    def _subscribe(self, r: _Reader, ptype: int, me: str) -> AppMessage:
        """§3.8 SUBSCRIBE (topic filters with their options) and §3.10 UNSUBSCRIBE (filters);
        channel = the filters, comma-joined."""
        pid, fields = self._id_and_properties(r)
        filters: list[Any] = []
        names: list[str] = []
        while r.left():
            if len(names) >= MAX_ITEMS:     # bounded work and memory: the rest is not read
                fields["unread_bytes"] = r.left()
                r.pos = r.end
                break
            topic = r.string("topic filter")
            names.append(topic)
            if ptype == 10:
                filters.append(clip(topic, 100))
                continue
            options = r.u8("subscription options")
            if options & (0xC0 if self.v5 else 0xFC) or options & 3 == 3 or (options >> 4) & 3 == 3:
                raise _Bad(f"subscription options 0x{options:02x}")
            filters.append([clip(topic, 100), options & 3])
        if not names:
            raise _Bad("no topic filter")
        fields["filters"] = filters[:20]
        corr = f"{me}:{pid}"
        channel = clip(",".join(names))
        self._topics[corr] = channel
        return AppMessage("mqtt", PACKET_TYPES[ptype], channel=channel, correlation_id=corr,
                          role="request", fields=fields)

    def _suback(self, r: _Reader, ptype: int, peer: str) -> AppMessage:
        """§3.9 SUBACK / §3.11 UNSUBACK: one reason code per filter (3.1.1 UNSUBACK: none)."""
        name = PACKET_TYPES[ptype]
        pid, fields = self._id_and_properties(r)
        failed = None
        if self.v5 or ptype == 9:
            codes = bytes(r.take(r.left(), "reason codes"))
            if not codes:
                raise _Bad("no reason code")
            if not self.v5 and codes.translate(None, _SUBACK_V3_CODES):
                raise _Bad(f"return codes {list(codes[:8])}")
            fields["reason_codes"] = list(codes[:20])
            failed = _FAILED.search(codes)
        r.done(name)
        corr = f"{peer}:{pid}"
        return AppMessage("mqtt", name, channel=self._topics.pop(corr), correlation_id=corr, role="response",
                          status=_status(failed[0][0]) if failed else "ok", fields=fields)

    def _disconnect_or_auth(self, r: _Reader, ptype: int) -> AppMessage:
        """§3.14 DISCONNECT and §3.15 AUTH (MQTT 5 only): an optional reason code and properties."""
        name = PACKET_TYPES[ptype]
        if not self.v5:
            if ptype == 15:
                raise _Bad("AUTH before MQTT 5")
            r.done(name)
            return AppMessage("mqtt", name)
        code = r.u8("reason code") if r.left() else 0
        fields: dict[str, Any] = {"reason_code": code, "reason": REASON_CODES.get(code, "unknown")}
        if r.left():
            _add_properties(r, fields)
        r.done(name)
        return AppMessage("mqtt", name, status=_status(code), fields=fields)
