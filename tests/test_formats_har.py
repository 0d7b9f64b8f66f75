"""export --format har: HAR 1.2 with Chrome's _webSocketMessages, checked against the HAR 1.2
required fields (JSON Schema) and read back with haralyzer (a HAR library from PyPI)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
from haralyzer import HarEntry, HarParser

import analyzer
from analyzer.export import export
from tests.app_formats import APP, app_objects, logged_latencies_ms
from tests.formats_sample import BINARY, SECRET, TEXT, USER_AGENT, build

CAPTURES = Path(__file__).resolve().parent.parent / "captures"

_STR = {"type": "string"}
_NUM = {"type": "number"}
_INT = {"type": "integer"}
_PAIRS = {"type": "array", "items": {"type": "object", "required": ["name", "value"],
                                      "properties": {"name": _STR, "value": _STR}}}
# ws-analyzer's _app items (custom fields start with "_" in HAR)
_APP = {"type": "object", "required": ["protocol", "type", "role"], "additionalProperties": False,
        "properties": {"protocol": _STR, "type": _STR, "channel": _STR, "correlation_id": _STR,
                       "role": {"enum": ["request", "response", "message"]}, "status": _STR,
                       "latency_ms": _NUM}}
# The required members of HAR 1.2 (W3C "HTTP Archive (HAR) format", Jan Odvarko), as a schema,
# plus the shape of Chrome DevTools' _webSocketMessages.
HAR_SCHEMA = {
    "type": "object", "required": ["log"],
    "properties": {"log": {
        "type": "object", "required": ["version", "creator", "entries"],
        "properties": {
            "version": {"const": "1.2"},
            "creator": {"type": "object", "required": ["name", "version"],
                        "properties": {"name": _STR, "version": _STR}},
            "entries": {"type": "array", "items": {
                "type": "object",
                "required": ["startedDateTime", "time", "request", "response", "cache", "timings"],
                "properties": {
                    "startedDateTime": {"type": "string",
                                        "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)$"},
                    "time": {"type": "number", "minimum": 0},
                    "request": {"type": "object", "required": [
                        "method", "url", "httpVersion", "cookies", "headers", "queryString",
                        "headersSize", "bodySize"],
                        "properties": {"method": _STR, "url": _STR, "httpVersion": _STR,
                                       "cookies": {"type": "array"}, "headers": _PAIRS,
                                       "queryString": _PAIRS, "headersSize": _INT, "bodySize": _INT}},
                    "response": {"type": "object", "required": [
                        "status", "statusText", "httpVersion", "cookies", "headers", "content",
                        "redirectURL", "headersSize", "bodySize"],
                        "properties": {"status": _INT, "statusText": _STR, "httpVersion": _STR,
                                       "cookies": {"type": "array"}, "headers": _PAIRS,
                                       "content": {"type": "object", "required": ["size", "mimeType"]},
                                       "redirectURL": _STR, "headersSize": _INT, "bodySize": _INT}},
                    "cache": {"type": "object"},
                    "timings": {"type": "object", "required": ["send", "wait", "receive"],
                                "properties": {k: {"type": "number", "minimum": -1}
                                               for k in ("send", "wait", "receive")}},
                    "serverIPAddress": _STR, "connection": _STR,
                    "_webSocketMessages": {"type": "array", "items": {
                        "type": "object", "required": ["type", "time", "opcode", "data"],
                        "properties": {"type": {"enum": ["send", "receive"]}, "time": _NUM,
                                       "opcode": {"enum": [1, 2]}, "data": _STR,
                                       "_app": {"type": "array", "minItems": 1, "items": _APP}}}},
                }}},
        }}},
}


def har(a: analyzer.Analysis, directory: Path) -> dict:
    [path] = export(a, directory, "har")
    assert path.endswith("websocket.har")
    text = Path(path).read_text(encoding="utf-8")
    assert SECRET not in text
    doc = json.loads(text)
    jsonschema.validate(doc, HAR_SCHEMA)
    return doc


def test_sample_with_payloads(tmp_path: Path) -> None:
    a = analyzer.analyze(build(tmp_path), progress=False, payloads=True)
    doc = har(a, tmp_path / "out")
    ok, refused = doc["log"]["entries"]
    assert ok["_resourceType"] == "websocket"
    assert ok["startedDateTime"] == "2023-11-14T22:13:20.003Z"
    msgs = ok["_webSocketMessages"]
    assert [(m["type"], m["opcode"]) for m in msgs] == [("send", 1), ("receive", 2)]
    assert msgs[0]["data"] == TEXT and base64.b64decode(msgs[1]["data"]) == BINARY
    assert msgs[0]["time"] == a.messages["ts_end"].iloc[0].value / 1e9
    assert not any("_truncated" in m for m in msgs)
    headers = {h["name"]: h["value"] for h in ok["request"]["headers"]}
    assert headers["User-Agent"] == USER_AGENT
    assert not {"Cookie", "Authorization"} & set(headers)
    assert ok["request"]["cookies"] == [] and ok["response"]["cookies"] == []
    assert ok["request"]["queryString"] == [{"name": "room", "value": "a b"}, {"name": "x", "value": "1"}]
    assert refused["response"]["status"] == 404 and refused["_webSocketMessages"] == []

    # read back with haralyzer
    parser = HarParser(doc)
    assert parser.version == "1.2" and parser.creator["name"] == "ws-analyzer"
    entry = HarEntry(doc["log"]["entries"][0])
    assert entry.url == "ws://server.example.com/chat?room=a%20b&x=1"
    assert entry.status == 101 and entry.request.method == "GET"
    assert entry.startTime.timestamp() == 1_700_000_000.003
    assert entry.serverAddress == "198.51.100.20"
    assert entry.response.headers == ok["response"]["headers"]
    assert sum(len(page.entries) for page in parser.pages) == 2


def test_without_payloads_marks_truncation(tmp_path: Path) -> None:
    a = analyzer.analyze(build(tmp_path), progress=False, preview_len=3)
    msgs = har(a, tmp_path / "out")["log"]["entries"][0]["_webSocketMessages"]
    assert msgs[0]["data"] == TEXT[:3] and msgs[0]["_truncated"] is True
    assert msgs[1]["data"] == "" and msgs[1]["_truncated"] is True


def test_real_captures(tmp_path: Path) -> None:
    for name in ("demo.pcapng", "ws_deflate.pcap", "ipv6.pcap", "hixie76_websocket_driver.pcap"):
        a = analyzer.analyze(CAPTURES / name, progress=False, payloads=True)
        doc = har(a, tmp_path / name.replace(".", "_"))
        entries = doc["log"]["entries"]
        assert len(entries) == a.connections["request_ts"].notna().sum() > 0
        assert sum(len(e["_webSocketMessages"]) for e in entries) == len(a.messages)
        for e in entries:                                   # data after decompression, in time order
            times = [m["time"] for m in e["_webSocketMessages"]]
            assert times == sorted(times)
        if name == "ipv6.pcap":
            assert entries[0]["serverIPAddress"] == "::1"
        sizes = sorted(len(m["data"].encode()) if m["opcode"] == 1 else len(base64.b64decode(m["data"]))
                       for e in entries for m in e["_webSocketMessages"])
        assert sizes == sorted(a.messages["size"].tolist())


def test_app_messages_on_their_messages(tmp_path: Path) -> None:
    """Real captures: each _webSocketMessages item whose message carried application messages has
    `_app` (the response's latency_ms as the generator measured it); the document still meets HAR
    1.2 and haralyzer reads it."""
    for name in ("jsonrpc", "mqtt5"):
        a = analyzer.analyze(APP / f"{name}.pcap", progress=False)
        doc = har(a, tmp_path / name)
        expected = app_objects(a)
        got: list[list[dict]] = []
        for entry in doc["log"]["entries"]:
            conn = entry["_ws_analyzer"]["conn_id"]
            m = a.messages[a.messages["conn_id"] == conn].sort_values(["ts_end", "message_id"], kind="stable")
            items = entry["_webSocketMessages"]
            assert len(items) == len(m)
            for item, message_id in zip(items, m["message_id"]):
                assert item.get("_app") == expected.get((conn, int(message_id)))
                got += [item["_app"]] if "_app" in item else []
        assert len(got) == len(expected) > 10
        latencies = sorted(o["latency_ms"] for objs in got for o in objs if "latency_ms" in o)
        assert latencies == logged_latencies_ms(name)
        assert sum(len(page.entries) for page in HarParser(doc).pages) == len(doc["log"]["entries"])


def test_no_app_without_application_messages(tmp_path: Path) -> None:
    a = analyzer.analyze(CAPTURES / "demo.pcapng", progress=False)
    assert a.app_messages.empty
    entries = har(a, tmp_path)["log"]["entries"]
    assert not any("_app" in m for e in entries for m in e["_webSocketMessages"])
