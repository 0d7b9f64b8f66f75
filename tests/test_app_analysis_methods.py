"""The application statistics from an Analysis (a.app_latency() …) are analyzer.app.stats' tables,
and on a real capture they say what its programs logged."""

from __future__ import annotations

import json
from pathlib import Path

import pandas.testing as pdt
import pytest

import analyzer
from analyzer.app import stats

APP = Path(__file__).resolve().parent.parent / "captures" / "app"


@pytest.fixture(scope="module")
def a() -> analyzer.Analysis:
    return analyzer.analyze(APP / "jsonrpc.pcap", progress=False, jobs=1)


def test_methods_are_the_stats_functions(a: analyzer.Analysis) -> None:
    pdt.assert_frame_equal(a.app_latency(), stats.latency(a))
    pdt.assert_frame_equal(a.app_top(by="bytes", n=5), stats.top_channels(a, by="bytes", n=5))
    pdt.assert_frame_equal(a.app_rates(by="method"), stats.rates(a, by="method"))
    pdt.assert_frame_equal(a.app_slowest(3), stats.slowest(a, n=3))
    pdt.assert_frame_equal(a.app_unanswered(), stats.unanswered(a))


def test_the_slowest_call_is_the_one_logged_slowest(a: analyzer.Analysis) -> None:
    expected = json.loads((APP / "jsonrpc.expected.json").read_text())
    timed = [r for r in expected["requests"] if r.get("capture_latency_ms") is not None]
    slowest = max(timed, key=lambda r: r["capture_latency_ms"])
    top = a.app_slowest(1).iloc[0]
    assert top["method"] == slowest["name"]
    assert top["latency"] * 1000 == pytest.approx(slowest["capture_latency_ms"], abs=0.002)
