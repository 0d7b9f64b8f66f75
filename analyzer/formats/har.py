"""HAR 1.2 with WebSocket messages, as Chrome DevTools writes and reads it.

One entry per WebSocket upgrade request seen (`request_ts` set), in conn_id order, with
`"_resourceType": "websocket"` and `_webSocketMessages`: one item per data message,
`{"type": "send"|"receive", "time": epoch seconds, "opcode": 1|2, "data": …}`, text as text
and binary as base64 (Chrome's convention), after decompression. Messages whose payload was not
kept (analyze without payloads=True, `export` without `--payloads`) carry their preview (text)
or nothing (binary) and `"_truncated": true`. A message that carried application messages
(app_messages) gets `"_app"`: a list of {protocol, type, channel, correlation_id, role, status},
null fields left out, and for a response paired in exchanges its `latency_ms` (the objects EVE
writes; analyzer.formats.app). HAR allows custom fields that start with "_".

Headers are the ones the connections table keeps (Host, Origin, User-Agent,
Sec-WebSocket-Protocol/-Extensions, Server), already redacted: Cookie, Set-Cookie and
Authorization values are never kept, so `cookies` is always empty and no such header is written.
The url is ws://host/target, wss:// for a WebSocket decrypted from TLS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Hashable, Iterator
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from analyzer.formats.app import app_json
from analyzer.stats import json_safe

if TYPE_CHECKING:
    from analyzer.api import Analysis

HAR_VERSION = "1.2"


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _headers(pairs: list[tuple[str, Any]]) -> list[dict[str, str]]:
    return [{"name": name, "value": text} for name, value in pairs if (text := _text(value)) is not None]


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _message_items(m: pd.DataFrame, apps: list[Any] | None = None) -> list[dict[str, Any]]:
    """The _webSocketMessages of one connection's messages (ts_end order); `apps`: per message,
    the JSON text of its application messages or null (analyzer.formats.app)."""
    items = []
    columns = (m["sender"].astype("object"), m["type"].astype("object"), m["ts_end"].astype("int64"),
               m["payload"], m["preview"].astype("object"), m["size"])
    for sender, kind, ts_ns, payload, preview, size in zip(*(c.tolist() for c in columns)):
        item: dict[str, Any] = {"type": "send" if sender == "client" else "receive",
                                "time": ts_ns / 1e9, "opcode": 1 if kind == "text" else 2}
        if payload is not None:
            data = bytes(payload)
            item["data"] = (data.decode("utf-8", "replace") if kind == "text"
                            else base64.b64encode(data).decode("ascii"))
        else:
            shown = preview if kind == "text" and _text(preview) is not None else ""
            if len(shown.encode("utf-8")) != size:
                item["_truncated"] = True
                shown = shown.removesuffix("…")           # the preview's mark of a cut
            item["data"] = shown
        items.append(item)
    if apps is not None:
        for item, app in zip(items, apps):
            if isinstance(app, str):
                item["_app"] = json.loads(app)
    return items


def _entry(row: dict[Hashable, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    host = _text(row["host"]) or (f"[{row['server']}]:{row['server_port']}" if row["ip_version"] == 6
                                  else f"{row['server']}:{row['server_port']}")
    target = _text(row["path"]) or "/"
    scheme = "wss" if row.get("transport") == "tls" else "ws"
    url = f"{scheme}://{host}{target if target.startswith('/') else '/' + target}"
    rtt_ms = float(row["handshake_rtt"]) * 1000 if _text(row["handshake_rtt"]) is not None else 0.0
    status = int(row["http_status"]) if _text(row["http_status"]) is not None else 0
    request_headers = _headers([
        ("Host", row["host"]), ("Origin", row["origin"]), ("User-Agent", row["user_agent"]),
        ("Sec-WebSocket-Protocol", row["subprotocols_offered"]),
        ("Sec-WebSocket-Extensions", row["extensions_offered"])])
    response_headers = _headers([
        ("Server", row["server_software"]), ("Sec-WebSocket-Protocol", row["subprotocol"]),
        ("Sec-WebSocket-Extensions", row["extensions"])])
    return {
        "startedDateTime": _iso(row["request_ts"]),
        "time": rtt_ms,
        "request": {
            "method": "GET", "url": url, "httpVersion": "HTTP/1.1", "cookies": [],
            "headers": request_headers,
            "queryString": [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(url).query,
                                                                             keep_blank_values=True)],
            "headersSize": -1, "bodySize": 0,
        },
        "response": {
            "status": status, "statusText": _status_text(status) if status else "",
            "httpVersion": "HTTP/1.1" if status else "", "cookies": [], "headers": response_headers,
            "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
            "headersSize": -1, "bodySize": 0 if status else -1,
        },
        "cache": {},
        "timings": {"send": 0, "wait": rtt_ms, "receive": 0},
        "serverIPAddress": str(row["server"]),
        "connection": str(row["client_port"]),
        "_resourceType": "websocket",
        "_webSocketMessages": messages,
        "_ws_analyzer": {"capture": str(row["capture"]), "conn_id": int(row["conn_id"]),
                         "community_id": _text(row["community_id"])},
    }


def iter_har_entries(a: Analysis) -> Iterator[dict[str, Any]]:
    """The HAR entries, one per connection whose upgrade request was seen, made one at a time
    (only one connection's messages are held as dicts at once)."""
    c = a.connections
    c = c[c["request_ts"].notna()]
    m = a.messages
    m = m[m["conn_id"].isin(c["conn_id"])].sort_values(["conn_id", "ts_end", "message_id"], kind="stable")
    ids = m["conn_id"].to_numpy()
    found = app_json(a)
    apps = None if found is None else found.reindex(pd.MultiIndex.from_arrays(
        [m["conn_id"], m["message_id"]])).tolist()
    for row in c.to_dict("records"):
        lo, hi = np.searchsorted(ids, row["conn_id"], "left"), np.searchsorted(ids, row["conn_id"], "right")
        yield _entry(row, _message_items(m.iloc[lo:hi], None if apps is None else apps[lo:hi]))


def har_entries(a: Analysis) -> list[dict[str, Any]]:
    """The HAR entries as a list (see iter_har_entries)."""
    return list(iter_har_entries(a))


def write_har(a: Analysis, fh: IO[str]) -> int:
    """The HAR document to `fh` (entries written one at a time); returns the number of entries."""
    from analyzer import __version__

    head = {"version": HAR_VERSION, "creator": {"name": "ws-analyzer", "version": __version__}}
    fh.write('{"log":' + json.dumps(head)[:-1] + ',"entries":[')
    count = 0
    for entry in iter_har_entries(a):
        fh.write(("," if count else "") + json_safe(json.dumps(entry, ensure_ascii=False)))
        count += 1
    fh.write("]}}\n")
    return count


__all__ = ["HAR_VERSION", "har_entries", "iter_har_entries", "write_har"]
