"""export --format zeek / zeek-json: websocket.log as Zeek writes it, read back by a strict parser
written here and by parsezeeklogs (a Zeek log reader from PyPI), on a built capture and real ones."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from parsezeeklogs import read_zeek

import analyzer
from analyzer.export import export
from analyzer.formats.zeek import FIELDS
from tests.app_formats import APP, logged_latencies_ms
from tests.formats_sample import SECRET, USER_AGENT, build

CAPTURES = Path(__file__).resolve().parent.parent / "captures"

# WebSocket::Info in Zeek's base/protocols/websocket/main.zeek, &log fields in record order
ZEEK_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "host", "uri",
               "user_agent", "subprotocol", "client_protocols", "server_extensions", "client_extensions"]
ZEEK_TYPES = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "string",
              "vector[string]", "vector[string]", "vector[string]"]


def strict_parse(text: str, path: str = "websocket", fields: list[str] = ZEEK_FIELDS,
                 types: list[str] = ZEEK_TYPES) -> list[list[str]]:
    """The rows of a Zeek TSV log, checking every header line Zeek's ASCII writer writes, in order."""
    lines = text.split("\n")
    assert lines[-1] == ""                                   # ends with a newline
    lines = lines[:-1]
    assert lines[0] == "#separator \\x09"
    assert lines[1] == "#set_separator\t,"
    assert lines[2] == "#empty_field\t(empty)"
    assert lines[3] == "#unset_field\t-"
    assert lines[4] == f"#path\t{path}"
    assert re.fullmatch(r"#open\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[5])
    assert lines[6].split("\t") == ["#fields", *fields]
    assert lines[7].split("\t") == ["#types", *types]
    assert re.fullmatch(r"#close\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", lines[-1])
    rows = [line.split("\t") for line in lines[8:-1]]
    for row in rows:
        assert len(row) == len(fields)
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


APP_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "protocol", "method",
              "correlation_id", "status", "latency", "answered"]
APP_TYPES = ["time", "string", "addr", "port", "addr", "port", "string", "string", "string", "string",
             "interval", "bool"]


@pytest.mark.parametrize("name", ["jsonrpc", "mqtt5"])
def test_app_log_one_line_per_exchange(tmp_path: Path, name: str) -> None:
    """Real captures: websocket_app.log beside websocket.log, one line per exchange in request
    order, with the connection's uid; latencies are what the generator measured on the capture."""
    a = analyzer.analyze(APP / f"{name}.pcap", progress=False)
    paths = export(a, tmp_path, "zeek")
    assert paths == [str(tmp_path / "websocket.log"), str(tmp_path / "websocket_app.log")]
    rows = strict_parse(Path(paths[1]).read_text(encoding="utf-8"), "websocket_app", APP_FIELDS, APP_TYPES)
    records = list(read_zeek(paths[1], on_error=_raise))
    ex = a.exchanges
    assert len(rows) == len(records) == len(ex) > 10
    uids = {r["id.orig_p"]: r["uid"] for r in read_zeek(paths[0], on_error=_raise)}
    assert {r["uid"] for r in records} == set(uids.values())
    assert all(r["uid"] == uids[r["id.orig_p"]] for r in records)
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)
    ports = dict(zip(a.connections["conn_id"], a.connections["client_port"]))
    got = [(r["id.orig_p"], r["ts"], r["protocol"], r["method"], r["correlation_id"], r["status"],
            r["latency"], r["answered"]) for r in records]
    want = [(ports[e.conn_id], round(e.ts_request.value / 1e9, 6), e.protocol,
             None if pd.isna(e.method) else e.method, e.correlation_id, e.status, round(e.latency, 6), True)
            for e in ex.itertuples()]
    assert sorted(got, key=repr) == sorted(want, key=repr)
    assert sorted(round(r["latency"] * 1000, 3) for r in records) == logged_latencies_ms(name)
    [_, js_app] = export(a, tmp_path / "json" / "ws.log", "zeek-json")
    assert js_app == str(tmp_path / "json" / "ws_app.log")
    from_tsv = [{k: v for k, v in r.items() if v is not None} for r in records]
    assert list(read_zeek(js_app, on_error=_raise)) == from_tsv


def test_app_log_unanswered_and_escaped(tmp_path: Path) -> None:
    """A request never answered: latency and status unset, answered F; a tab in a method escaped."""
    from tests.app_captures import ws_capture

    capture = ws_capture(tmp_path / "rpc.pcap", [
        (0, b'{"jsonrpc":"2.0","method":"a\\tb","params":[1],"id":1}'),
        (0, b'{"jsonrpc":"2.0","method":"slow","id":2}'),
        (1, b'{"jsonrpc":"2.0","result":5,"id":1}')], None, binary=False)
    a = analyzer.analyze(capture, progress=False)
    [_, app] = export(a, tmp_path / "out", "zeek")
    rows = strict_parse(Path(app).read_text(encoding="utf-8"), "websocket_app", APP_FIELDS, APP_TYPES)
    assert [r[6:] for r in rows] == [["jsonrpc", "a\\x09b", "c:1", "ok", "0.020000", "T"],
                                     ["jsonrpc", "slow", "c:2", "-", "-", "F"]]
    second = list(read_zeek(app, on_error=_raise))[1]
    assert (second["latency"], second["status"], second["answered"]) == (None, None, False)
    [_, js] = export(a, tmp_path / "js", "zeek-json")
    lines = [json.loads(line) for line in Path(js).read_text(encoding="utf-8").splitlines()]
    assert lines[0]["method"] == "a\tb" and lines[0]["answered"] is True and lines[0]["latency"] == 0.02
    assert lines[1]["answered"] is False and "latency" not in lines[1] and "status" not in lines[1]


def test_no_app_log_without_exchanges(tmp_path: Path) -> None:
    a = analyzer.analyze(CAPTURES / "node_ws.pcap", progress=False)
    assert a.exchanges.empty
    assert export(a, tmp_path, "zeek") == [str(tmp_path / "websocket.log")]
    assert export(a, tmp_path / "j", "zeek-json") == [str(tmp_path / "j" / "websocket.log")]
    assert not (tmp_path / "websocket_app.log").exists()


def test_app_fields_constant() -> None:
    from analyzer.formats.zeek import APP_FIELDS as fields

    assert [n for n, _ in fields] == APP_FIELDS and [t for _, t in fields] == APP_TYPES
