"""analyzer.app.stats, the summary's application lines and the app plots, on the real captures of
captures/app/ checked against what the programs logged (their *.expected.json): the latencies per
method against the logged requests' capture latencies (a JSON-RPC batch expanded from the bytes the
client sent), unanswered and error counts against the logged requests, bytes per channel against
the logged message sizes; and the plots' drawn data against those numbers."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import analyzer
from analyzer.app import stats as app_stats
from analyzer.tables import SCHEMAS, make_frame

APP = Path(__file__).resolve().parent.parent / "captures" / "app"


@functools.cache
def _analyzed(name: str) -> Any:
    return analyzer.analyze(str(APP / f"{name}.pcap"), jobs=1)


@functools.cache
def _expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((APP / f"{name}.expected.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _logged_latencies_jsonrpc() -> dict[str, list[float]]:
    """method -> capture latencies (ms) of the logged JSON-RPC requests; a batch's requests (from
    the array the client sent) each get the batch's latency, as its one answer carries them all."""
    d = _expected("jsonrpc")
    text_at = {w["frame_no"]: w["text"] for w in d["wire"]}
    out: dict[str, list[float]] = {}
    for r in d["requests"]:
        if r["kind"] == "batch":
            names = [x["method"] for x in json.loads(text_at[r["request_frame"]]) if "id" in x]
        else:
            names = [r["name"]]
        for n in names:
            out.setdefault(n, []).append(r["capture_latency_ms"])
    return out


def _row(df: pd.DataFrame, **eq: Any) -> pd.Series:
    sel = np.ones(len(df), dtype=bool)
    for k, v in eq.items():
        sel &= (df[k].astype("object") == v).to_numpy()
    assert sel.sum() == 1, (eq, df)
    return df[sel].iloc[0]


def test_jsonrpc_latency_per_method_is_the_logged_one() -> None:
    logged = _logged_latencies_jsonrpc()
    table = app_stats.latency(_analyzed("jsonrpc"))
    assert set(table["method"]) == set(logged)
    for method, values in logged.items():
        row = _row(table, protocol="jsonrpc", method=method)
        v = np.array(values) / 1000.0
        assert row["count"] == len(v) == row["answered"]
        for q, name in app_stats.QUANTILES:
            assert row[name] == pytest.approx(np.quantile(v, q), abs=2e-6), (method, name)
        assert row["max"] == pytest.approx(v.max(), abs=2e-6)
    # slowest p90 first: sleep_add, whose requests the server delayed by up to 120 ms
    assert table["method"].iloc[0] == "sleep_add"
    assert table["max"].iloc[0] == pytest.approx(0.122321, abs=2e-6)


def test_socketio_latency_per_event_and_the_unnamed_requests() -> None:
    d = _expected("socketio")
    table = app_stats.latency(_analyzed("socketio"))
    for name in {r["name"] for r in d["requests"]}:
        v = np.array([r["capture_latency_ms"] for r in d["requests"] if r["name"] == name]) / 1000.0
        row = _row(table, method=name)
        assert row["count"] == len(v)
        assert row["p50"] == pytest.approx(np.median(v), abs=2e-6)
        assert row["max"] == pytest.approx(v.max(), abs=2e-6)
    # requests without a channel are named by their packet type, not dropped or merged with others
    assert "(CONNECT)" in set(table["method"])
    assert not table["method"].isna().any()


def test_stomp_unanswered_and_errors_are_the_logged_ones() -> None:
    reqs = _expected("stomp")["requests"]
    a = _analyzed("stomp")
    r = app_stats.rates(a)
    assert list(r["protocol"]) == ["stomp"]
    row = r.iloc[0]
    assert row["exchanges"] == len(reqs)
    assert row["unanswered"] == sum(q["status"] is None for q in reqs) == 3
    assert row["errors"] == sum(q["status"] == "error" for q in reqs) == 1
    assert row["unanswered_rate"] == pytest.approx(3 / len(reqs))
    assert row["error_rate"] == pytest.approx(1 / len(reqs))
    un = app_stats.unanswered(a)
    logged = sorted(q["correlation_id"] for q in reqs if q["status"] is None)
    assert sorted(un["correlation_id"]) == logged
    assert un["latency"].isna().all() and un["ts_request"].is_monotonic_increasing
    # per method: the rates add up to the protocol's
    by_m = app_stats.rates(a, by="method")
    assert by_m[["exchanges", "unanswered", "errors"]].sum().tolist() == [len(reqs), 3, 1]
    assert _row(by_m, method="/bogus/app2")["unanswered_rate"] == 1.0


def test_slowest_exchanges_are_sorted_and_answered() -> None:
    a = _analyzed("stomp")
    s = app_stats.slowest(a, n=3)
    logged = sorted((q["latency_capture_ms"] for q in _expected("stomp")["requests"]
                     if q["latency_capture_ms"] is not None), reverse=True)[:3]
    assert s["latency"].to_numpy() * 1000 == pytest.approx(logged, abs=2e-3)
    assert list(s.columns) == app_stats.EXCHANGE_VIEW


def test_top_channels_by_count_and_bytes() -> None:
    a = _analyzed("stomp")
    by_n = app_stats.top_channels(a, n=None)
    by_b = app_stats.top_channels(a, by="bytes", n=3)
    assert by_n["messages"].sum() == len(a.app_messages)
    # every message here carries one STOMP frame (heart-beats aside, one each too): bytes are sizes
    assert by_n["bytes"].sum() == a.messages["size"].sum()
    assert by_b["bytes"].is_monotonic_decreasing and len(by_b) == 3
    # the big SEND (20 kB logged body) and the MESSAGEs it caused make /topic/app2.news the heaviest
    big = [m for m in _expected("stomp")["messages"] if (m.get("body_len") or 0) > 10_000]
    assert big and by_b["channel"].iloc[0] == "/topic/app2.news"
    assert by_b["bytes"].iloc[0] > sum(m["body_len"] for m in big)
    assert by_n["messages"].is_monotonic_decreasing
    with pytest.raises(ValueError):
        app_stats.top_channels(a, by="size")  # type: ignore[arg-type]


def test_a_jsonrpc_batch_shares_its_message_bytes() -> None:
    a = _analyzed("jsonrpc")
    top = app_stats.top_channels(a, by="bytes", n=None)
    # bytes over all channels are the sizes of the messages that carried application messages
    carried = a.messages.merge(a.app_messages[["conn_id", "message_id"]].drop_duplicates(),
                               on=["conn_id", "message_id"])
    assert top["bytes"].sum() == pytest.approx(carried["size"].sum(), abs=len(top))


def test_summary_has_the_app_lines_and_keys() -> None:
    s = _analyzed("jsonrpc").summary()
    d = s.to_dict()
    logged = [v for vs in _logged_latencies_jsonrpc().values() for v in vs]
    assert d["app_messages_by_protocol"] == {"jsonrpc": len(_analyzed("jsonrpc").app_messages)}
    n = len(logged)
    assert (d["exchanges"], d["exchanges_answered"], d["exchanges_unanswered"]) == (n, n, 0)
    # -32601 twice, -32602, 1001: logged answers that are errors
    assert d["exchanges_errors"] == 4
    assert d["exchange_latency_ms"]["p50"] == pytest.approx(np.median(logged), abs=2e-3)
    assert d["exchange_latency_ms"]["max"] == pytest.approx(max(logged), abs=2e-3)
    text = str(s)
    assert "Application protocols  32 application messages — jsonrpc 32" in text
    assert f"{len(logged)} requests: {len(logged)} answered, 0 unanswered, 4 answered with an error" in text
    json.dumps(d)


def test_empty_analysis_has_empty_tables_and_no_app_lines() -> None:
    from tests.test_stats import empty  # an analysis with no rows at all

    a = empty()
    for f in (app_stats.latency, app_stats.top_channels, app_stats.rates, app_stats.slowest,
              app_stats.unanswered):
        assert f(a).empty
    assert list(app_stats.latency(a).columns) == app_stats.LATENCY_COLUMNS
    d = a.summary().to_dict() if hasattr(a, "summary") else analyzer.stats.summary(a).to_dict()
    assert d["exchanges"] == 0 and d["exchange_latency_ms"]["n"] == 0
    assert "Application protocols" not in str(analyzer.stats.summary(a))


def test_hostile_method_names_reach_the_text_escaped() -> None:
    a = _analyzed("jsonrpc")
    e = a.exchanges.copy()
    e["method"] = e["method"].astype("object")
    e.loc[0, "method"] = "evil\x1b[31m$x$\u202e"
    am = a.app_messages.copy()
    am["protocol"] = am["protocol"].cat.rename_categories({"jsonrpc": "js\x1bon"})
    b = analyzer.Analysis(a.connections, a.frames, a.messages, a.problems, a.captures,
                          app_messages=am, exchanges=e.astype({"method": "string"}))
    text = str(b.summary())
    assert "\x1b" not in text and "js\\x1bon" in text
    ax = b.plot.app_latency()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any("evil\\x1b[31m\\$x\\$\\u202e" in t for t in labels), labels


# --- plots --------------------------------------------------------------------------------------

def test_app_latency_plot_draws_every_answered_exchange_per_method() -> None:
    a = _analyzed("jsonrpc")
    ax = a.plot.app_latency()
    logged = _logged_latencies_jsonrpc()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(logged)
    # one scatter per method, on its row, x = its latencies in ms
    offsets = [np.ma.getdata(c.get_offsets()) for c in ax.collections]
    points = {round(float(np.mean(o[:, 1]))): np.sort(o[:, 0]) for o in offsets}
    for y, label in enumerate(labels):
        method = label.split(": ", 1)[1].rsplit(" (n=", 1)[0]
        assert list(points[y]) == pytest.approx(sorted(logged[method]), abs=2e-3), method
    # slowest median on top, log axis
    medians = [float(np.median(points[y])) for y in range(len(labels))]
    assert medians == sorted(medians, reverse=True)
    assert ax.get_xscale() == "log"
    assert "14 answered exchanges" in ax.get_title()


def test_app_top_plot_bars_are_the_table() -> None:
    a = _analyzed("stomp")
    for by, col in (("messages", "messages"), ("bytes", "bytes")):
        ax = a.plot.app_top(by=by, n=5)
        table = app_stats.top_channels(a, by=col, n=5)  # type: ignore[arg-type]
        widths = [p.get_width() for p in ax.patches]
        assert widths == table[col].astype(float).tolist()
        assert [t.get_text() for t in ax.get_yticklabels()] == table["channel"].tolist()
        assert "the 5 first of 13" in ax.get_title()


def test_app_plots_without_app_data_say_so() -> None:
    from tests.test_stats import empty

    for name in ("app_latency", "app_top"):
        ax = getattr(analyzer.plots, name)(empty())
        assert any("no data" in t.get_text() for t in ax.texts)


def _many_methods(n_methods: int, per_method: int = 3) -> Any:
    """The jsonrpc analysis with its exchanges replaced by `per_method` answered calls of each of
    `n_methods` methods; method k answers in k+1 ms."""
    a = _analyzed("jsonrpc")
    rows = []
    for k in range(n_methods):
        for j in range(per_method):
            i = k * per_method + j
            rows.append(SimpleNamespace(capture="jsonrpc.pcap", conn_id=1, exchange_id=i + 1,
                                        protocol="jsonrpc", method=f"m{k:02d}", correlation_id=f"c:{i}",
                                        request_message_id=2 * i,
                                        response_message_id=2 * i + 1, ts_request=0, ts_response=0,
                                        latency=(k + 1) / 1000, status="ok", answered=True))
    return analyzer.Analysis(a.connections, a.frames, a.messages, a.problems, a.captures,
                             app_messages=a.app_messages, exchanges=make_frame(SCHEMAS["exchanges"], rows))


def test_app_latency_plot_keeps_the_slowest_methods() -> None:
    from analyzer.plots import MAX_CATEGORIES

    ax = analyzer.plots.app_latency(_many_methods(MAX_CATEGORIES + 5))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == MAX_CATEGORIES
    assert f"the {MAX_CATEGORIES} slowest of {MAX_CATEGORIES + 5}" in ax.get_title()
    # slowest first: m34 (35 ms) down to m05 (6 ms); the five fastest left out
    assert labels[0].startswith(f"jsonrpc: m{MAX_CATEGORIES + 4:02d} (n=3)")
    assert labels[-1].startswith("jsonrpc: m05 ")
    table = app_stats.latency(_many_methods(MAX_CATEGORIES + 5))
    assert table["p50"].tolist() == pytest.approx([(k + 1) / 1000 for k in range(MAX_CATEGORIES + 4, -1, -1)])
