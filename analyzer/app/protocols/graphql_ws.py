"""GraphQL over WebSocket: graphql-transport-ws (enisdenjo/graphql-ws PROTOCOL.md, subprotocol
"graphql-transport-ws") and the older subscriptions-transport-ws (apollographql PROTOCOL.md, whose
subprotocol is, confusingly, "graphql-ws").

Both send one JSON object per WebSocket message: {"type", "id"?, "payload"?}. Pairing:
- connection_init → connection_ack (or the old protocol's connection_error): "init";
- ping → pong (graphql-transport-ws, either side may ping): "<pinger initial>:ping";
- subscribe / start → the first next / data, error or server complete of that id: "c:<id>"
  (the latency to the first result); the later results are messages with the same correlation id,
  and the client's complete / stop (a cancel) is a message. An id started again later is a new
  exchange, "c:<id>#<n>" for its n-th start, so that an operation cancelled unanswered never takes
  the next one's answer.
The operation's type and name are read from the query text by a cheap scan of its top-level
tokens (comments, strings, parentheses and selection sets skipped), never a full GraphQL parse;
channel = operationName, else the operation's own name, else its first root field. Variables are
not kept. Ids must be strings; integers are accepted and shown as their decimal text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.json_payload import clip, load_json
from analyzer.app.protocols._common import BoundedMap

__all__ = ["GraphQLTransportWsDecoder", "Operation", "SubscriptionsTransportWsDecoder",
           "parse_operation"]

#: at most this many characters of a query are scanned for its operation
MAX_QUERY_CHARS = 65536
#: at most this many operations remembered per connection (the oldest forgotten)
MAX_OPERATIONS = 1024
#: first messages larger than this are not parsed to sniff the protocol
_MAX_SNIFF_BYTES = 1 << 20

# GraphQL's ignored tokens; a comment is taken whole (to its line's end), never cut short to let
# its tail pass for a name
_IGNORED = r"(?:[\s,\ufeff]|#[^\n\r]*(?![^\n\r]))*"
_NAME = r"([_A-Za-z][_0-9A-Za-z]*)"
# the tokens that matter at the top level of a GraphQL document; strings and comments are
# matched only so that nothing inside them counts. An unterminated string runs to its line's end
# (a block string to the end): each is consumed once, so hostile quoting stays linear.
_TOKEN = re.compile(
    r'#[^\n\r]*|"""(?:\\"""|[\s\S])*?(?:"""|\Z)|"(?:\\.|[^"\\\n\r])*"?|[{}()]'
    r"|(?<![_0-9A-Za-z$])(query|mutation|subscription|fragment)(?![_0-9A-Za-z])",
)
_NAME_AT = re.compile(_IGNORED + _NAME)
_FIELD_AT = re.compile(_IGNORED + _NAME + rf"(?:{_IGNORED}:{_IGNORED}{_NAME})?")


class Operation(NamedTuple):
    """What a GraphQL document's selected operation is."""

    type: str | None        # "query", "mutation", "subscription"; None when not found
    name: str | None        # the operation's name, None when anonymous
    root_field: str | None  # the first field of its selection set (not an alias)


def parse_operation(query: str, operation_name: str | None = None) -> Operation:
    """The operation of `query` that `operation_name` selects (else its first operation).

    A `{ … }` at the top level is an anonymous query (the shorthand); fragments are skipped.
    """
    text = query[:MAX_QUERY_CHARS]
    depth = parens = 0
    pending: str | None = None      # the keyword whose selection set "{" comes next
    pending_name: str | None = None
    for token in _TOKEN.finditer(text):
        keyword = token[1]
        if keyword is not None:
            if depth == 0 and parens == 0:
                pending = keyword
                named = _NAME_AT.match(text, token.end())
                pending_name = named[1] if named else None
            continue
        char = token[0]
        if char == "(":
            parens += 1
        elif char == ")":
            parens = max(0, parens - 1)
        elif parens or char[0] in '#"':
            continue
        elif char == "{":
            if depth == 0 and pending != "fragment":
                kind, name = (pending, pending_name) if pending else ("query", None)
                if operation_name is None or operation_name == name:
                    field = _FIELD_AT.match(text, token.end())
                    root = (field[2] or field[1]) if field else None
                    return Operation(kind, name, root)
            if depth == 0:
                pending = pending_name = None
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
    return Operation(None, operation_name, None)


def _error_status(payload: Any) -> str:
    """"error: <first message>" of a GraphQL error list, an error object or a string."""
    first = payload[0] if isinstance(payload, list) and payload else payload
    if isinstance(first, dict):
        first = first.get("message")
    return f"error: {clip(first)}" if isinstance(first, str) else "error"


@dataclass(slots=True)
class _Op:
    channel: str | None
    correlation_id: str
    answered: bool = False


class _GraphQLOverWs(AppDecoder):
    """What both protocols share: one JSON object per message, a type table, operations by id."""

    #: message type -> (who may send it: "client", "server" or "both"; what it does)
    TYPES: ClassVar[dict[str, tuple[str, str]]]
    #: the types only this protocol has (sniffing: 0.9), the others sniff at SHARED_CONFIDENCE
    OWN_TYPES: ClassVar[frozenset[str]]
    SHARED_CONFIDENCE: ClassVar[float]

    def __init__(self) -> None:
        self._ops: BoundedMap[str, _Op] = BoundedMap(MAX_OPERATIONS)   # by id, until it ends
        self._uses: BoundedMap[str, int] = BoundedMap(MAX_OPERATIONS)  # how often an id started

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        if not msg.payload.startswith(b"{") or len(msg.payload) > _MAX_SNIFF_BYTES:
            return 0.0
        try:
            obj = json.loads(msg.payload)
        except (ValueError, RecursionError):
            return 0.0
        if not isinstance(obj, dict) or not obj.keys() <= {"type", "id", "payload"}:
            return 0.0
        kind = obj.get("type")
        if not isinstance(kind, str) or kind not in cls.TYPES:
            return 0.0
        return 0.9 if kind in cls.OWN_TYPES else cls.SHARED_CONFIDENCE

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        obj = load_json(msg.payload, self.name, complete=msg.complete)
        if not isinstance(obj, dict):
            raise AppMalformed("the message is not a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise AppMalformed('the message has no string "type"')
        allowed, action = self.TYPES.get(kind, ("", ""))
        if not action:
            raise AppMalformed(f"unknown message type {clip(kind)!r}")
        if allowed not in ("both", msg.sender):
            raise AppMalformed(f"{kind} sent by the {msg.sender} (only the {allowed} may send it)")
        op_id = obj.get("id")
        if isinstance(op_id, int) and not isinstance(op_id, bool):
            op_id = str(op_id)
        if op_id is not None and not isinstance(op_id, str):
            raise AppMalformed(f"{kind}: the id is not a string")
        payload = obj.get("payload")
        me = msg.sender[:1]
        if action == "init":
            return [self._message(kind, correlation_id="init", role="request")]
        if action in ("ack", "init_error"):
            status = "ok" if action == "ack" else _error_status(payload)
            return [self._message(kind, correlation_id="init", role="response", status=status)]
        if action == "ping":
            return [self._message(kind, correlation_id=f"{me}:ping", role="request")]
        if action == "pong":
            asker = "s" if me == "c" else "c"
            return [self._message(kind, correlation_id=f"{asker}:ping", role="response",
                                  status="ok")]
        if action == "message":
            return [self._message(kind)]
        if op_id is None and not (action == "error" and self.name == "subscriptions-transport-ws"):
            raise AppMalformed(f"{kind}: no id")
        if action == "start":
            return [self._start(kind, op_id or "", payload)]
        return [self._result(kind, action, op_id, payload, msg.sender)]

    def _message(self, kind: str, **how: Any) -> AppMessage:
        return AppMessage(self.name, kind, **how)

    def _start(self, kind: str, op_id: str, payload: Any) -> AppMessage:
        if not isinstance(payload, dict):
            raise AppMalformed(f"{kind}: the payload is not a JSON object")
        query, name = payload.get("query"), payload.get("operationName")
        if query is not None and not isinstance(query, str):
            raise AppMalformed(f"{kind}: the query is not a string")
        if name is not None and not isinstance(name, str):
            raise AppMalformed(f"{kind}: the operationName is not a string")
        operation = parse_operation(query, name) if query else Operation(None, name, None)
        channel = operation.name or operation.root_field
        channel = clip(channel) if channel else None
        fields: dict[str, Any] = {"id": clip(op_id)}
        if operation.type:
            fields["operation_type"] = operation.type
        if operation.name:
            fields["operation_name"] = clip(operation.name)
        if operation.root_field:
            fields["root_field"] = clip(operation.root_field)
        if query is None:
            fields["persisted"] = True
        # an id used again (after its operation ended, or cancelled unanswered) is a new exchange
        uses = (self._uses.get(op_id) or 0) + 1
        self._uses[op_id] = uses
        correlation = f"c:{op_id}" if uses == 1 else f"c:{op_id}#{uses}"
        self._ops[op_id] = _Op(channel, correlation)
        return AppMessage(self.name, kind, channel=channel, correlation_id=correlation,
                          role="request", fields=fields)

    def _result(self, kind: str, action: str, op_id: str | None, payload: Any,
                sender: str) -> AppMessage:
        """next/data, error and complete/stop: the first answer from the server is the response."""
        op = self._ops.get(op_id) if op_id is not None else None
        fields: dict[str, Any] = {"id": clip(op_id)} if op_id is not None else {}
        status: str | None = None
        if action == "next":
            if not isinstance(payload, dict):
                raise AppMalformed(f"{kind}: the payload is not a JSON object")
            errors = payload.get("errors")
            if errors:
                fields["errors"] = len(errors) if isinstance(errors, list) else 1
            status = _error_status(errors) if errors else "ok"
        elif action == "error":
            status = _error_status(payload)
        else:
            status = "ok"
        if action != "next" and op_id is not None:
            self._ops.pop(op_id)     # error and complete end the operation
        role = "message"
        if op is not None and sender == "server" and not op.answered:
            op.answered = True
            role = "response"
        correlation = op.correlation_id if op else f"c:{op_id}" if op_id is not None else None
        return AppMessage(self.name, kind, channel=op.channel if op else None,
                          correlation_id=correlation,
                          role=role, status=status if sender == "server" else None, fields=fields)


class GraphQLTransportWsDecoder(_GraphQLOverWs):
    """graphql-transport-ws (the graphql-ws library's protocol)."""

    name: ClassVar[str] = "graphql-transport-ws"
    subprotocols: ClassVar[tuple[str, ...]] = ("graphql-transport-ws",)
    TYPES: ClassVar[dict[str, tuple[str, str]]] = {
        "connection_init": ("client", "init"),
        "connection_ack": ("server", "ack"),
        "ping": ("both", "ping"),
        "pong": ("both", "pong"),
        "subscribe": ("client", "start"),
        "next": ("server", "next"),
        "error": ("server", "error"),
        "complete": ("both", "complete"),
    }
    OWN_TYPES: ClassVar[frozenset[str]] = frozenset({"ping", "pong", "subscribe", "next"})
    SHARED_CONFIDENCE: ClassVar[float] = 0.8


class SubscriptionsTransportWsDecoder(_GraphQLOverWs):
    """subscriptions-transport-ws (Apollo's older protocol, subprotocol "graphql-ws")."""

    name: ClassVar[str] = "subscriptions-transport-ws"
    subprotocols: ClassVar[tuple[str, ...]] = ("graphql-ws",)
    TYPES: ClassVar[dict[str, tuple[str, str]]] = {
        "connection_init": ("client", "init"),
        "connection_ack": ("server", "ack"),
        "connection_error": ("server", "init_error"),
        "connection_terminate": ("client", "message"),
        "ka": ("server", "message"),
        "start": ("client", "start"),
        "data": ("server", "next"),
        "error": ("server", "error"),
        "complete": ("server", "complete"),
        "stop": ("client", "complete"),
    }
    OWN_TYPES: ClassVar[frozenset[str]] = frozenset(
        {"connection_error", "connection_terminate", "ka", "start", "data", "stop"})
    SHARED_CONFIDENCE: ClassVar[float] = 0.75
