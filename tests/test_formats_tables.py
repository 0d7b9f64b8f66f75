"""The connections' list columns in the table exports: Parquet keeps lists, JSON writes arrays,
CSV joins them with ", " (formulas still neutralised); and the export format names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import analyzer
from analyzer.export import FORMATS, export
from tests.formats_sample import build

LISTS = {"subprotocols_offered_list": ["chat.v2", "chat.v1"],
         "extensions_offered_list": ["permessage-foo; a=1", 'x-ext; p="1,2"'],
         "extensions_list": None}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> analyzer.Analysis:
    return analyzer.analyze(build(tmp_path_factory.mktemp("cap")), progress=False)


def test_parquet_keeps_lists(sample: analyzer.Analysis, tmp_path: Path) -> None:
    export(sample, tmp_path, "parquet")
    table = pq.read_table(tmp_path / "connections.parquet")
    import pyarrow as pa

    kind = table.schema.field("subprotocols_offered_list").type
    assert pa.types.is_list(kind) and pa.types.is_string(kind.value_type)
    rows = table.to_pylist()
    for name, value in LISTS.items():
        assert rows[0][name] == value
        assert rows[1][name] is None
    assert rows[0]["community_id"] == sample.connections["community_id"].iloc[0]


def test_json_arrays(sample: analyzer.Analysis, tmp_path: Path) -> None:
    export(sample, tmp_path, "json")
    rows = json.loads((tmp_path / "connections.json").read_text(encoding="utf-8"))
    for name, value in LISTS.items():
        assert rows[0][name] == value


def test_csv_joins_lists(sample: analyzer.Analysis, tmp_path: Path) -> None:
    export(sample, tmp_path, "csv")
    with open(tmp_path / "connections.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["subprotocols_offered_list"] == "chat.v2, chat.v1" == rows[0]["subprotocols_offered"]
    assert rows[0]["extensions_offered_list"] == 'permessage-foo; a=1, x-ext; p="1,2"'
    assert rows[0]["extensions_list"] == "" and rows[1]["subprotocols_offered_list"] == ""
    assert rows[0]["community_id"].startswith("1:")


def test_csv_neutralises_a_joined_list(tmp_path: Path) -> None:
    from analyzer.export import _joined_lists, neutralise_formulas

    a = analyzer.analyze(build(tmp_path), progress=False)
    c = a.connections.copy()
    c.at[0, "subprotocols_offered_list"] = ["=HYPERLINK(1)", "b"]
    out = neutralise_formulas(_joined_lists(c))
    assert out.at[0, "subprotocols_offered_list"] == "'=HYPERLINK(1), b"


def test_format_names() -> None:
    assert FORMATS == ("csv", "parquet", "json", "zeek", "zeek-json", "eve", "har")


def test_tool_format_to_a_named_file_and_never_through_a_link(sample: analyzer.Analysis,
                                                                   tmp_path: Path) -> None:
    target = tmp_path / "logs" / "ws.log"
    assert export(sample, target, "zeek") == [str(target)]
    assert target.read_text(encoding="utf-8").startswith("#separator \\x09\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "trap.har"
    link.symlink_to(victim)
    export(sample, link, "har")
    assert victim.read_text() == "keep" and not link.is_symlink()
    assert json.loads(link.read_text(encoding="utf-8"))["log"]["version"] == "1.2"


@pytest.mark.parametrize(("fmt", "name"), [("zeek", "websocket.log"), ("zeek-json", "websocket.log"),
                                           ("eve", "eve.json"), ("har", "websocket.har")])
def test_command_line(tmp_path: Path, fmt: str, name: str) -> None:
    import subprocess
    import sys

    capture = Path(__file__).resolve().parent.parent / "captures" / "node_ws.pcap"
    proc = subprocess.run([sys.executable, "-m", "analyzer", "export", str(capture), "--format", fmt,
                           "--payloads", "-q", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "out" / name).read_text(encoding="utf-8")
    if fmt == "zeek":
        lines = text.splitlines()
        assert len(lines) == 8 + 2 + 1 and lines[8].split("\t")[9] == "node.v1"
    elif fmt == "har":
        assert len(json.loads(text)["log"]["entries"]) == 2
    else:
        lines = [json.loads(line) for line in text.splitlines()]
        assert len(lines) == (2 if fmt == "zeek-json" else 20)
