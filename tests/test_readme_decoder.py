"""README's "Adding a protocol" example is real: its module, defined as written, is found by the
registry and decodes a capture (its rows in app_messages and exchanges) with no other change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import analyzer
from analyzer.app import base, registry
from tests.pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def readme_decoder() -> Iterator[None]:
    text = README.read_text(encoding="utf-8")
    code = re.search(r"```python\n(# analyzer/app/protocols/ndjson_rpc\.py\n.*?)```", text, re.S)
    assert code, "the example module is in README.md"
    registry.decoders.cache_clear()
    try:
        module = {"__name__": "analyzer.app.protocols.ndjson_rpc"}
        exec(compile(code.group(1), "ndjson_rpc.py", "exec"), module)
        yield
    finally:
        base._REGISTRY.pop("ndjson-rpc", None)      # the other tests see the registry as it was
        registry.decoders.cache_clear()


def test_the_readme_decoder_decodes_a_capture(readme_decoder: None, tmp_path: Path) -> None:
    c = Conversation()
    c.handshake()
    c.send(0, upgrade_request(extra="Sec-WebSocket-Protocol: ndjson-rpc.v1\r\n"))
    c.send(1, upgrade_response(extra="Sec-WebSocket-Protocol: ndjson-rpc.v1\r\n"))
    c.step = 0.25           # the reply comes 250 ms after the call
    c.send(0, frame(1, b'{"call": "add", "id": 7}', mask=b"abcd"))
    c.send(1, frame(1, b'{"id": 7, "result": 3}'))
    c.send(0, frame(1, b"not json", mask=b"abcd"))
    path = tmp_path / "ndjson.pcap"
    write_pcap(path, c.packets)
    a = analyzer.analyze(path, progress=False, jobs=1)
    assert a.connections["app_protocol"].tolist() == ["ndjson-rpc"]
    rows = a.app_messages[["type", "channel", "correlation_id", "role"]].astype(object)
    assert rows.where(rows.notna(), None).values.tolist() == [
        ["call", "add", "c:7", "request"], ["reply", None, "c:7", "response"]]
    ex = a.exchanges.iloc[0]
    assert ex["method"] == "add" and bool(ex["answered"]) and ex["latency"] == pytest.approx(0.25)
    assert a.problems["kind"].tolist() == ["app-protocol-malformed"]
