"""export --format zeek / zeek-json: websocket.log as Zeek writes it, read back by a strict parser
written here and by parsezeeklogs (a Zeek log reader from PyPI), on a built capture and real ones."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from parsezeeklogs import read_zeek

import analyzer
from analyzer.export import export
from analyzer.formats.zeek import FIELDS
from tests.formats_sample import SECRET, USER_AGENT, build

CAPTURES = Path(__file__).resolve().parent.parent / "captures"

# WebSocket::Info in Zeek's base/protocols/websocket/main.zeek, &log fields in record order
ZEEK_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "host", "uri",
               "user_agent", "subprotocol", "client_protocols", "server_extensions", "client_extensions"]
ZEEK_TYPES = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "string",
              "vector[string]", "vector[string]", "vector[string]"]


def strict_parse(text: str) -> list[list[str]]:
    """The rows of a Zeek TSV log, checking every header line Zeek's ASCII writer writes, in order."""
    lines = text.split("\n")
    assert lines[-1] == ""                                   # ends with a newline
    lines = lines[:-1]
    assert lines[0] == "#separator \\x09"
    assert lines[1] == "#set_separator\t,"
    assert lines[2] == "#empty_field\t(empty)"
    assert lines[3] == "#unset_field\t-"
    assert lines[4] == "#path\twebsocket"
    assert re.fullmatch(r"#open\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[5])
    assert lines[6].split("\t") == ["#fields", *ZEEK_FIELDS]
    assert lines[7].split("\t") == ["#types", *ZEEK_TYPES]
    assert re.fullmatch(r"#close\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[-1])
    rows = [line.split("\t") for line in lines[8:-1]]
    for row in rows:
        assert len(row) == len(ZEEK_FIELDS)
        assert re.fullmatch(r"\d+\.\d{6}", row[0])           # time: epoch seconds, 6 decimals
        assert re.fullmatch(r"C[0-9A-Za-z]{17}", row[1])
        assert row[3].isdigit() and row[5].isdigit()
        assert not any(ch in cell for cell in row for ch in "\r\x00\x1b")
    return rows


def _raise(line_no: int, line: str, exc: Exception) -> None:
    raise AssertionError(f"parsezeeklogs rejected line {line_no}: {exc}")


def test_fields_are_zeeks() -> None:
    assert [name for name, _ in FIELDS] == ZEEK_FIELDS
    assert [ztype for _, ztype in FIELDS] == ZEEK_TYPES


def test_tsv_sample(tmp_path: Path) -> None:
    a = analyzer.analyze(build(tmp_path), progress=False)
    [path] = export(a, tmp_path / "out", "zeek")
    assert path.endswith("websocket.log")
    text = Path(path).read_text(encoding="utf-8")
    assert SECRET not in text
    rows = strict_parse(text)
    assert len(rows) == 1                                    # the refused upgrade is not logged
    row = dict(zip(ZEEK_FIELDS, rows[0]))
    assert row["ts"] == "1700000000.004000"                  # the 101 response's packet
    assert row["user_agent"] == "probe/1.0\\x09(x\\\\y)"     # Zeek's escapes: tab, backslash
    assert row["client_extensions"] == "permessage-foo; a=1,x-ext; p=\"1\\x2c2\""
    assert row["server_extensions"] == "-"
    [rec] = list(read_zeek(path, on_error=_raise))
    assert rec == {
        "ts": 1700000000.004, "uid": rows[0][1], "id.orig_h": "192.0.2.10", "id.orig_p": 50123,
        "id.resp_h": "198.51.100.20", "id.resp_p": 8080, "host": "server.example.com",
        "uri": "/chat?room=a%20b&x=1", "user_agent": USER_AGENT, "subprotocol": "chat.v1",
        "client_protocols": ["chat.v2", "chat.v1"], "server_extensions": None,
        "client_extensions": ["permessage-foo; a=1", 'x-ext; p="1,2"'],
    }


def test_json_sample_equals_tsv(tmp_path: Path) -> None:
    a = analyzer.analyze(build(tmp_path), progress=False)
    [tsv] = export(a, tmp_path / "tsv", "zeek")
    [js] = export(a, tmp_path / "json.log", "zeek-json")
    text = Path(js).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == 1 and SECRET not in text
    obj = json.loads(lines[0])
    assert list(obj) == [f for f in ZEEK_FIELDS if f != "server_extensions"]   # unset left out
    from_tsv = {k: v for k, v in next(read_zeek(tsv, on_error=_raise)).items() if v is not None}
    assert next(read_zeek(js, on_error=_raise)) == from_tsv


@pytest.mark.parametrize("name", ["node_ws.pcap", "ws_deflate.pcap", "ipv6.pcap", "handshake_failed.pcap",
                                  "hixie76_websocket_driver.pcap", "demo.pcapng"])
def test_real_capture_lines_up_with_expected(tmp_path: Path, name: str) -> None:
    """Field by field: one row per connection whose expected handshake succeeded, with the
    expected ports, subprotocol and server extensions."""
    expected = json.loads((CAPTURES / name).with_suffix(".expected.json").read_text())
    a = analyzer.analyze(CAPTURES / name, progress=False)
    [path] = export(a, tmp_path, "zeek")
    strict_parse(Path(path).read_text(encoding="utf-8"))
    records = list(read_zeek(path, on_error=_raise))
    established = [c for c in expected["connections"] if c.get("handshake_ok")]
    assert len(records) == len(established)
    by_port = {r["id.orig_p"]: r for r in records}
    conns = a.connections.set_index("client_port")
    for exp in established:
        rec = by_port[exp["client_port"]]
        assert rec["id.resp_p"] == exp["server_port"]
        assert rec["subprotocol"] == exp.get("subprotocol")
        ext = exp.get("extensions")
        assert rec["server_extensions"] == ([e.strip() for e in ext.split(",")] if ext else None)
        row = conns.loc[exp["client_port"]]
        assert rec["id.orig_h"] == row["client"] and rec["id.resp_h"] == row["server"]
        assert rec["host"] == row["host"] and rec["uri"] == row["path"]
        started = row["request_ts"].timestamp() + row["handshake_rtt"]
        assert rec["ts"] == pytest.approx(started, abs=1e-6)
        assert rec["ts"] >= row["start"].timestamp()


def test_escapes_markers_and_controls(tmp_path: Path) -> None:
    from analyzer.formats.zeek import _tsv_cell

    assert _tsv_cell("-", "string") == "\\x2d"               # not the unset marker
    assert _tsv_cell("(empty)", "string") == "\\x28empty)"   # not the empty marker
    assert _tsv_cell("", "string") == "(empty)"
    assert _tsv_cell([], "vector[string]") == "(empty)"
    assert _tsv_cell(None, "string") == "-"
    assert _tsv_cell("a\nb\x1b[31m\u202e", "string") == "a\\x0ab\\x1b[31m\\xe2\\x80\\xae"
    assert _tsv_cell("é", "string") == "é"                   # printable UTF-8 kept


def test_open_close_stamps(tmp_path: Path) -> None:
    from io import StringIO

    from analyzer.formats.zeek import write_tsv

    a = analyzer.analyze(build(tmp_path), progress=False)
    out = StringIO()
    assert write_tsv(a, out, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == 1
    text = out.getvalue()
    assert "#open\t2026-01-02-03-04-05\n" in text and text.endswith("#close\t2026-01-02-03-04-05\n")
