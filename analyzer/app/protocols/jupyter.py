"""Jupyter kernel messages over WebSocket (jupyter_server's /api/kernels/<id>/channels).

Three encodings, told apart per message:
- the `v1.kernel.websocket.jupyter.org` subprotocol (jupyter_server "WebSocket kernel wire
  protocols"): binary; a little-endian uint64 count n, n uint64 offsets, then the channel name
  (offsets[0]:offsets[1]) and the message parts between the following offsets: header,
  parent_header, metadata, content, then buffers; offsets[0] is 8 * (n + 1) and the last offset is
  the end of the message;
- the legacy protocol (no subprotocol): a text message holding the whole message as JSON with a
  "channel" key (a client message without one goes to "shell", as jupyter_server does);
- the legacy binary form of a message with buffers: a big-endian uint32 count n, n uint32 offsets
  (the first is 4 * (n + 1)), the JSON message, then the buffers.

type = header.msg_type, channel = the Jupyter channel (shell, iopub, stdin, control). A *_request
on shell, control or stdin is a request (correlation id = its header.msg_id); a *_reply is the
response of the request its parent_header.msg_id names (status = content.status); the rest
(iopub's status, stream, execute_result…, comm messages) are messages with their parent's msg_id
in fields. Each WebSocket message holds exactly one kernel message: the decoder keeps no state.
"""

from __future__ import annotations

import json
import struct
from itertools import pairwise
from typing import Any

from analyzer.app.base import AppDecoder, AppMalformed, AppMessage, WsMessage
from analyzer.app.json_payload import clip, load_json

__all__ = ["CHANNELS", "MAX_PARTS", "V1", "JupyterDecoder"]

V1 = "v1.kernel.websocket.jupyter.org"
#: the kernel's sockets (jupyter-client messaging "Introduction")
CHANNELS = frozenset({"shell", "iopub", "stdin", "control"})
#: most message parts (and buffers) accepted in one message
MAX_PARTS = 4096
#: message types whose content is read (the others may be large and say nothing we keep)
_READ_CONTENT = frozenset({"status", "stream", "error", "execute_input", "execute_request",
                           "input_request", "comm_open", "comm_msg", "comm_close", "shutdown_request"})


class _Bad(Exception):
    """A message that does not decode (its reason)."""


def _v1(payload: bytes) -> tuple[str, list[memoryview]] | None:
    """Channel and parts of a v1 message; None when the offsets table does not fit one."""
    if len(payload) < 8:
        return None
    count = int.from_bytes(payload[:8], "little")
    if not 2 <= count <= min(MAX_PARTS, len(payload) // 8 - 1):
        return None
    offsets = struct.unpack_from(f"<{count}Q", payload, 8)
    if offsets[0] != 8 * (count + 1) or offsets[-1] != len(payload):
        return None
    if list(offsets) != sorted(offsets):
        return None
    view = memoryview(payload)
    try:
        channel = str(view[offsets[0]:offsets[1]], "utf-8")
    except UnicodeDecodeError:
        return None
    return channel, [view[a:b] for a, b in pairwise(offsets[1:])]


def _legacy_binary(payload: bytes) -> tuple[memoryview, int] | None:
    """The JSON part and the number of buffers of a legacy binary message (None: not one)."""
    if len(payload) < 8:
        return None
    count = int.from_bytes(payload[:4], "big")
    if not 1 <= count <= min(MAX_PARTS, len(payload) // 4 - 1):
        return None
    offsets = struct.unpack_from(f"!{count}I", payload, 4)
    if offsets[0] != 4 * (count + 1) or offsets[-1] > len(payload):
        return None
    if list(offsets) != sorted(offsets):
        return None
    end = offsets[1] if count > 1 else len(payload)
    return memoryview(payload)[offsets[0]:end], count - 1


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{what} is not a JSON object")
    return value


def _describe(content: dict[str, Any], msg_type: str) -> dict[str, Any]:
    """The few content values kept in fields, by message type."""
    fields: dict[str, Any] = {}
    if msg_type == "status":
        fields["execution_state"] = content.get("execution_state")
    elif msg_type == "stream":
        text = content.get("text")
        fields["name"] = content.get("name")
        fields["text_len"] = len(text) if isinstance(text, str) else None
    elif msg_type == "execute_request":
        code = content.get("code")
        fields["code_len"] = len(code) if isinstance(code, str) else None
        fields["silent"] = content.get("silent")
    elif msg_type in ("execute_input", "execute_reply"):
        fields["execution_count"] = content.get("execution_count")
    elif msg_type == "kernel_info_reply":
        fields["implementation"] = content.get("implementation")
        fields["protocol_version"] = content.get("protocol_version")
    elif msg_type == "comm_open":
        fields["target_name"] = content.get("target_name")
    if msg_type.startswith("comm_"):
        fields["comm_id"] = content.get("comm_id")
    if msg_type == "error" or content.get("status") == "error":
        fields["ename"] = content.get("ename")
        fields["evalue"] = content.get("evalue")
    return {k: clip(v) if isinstance(v, str) else v for k, v in fields.items()
            if v is None or isinstance(v, (str, int, float, bool))}


class JupyterDecoder(AppDecoder):
    """Jupyter kernel messages of one connection (see the module doc)."""

    name = "jupyter"
    subprotocols = (V1,)

    @classmethod
    def sniff(cls, msg: WsMessage) -> float:
        """A v1 binary message or a legacy JSON message with a header.msg_type and a channel: 0.9."""
        data = msg.payload
        if not msg.text:
            return 0.9 if _v1(data) is not None else 0.0
        if not data.lstrip().startswith(b"{") or b'"msg_type"' not in data[:8192]:
            return 0.0
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            return 0.0
        header = obj.get("header") if isinstance(obj, dict) else None
        return 0.9 if isinstance(header, dict) and "msg_type" in header and "channel" in obj else 0.0

    def feed(self, msg: WsMessage) -> list[AppMessage]:
        try:
            return [self._decode(msg)]
        except _Bad as exc:
            raise AppMalformed(str(exc) + ("" if msg.complete else " (message cut by a gap)")) from None

    def _decode(self, msg: WsMessage) -> AppMessage:
        content_raw: bytes | memoryview | None = None
        content: Any = None
        buffers = 0
        if msg.text:
            whole = _dict(load_json(msg.payload, "message", complete=msg.complete), "message")
            channel, header, parent, content = (whole.get("channel"), whole.get("header"),
                                                whole.get("parent_header"), whole.get("content"))
            if isinstance(whole.get("buffers"), list):
                buffers = len(whole["buffers"])
        elif (v1 := _v1(msg.payload)) is not None:
            channel, parts = v1
            if len(parts) < 4:
                raise _Bad(f"{len(parts)} parts in a v1 message (header, parent_header, metadata "
                           "and content needed)")
            header = load_json(bytes(parts[0]), "header", complete=msg.complete)
            parent = load_json(bytes(parts[1]), "parent_header", complete=msg.complete)
            content_raw = parts[3]
            buffers = len(parts) - 4
        else:
            legacy = _legacy_binary(msg.payload)
            if legacy is None:
                raise _Bad("binary message with neither a v1 nor a legacy offsets table")
            raw, buffers = legacy
            whole = _dict(load_json(bytes(raw), "message", complete=msg.complete), "message")
            channel, header, parent, content = (whole.get("channel"), whole.get("header"),
                                                whole.get("parent_header"), whole.get("content"))
        header = _dict(header, "header")
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str) or not msg_type:
            raise _Bad("header without msg_type")
        if channel is None and msg.sender == "client":
            channel = "shell"
        if channel is not None and channel not in CHANNELS:
            raise _Bad(f"unknown channel {clip(str(channel), 40)!r}")
        parent = _dict(parent, "parent_header") if parent is not None else {}
        kind = msg_type.rsplit("_", 1)[-1]
        if content_raw is not None and (kind == "reply" or msg_type in _READ_CONTENT):
            content = load_json(bytes(content_raw), "content", complete=msg.complete)
        fields: dict[str, Any] = {}
        msg_id, parent_id = header.get("msg_id"), parent.get("msg_id")
        if isinstance(msg_id, str):
            fields["msg_id"] = clip(msg_id)
        if isinstance(parent_id, str) and parent_id:
            fields["parent_msg_id"] = clip(parent_id)
        if isinstance(content, dict):
            fields.update(_describe(content, msg_type))
        if buffers:
            fields["buffers"] = buffers
        msg_type = clip(msg_type, 80)
        if kind == "request" and channel != "iopub" and "msg_id" in fields:
            return AppMessage("jupyter", msg_type, channel=channel, correlation_id=fields["msg_id"],
                              role="request", fields=fields)
        if kind == "reply" and "parent_msg_id" in fields:
            status = content.get("status") if isinstance(content, dict) else None
            return AppMessage("jupyter", msg_type, channel=channel, correlation_id=fields["parent_msg_id"],
                              role="response", status=clip(status, 40) if isinstance(status, str) else None,
                              fields=fields)
        return AppMessage("jupyter", msg_type, channel=channel, fields=fields)
