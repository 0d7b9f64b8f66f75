"""Application protocols inside WebSocket messages (issue 19): what a decoder is given, what it
gives back, and the registry that finds decoders.

A decoder is one module in analyzer/app/protocols/ defining one AppDecoder subclass; defining the
class registers it (AppDecoder.__init_subclass__), and analyzer.app.registry imports every module of
that package, so adding a protocol touches no other file.

One decoder object serves one WebSocket connection: it is fed that connection's data messages in
capture order, both directions, and keeps whatever state the protocol needs (MQTT's byte stream per
direction, Socket.IO's pending binary attachments, STOMP's subscriptions…).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["ROLES", "AppDecoder", "AppMalformed", "AppMessage", "WsMessage", "registered"]

#: AppMessage.role: a request opens an exchange, a response closes the oldest open request of the
#: same (protocol, correlation_id) on the connection, a message is neither
ROLES = ("request", "response", "message")

_REGISTRY: dict[str, type[AppDecoder]] = {}


@dataclass(slots=True)
class WsMessage:
    """One WebSocket data message as a decoder sees it."""

    conn_id: int
    message_id: int
    sender: str         # "client" or "server"
    ts_ns: int          # when the message's last frame was captured (ns since the epoch)
    text: bool          # a text message (opcode 1), else binary
    payload: bytes      # the whole payload, decompressed (permessage-deflate undone)
    complete: bool = True   # False: cut by a gap or the end of the capture (payload is what was seen)


@dataclass(slots=True)
class AppMessage:
    """One application message. A WebSocket message may carry several (MQTT packets, JSON-RPC
    batches, STOMP frames) or none (a partial MQTT packet); one may span several WebSocket messages
    (an MQTT packet across message boundaries, Socket.IO binary attachments): it is then reported
    at the WebSocket message that completed it."""

    protocol: str                   # the decoder's name: "socketio", "stomp", "mqtt", "jsonrpc"…
    type: str                       # packet type / command / kind: "EVENT", "SEND", "PUBLISH", "request"
    channel: str | None = None      # topic, destination, event name, method, GraphQL operation name
    correlation_id: str | None = None   # what pairs a request with its response (unique per meaning)
    role: str = "message"           # one of ROLES
    status: str | None = None       # responses: "ok", "error", or the protocol's code/reason
    fields: dict[str, Any] = field(default_factory=dict)   # a few decoded values, JSON-able, short


class AppMalformed(ValueError):
    """Raised by AppDecoder.feed for application data that does not parse; the message is the
    reason shown in the `app-protocol-malformed` problem row. The decoder stays usable: the next
    message is fed as usual (a decoder of a byte stream resynchronises or gives up by itself).

    `messages`: what did parse in the same WebSocket message (the valid elements of a JSON-RPC
    batch with one bad element), recorded as if feed had returned them."""

    def __init__(self, reason: str, messages: list[AppMessage] | None = None) -> None:
        super().__init__(reason)
        self.messages: list[AppMessage] = list(messages or ())


class AppDecoder(ABC):
    """The decoder of one protocol for one connection (see the module doc)."""

    #: the registry name, also AppMessage.protocol
    name: ClassVar[str]
    #: Sec-WebSocket-Protocol values (lowercase) that select this decoder with full confidence
    subprotocols: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = getattr(cls, "name", None)
        if isinstance(name, str) and name:
            _REGISTRY[name] = cls

    @classmethod
    @abstractmethod
    def sniff(cls, msg: WsMessage) -> float:
        """How likely (0 to 1) it is that a connection whose first data message is `msg` speaks
        this protocol, when no subprotocol chose a decoder. 0 when it cannot be; never raises."""

    @abstractmethod
    def feed(self, msg: WsMessage) -> list[AppMessage]:
        """The application messages `msg` completes (often one, possibly none or several).

        Raises:
            AppMalformed: the data does not parse (the reason is shown to the user).
        """

    def finish(self) -> list[AppMessage]:
        """At the connection's end: what is left (an incomplete packet is reported as such by
        raising AppMalformed, or returned with fields saying so). Default: nothing."""
        return []


def registered() -> dict[str, type[AppDecoder]]:
    """The decoders defined so far, by name (analyzer.app.registry imports them all first)."""
    return dict(_REGISTRY)
