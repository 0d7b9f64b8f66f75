"""The app and exchanges listings (analyzer.app.listing) on a capture built here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import analyzer
from analyzer.app.listing import app_view, exchanges_view
from analyzer.listings import Selection
from tests.test_app_session import RPC, _conversation, _write


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> analyzer.Analysis:
    tmp = tmp_path_factory.mktemp("listing")
    # two connections whose messages interleave: lines in capture order, not by connection
    first = _conversation(RPC, port=54000, step=0.01)
    second = _conversation(RPC[:3], port=54001, t=1_700_000_000.005, step=0.01)
    return analyzer.analyze(_write(tmp, "two.pcap", first, second), jobs=1)


def test_app_lines_in_capture_order(analysis: analyzer.Analysis) -> None:
    origin = analysis.frames["ts"].min()
    view = app_view(analysis, origin)
    rows = view.rows
    assert len(rows) == len(RPC) + 3
    assert rows["frame_no"].is_monotonic_increasing
    assert rows["conn_id"].tolist()[:4] == [1, 2, 1, 2]
    first = rows.iloc[0]
    assert first["info"] == 'subtract; request c:1; {"id":1,"params":"[42,23]"}'
    assert first["direction"] == "client→server" and first["time"] == pytest.approx(
        (first["ts"] - origin).total_seconds())
    # the frame is the one that completed the WebSocket message
    m = analysis.messages.set_index(["conn_id", "message_id"])["last_frame_no"]
    assert all(m[(r.conn_id, r.message_id)] == r.frame_no for r in rows.itertuples())
    assert view.columns == ["frame_no", "time", "conn_id", "message_id", "direction", "protocol", "type",
                            "info"]
    requests = view.filter('type == "request" and conn == 1').rows
    assert requests["channel"].tolist() == ["subtract", "foobar", "never_answered"]
    assert view.column("corr") == "correlation_id"


def test_exchange_lines_with_latency_and_unanswered(analysis: analyzer.Analysis) -> None:
    view = exchanges_view(analysis, analysis.frames["ts"].min())
    rows = view.rows
    assert rows[["conn_id", "exchange_id"]].values.tolist() == [[1, 1], [2, 1], [1, 2], [1, 3]]
    info = dict(zip(zip(rows["conn_id"], rows["exchange_id"]), rows["info"]))
    assert info[(1, 1)] == "ok; 20.000 ms"
    assert info[(1, 2)] == "error -32601: Method not found; 10.000 ms"
    assert info[(1, 3)] == "UNANSWERED"
    assert pd.isna(rows.set_index(["conn_id", "exchange_id"]).loc[(1, 3), "response_frame_no"])
    slow = view.filter("latency_ms > 15").rows
    assert slow[["conn_id", "exchange_id"]].values.tolist() == [[1, 1], [2, 1]]
    assert Selection(conns={2}).apply(view).rows["conn_id"].tolist() == [2]


def test_empty_tables_give_empty_listings(tmp_path: Path) -> None:
    a = analyzer.analyze(_write(tmp_path, "plain.pcap", _conversation([(0, b"hi")])), jobs=1)
    assert app_view(a, None).rows.empty and exchanges_view(a, None).rows.empty
    assert "info" in app_view(a, None).rows.columns
