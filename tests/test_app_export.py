"""app_messages and exchanges in every export format, out of core, and in the report's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import analyzer
import analyzer.pipeline
from analyzer.export import export
from analyzer.outofcore import export_parquet
from tests.test_app_session import RPC, _conversation, _rpc, _write

APP_TABLES = ("app_messages", "exchanges")


@pytest.fixture
def capture(tmp_path: Path) -> str:
    convs = [_conversation(RPC, port=53000 + i, t=1_700_000_000.0 + i * 0.0005) for i in range(3)]
    # a formula-looking method name: neutralised in CSV like any captured text
    convs.append(_conversation([(0, _rpc(method="=cmd()", id=1)), (1, _rpc(result=None, id=1))],
                               port=53100, t=1_700_000_000.0002))
    return _write(tmp_path, "app.pcap", *convs)


def test_csv_parquet_json_hold_the_app_tables(capture: str, tmp_path: Path) -> None:
    a = analyzer.analyze(capture, jobs=1)
    assert len(a.app_messages) == 3 * len(RPC) + 2 and len(a.exchanges) == 3 * 3 + 1
    for fmt in ("csv", "parquet", "json"):
        paths = export(a, tmp_path / fmt, fmt)
        assert [Path(p).name for p in paths][-2:] == [f"app_messages.{fmt}", f"exchanges.{fmt}"]
    for name in APP_TABLES:
        ours = getattr(a, name)
        back = pd.read_parquet(tmp_path / f"parquet/{name}.parquet")
        assert list(back.columns) == list(ours.columns) and len(back) == len(ours)
        pd.testing.assert_frame_equal(back.astype(str), ours.astype(str), check_dtype=False)
        csv = pd.read_csv(tmp_path / f"csv/{name}.csv", keep_default_na=False)
        assert list(csv.columns) == list(ours.columns) and len(csv) == len(ours)
        records = json.loads((tmp_path / f"json/{name}.json").read_text())
        assert len(records) == len(ours)
    csv = pd.read_csv(tmp_path / "csv/exchanges.csv")
    assert "'=cmd()" in csv["method"].tolist()
    latency = csv["latency"].dropna().tolist()
    assert latency == pytest.approx(a.exchanges["latency"].dropna().tolist())
    records = json.loads((tmp_path / "json/app_messages.json").read_text())
    assert json.loads(records[0]["fields"]) == {"id": 1, "params": "[42,23]"}
    # one JSON file holding every table
    [one] = export(a, tmp_path / "all.json", "json")
    whole = json.loads(Path(one).read_text())
    assert list(whole) == ["connections", "frames", "messages", "problems", *APP_TABLES]
    assert len(whole["exchanges"]) == len(a.exchanges)


def test_out_of_core_writes_the_same_app_tables(capture: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    export(analyzer.analyze(capture, jobs=1), tmp_path / "mem", "parquet")
    monkeypatch.setattr(analyzer.pipeline, "COMPACT_EVERY", 8)
    written = export_parquet(capture, tmp_path / "ooc", min_rows=3)
    assert [Path(p).name for p in written.paths][-2:] == ["app_messages.parquet", "exchanges.parquet"]
    for name in APP_TABLES:
        ours = pq.read_table(tmp_path / f"ooc/{name}.parquet")
        theirs = pq.read_table(tmp_path / f"mem/{name}.parquet")
        assert ours.schema == theirs.schema
        assert ours.num_rows == theirs.num_rows > 0
        pd.testing.assert_frame_equal(ours.to_pandas(), theirs.to_pandas())


def test_the_report_writes_the_app_tables(capture: str, tmp_path: Path) -> None:
    a = analyzer.analyze(capture, jobs=1)
    a.report(tmp_path / "report")
    for name in APP_TABLES:
        table = pd.read_csv(tmp_path / f"report/tables/{name}.csv")
        assert len(table) == len(getattr(a, name))
