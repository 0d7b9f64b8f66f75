"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) inside WebSocket messages.

No subprotocol is registered for it (servers use their own names, or none), so it is chosen by
content: a text (or UTF-8 binary) message holding a JSON object, or a batch array of them, with
"jsonrpc": "2.0".

Each request, notification, response or error object is one AppMessage (a batch gives one per
element, in order):
  request       method and id; role request, correlation "<asker's initial>:<id>" ("c:17": the
                client's request 17, "s:17": the server's)
  notification  method, no id; role message
  response      result; role response, status "ok", correlation of the asker (the other side),
                channel = the request's method when the request was seen
  error         error object; role response, status "error <code>: <message>"; an error with a
                null id (the server could not read the id) cannot be paired: role message
Anything else (not JSON, not "2.0", a member of the wrong type) is AppMalformed with the reason.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage

__all__ = ["JsonRpcDecoder"]

#: the id → method map of each asker, for a response's channel (the oldest ids forgotten past it)
MAX_PENDING_METHODS = 10_000
#: characters kept of a string field (method names, error messages, params as JSON text)
MAX_FIELD_CHARS = 200
#: bytes of a message looked at when sniffing (the "jsonrpc" member is usually first or near it)
_SNIFF_BYTES = 1 << 20


def _short(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "…"


def _json_text(value: Any) -> str:
    """Compact JSON text of a decoded value, cut at MAX_FIELD_CHARS."""
    try:
        return _short(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (ValueError, RecursionError):    # cannot happen for what json.loads gave, but bounded
        return "…"


def _load(payload: bytes) -> Any:
    """The payload's JSON value; AppMalformed when it is not JSON (deep nesting included)."""
    try:
        return json.loads(payload)
    except UnicodeDecodeError as exc:
        raise AppMalformed(f"not UTF-8 JSON text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise AppMalformed(f"not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise AppMalformed("not JSON that can be read: nested too deeply") from None
    except ValueError as exc:           # e.g. an integer of more digits than Python converts
        raise AppMalformed(f"not JSON that can be read: {_short(str(exc))}") from None


def _id_text(value: Any) -> str:
    """An id as it appears in correlation ids: a string as is, a number or null as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


class JsonRpcDecoder(AppDecoder):
    """JSON-RPC 2.0 on one WebSocket connection (see the module doc)."""

    name = "jsonrpc"
    subprotocols = ()

    def __init__(self) -> None:
        # per asker ("c"/"s"): its request ids not answered yet → method
        self._methods: dict[str, OrderedDict[str, str]] = {"c": OrderedDict(), "s": OrderedDict()}

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        payload = msg.payload
        if len(payload) > _SNIFF_BYTES or b'"jsonrpc"' not in payload:
            return 0.0
        try:
            value = json.loads(payload)
        except (ValueError, RecursionError):
            return 0.0
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, dict) and value.get("jsonrpc") == "2.0":
            return 0.9
        return 0.0

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        if not msg.complete:
            raise AppMalformed(f"the WebSocket message is incomplete ({len(msg.payload)} bytes seen): "
                               "its JSON cannot be read")
        value = _load(msg.payload)
        sender = "c" if msg.sender == "client" else "s"
        if isinstance(value, list):
            if not value:
                raise AppMalformed("an empty batch (an empty array)")
            out: list[AppMessage] = []
            errors: list[str] = []
            for i, element in enumerate(value):
                try:
                    out.append(self._one(element, sender, batch=len(value)))
                except AppMalformed as exc:
                    errors.append(f"batch element {i}: {exc}")
            if errors:
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                raise AppMalformed(errors[0] + more, out)
            return out
        return [self._one(value, sender)]

    # --- one object ---------------------------------------------------------------------------

    def _one(self, obj: Any, sender: str, batch: int = 0) -> AppMessage:
        if not isinstance(obj, dict):
            raise AppMalformed(f"expected a JSON object, found {type(obj).__name__}")
        version = obj.get("jsonrpc")
        if version != "2.0":
            raise AppMalformed(f'expected "jsonrpc": "2.0", found {_json_text(version)}'
                               if "jsonrpc" in obj else 'no "jsonrpc" member')
        fields: dict[str, Any] = {"batch": batch} if batch else {}
        has_id = "id" in obj
        ident = obj.get("id")
        bad_id = isinstance(ident, bool) or not (ident is None or isinstance(ident, (str, int, float)))
        if has_id and bad_id:
            raise AppMalformed(f"id is a {type(ident).__name__}: expected a string, a number or null")
        if has_id:
            fields["id"] = _short(ident) if isinstance(ident, str) else ident
        if "method" in obj:
            method = obj["method"]
            if not isinstance(method, str):
                raise AppMalformed(f"method is a {type(method).__name__}: expected a string")
            if "params" in obj:
                params = obj["params"]
                if not isinstance(params, (list, dict)):
                    raise AppMalformed(f"params is a {type(params).__name__}: expected an array or object")
                fields["params"] = _json_text(params)
            channel = _short(method)
            if not has_id:
                return AppMessage("jsonrpc", "notification", channel, None, "message", None, fields)
            key = _id_text(ident)
            pending = self._methods[sender]
            pending[key] = channel
            pending.move_to_end(key)
            if len(pending) > MAX_PENDING_METHODS:
                pending.popitem(last=False)
            return AppMessage("jsonrpc", "request", channel, f"{sender}:{key}", "request", None, fields)
        has_result, has_error = "result" in obj, "error" in obj
        if has_result == has_error:
            raise AppMalformed("a response needs exactly one of result and error" if has_result
                               else "neither a request (method) nor a response (result or error)")
        if not has_id:
            raise AppMalformed("a response without an id")
        asker = "s" if sender == "c" else "c"
        correlation: str | None = None
        asked: str | None = None           # the request's method
        if ident is not None:
            answered = _id_text(ident)
            correlation = f"{asker}:{answered}"
            asked = self._methods[asker].pop(answered, None)
        if has_result:
            fields["result"] = _json_text(obj["result"])
            return AppMessage("jsonrpc", "response", asked, correlation, "response", "ok", fields)
        error = obj["error"]
        if not isinstance(error, dict):
            raise AppMalformed(f"error is a {type(error).__name__}: expected an object")
        code, message = error.get("code"), error.get("message")
        fields["code"] = code if isinstance(code, int) and not isinstance(code, bool) else _json_text(code)
        fields["message"] = _short(message) if isinstance(message, str) else _json_text(message)
        status = f"error {fields['code']}: {fields['message']}"
        return AppMessage("jsonrpc", "error", asked, correlation,
                          "response" if correlation is not None else "message", _short(status), fields)
