"""The report's "Application protocols" section: on real captures of captures/app/ (the numbers
checked against what the programs logged), on hostile application strings (escaped, no script of
theirs), and in headless Chromium (the section's tables sort and link to the connection pages)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from test_report import EVIL, FIGURES, check_only_our_script, hostile
from test_report_chromium import CHROMIUM, chromium
from test_stats import MS, T0

import analyzer
from analyzer import plots, report
from analyzer.tables import SCHEMAS, make_frame

APP = Path(__file__).resolve().parent.parent / "captures" / "app"
APP_TABLES = ("app_rates", "app_latency", "app_top", "app_top_bytes", "app_slowest", "app_unanswered")


def _table(page: str, name: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cell texts of the table id="t-<name>" of a report page."""
    m = re.search(rf'<table class="data" id="t-{name}">(.*?)</table>', page, re.S)
    assert m, name
    heads = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", m.group(1))
    trs = re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S)[1:]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in trs]
    return heads, rows


def _col(page: str, name: str, column: str) -> list[str]:
    heads, rows = _table(page, name)
    i = heads.index(column)
    return [re.sub(r"<[^>]+>", "", r[i]) for r in rows]


@pytest.fixture(scope="module")
def stomp(tmp_path_factory: pytest.TempPathFactory) -> tuple[analyzer.Analysis, Path]:
    a = analyzer.analyze(str(APP / "stomp.pcap"), jobs=1)
    out = tmp_path_factory.mktemp("stomp")
    report.write_report(a, out)
    return a, out


def test_section_tables_figures_and_files(stomp) -> None:
    _, out = stomp
    page = (out / "index.html").read_text(encoding="utf-8")
    check_only_our_script(page)
    assert '<section id="app"><h2>Application protocols</h2>' in page and 'href="#app"' in page
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == len(FIGURES) + len(plots.APP_PLOTS)
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in imgs)
    for name in plots.APP_PLOTS:
        assert f'id="fig-{name}"' in page
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000
    for name in APP_TABLES:
        assert (out / "tables" / f"{name}.csv").exists(), name
    reqs = json.loads((APP / "stomp.expected.json").read_text(encoding="utf-8"))["requests"]
    # rates: the logged 14 requests, 3 never answered, 1 answered by an ERROR frame
    assert _col(page, "app_rates", "exchanges") == [str(len(reqs))]
    assert _col(page, "app_rates", "unanswered") == ["3"] and _col(page, "app_rates", "errors") == ["1"]
    # the slowest exchange is the logged slowest, in ms, and its conn_id links to its connection page
    slowest = max((q for q in reqs if q["latency_capture_ms"] is not None),
                  key=lambda q: q["latency_capture_ms"])
    assert float(_col(page, "app_slowest", "latency_ms")[0]) == pytest.approx(slowest["latency_capture_ms"],
                                                                              abs=2e-3)
    assert _col(page, "app_slowest", "correlation_id")[0] == slowest["correlation_id"]
    heads, rows = _table(page, "app_slowest")
    link = re.search(r'href="(conn/\d+\.html)"', rows[0][heads.index("conn_id")]).group(1)
    assert (out / link).exists()
    # its exchange_id links to the exchange's row on that page, which names the same exchange
    target = re.search(r'href="(conn/\d+\.html)#(exchange-\d+)"', rows[0][heads.index("exchange_id")])
    assert target.group(1) == link
    conn_page = (out / link).read_text(encoding="utf-8")
    check_only_our_script(conn_page)
    row = re.search(rf'<tr id="{target.group(2)}">(.*?)</tr>', conn_page).group(1)
    assert slowest["correlation_id"] in row and f"{slowest['latency_capture_ms']:.6g}"[:5] in row
    # the unanswered requests, by their receipt ids
    assert sorted(_col(page, "app_unanswered", "correlation_id")) == sorted(
        q["correlation_id"] for q in reqs if q["status"] is None)
    # latency table in ms agrees with the CSV (seconds * 1000) and with the stats function
    csv = pd.read_csv(out / "tables" / "app_latency.csv")
    assert list(csv.columns) == ["protocol", "method", "count", "answered",
                                 "p50_ms", "p90_ms", "p99_ms", "max_ms"]
    assert csv["max_ms"].max() == pytest.approx(slowest["latency_capture_ms"], abs=2e-3)
    summary = json.loads((out / "tables" / "summary.json").read_text(encoding="utf-8"))
    assert summary["exchanges"] == len(reqs) and summary["exchanges_unanswered"] == 3
    assert "Application protocols" in page and "14 requests: 11 answered, 3 unanswered" in page


def _evil_app(a: analyzer.Analysis) -> analyzer.Analysis:
    """`a` plus application rows whose every captured string is EVIL: a request answered after 5 ms
    and one never answered."""
    base = dict(capture=EVIL + ".pcap", conn_id=1, app_index=0, protocol="jsonrpc", channel=EVIL,
                correlation_id=EVIL, fields=json.dumps({"x": EVIL}), chosen_by="content", confidence=0.9)
    am = [SimpleNamespace(**base, message_id=1, sender="client", ts=T0 + MS, type=EVIL, role="request",
                          status=None),
          SimpleNamespace(**base, message_id=2, sender="server", ts=T0 + 6 * MS, type=EVIL, role="response",
                          status=EVIL),
          SimpleNamespace(**{**base, "correlation_id": EVIL + "2", "channel": None}, message_id=2,
                          sender="client", ts=T0 + MS, type=EVIL, role="request", status=None)]
    ex = [SimpleNamespace(capture=EVIL + ".pcap", conn_id=1, exchange_id=1, protocol="jsonrpc", method=EVIL,
                          correlation_id=EVIL, request_message_id=1, response_message_id=2,
                          ts_request=T0 + MS, ts_response=T0 + 6 * MS, latency=0.005, status=EVIL,
                          answered=True),
          SimpleNamespace(capture=EVIL + ".pcap", conn_id=1, exchange_id=2, protocol="jsonrpc", method=None,
                          correlation_id=EVIL + "2", request_message_id=2, response_message_id=None,
                          ts_request=T0 + MS, ts_response=None, latency=None, status=None, answered=False)]
    return analyzer.Analysis(a.connections, a.frames, a.messages, a.problems, a.captures,
                             app_messages=make_frame(SCHEMAS["app_messages"], am),
                             exchanges=make_frame(SCHEMAS["exchanges"], ex))


def test_hostile_application_strings_are_escaped(tmp_path: Path) -> None:
    a = _evil_app(hostile())
    index = report.write_report(a, tmp_path / "out")
    page = Path(index).read_text(encoding="utf-8")
    check_only_our_script(page)
    assert "<script>alert(1)" not in page
    section = page[page.index('<section id="app">'):page.index('<section id="messages">')]
    # method (rates per method, latency, slowest), channel (top ×2), correlation ids, status
    assert section.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    # the request without a method is named by its (hostile) type, escaped too
    assert "(&lt;script&gt;alert(1)&lt;/script&gt;)" in section
    assert _col(page, "app_rates", "errors") == ["1"] and _col(page, "app_rates", "unanswered") == ["1"]
    conn = (tmp_path / "out" / "conn" / "1.html").read_text(encoding="utf-8")
    check_only_our_script(conn)
    part = conn[conn.index('<section id="exchanges"'):]
    assert "<script>alert(1)" not in conn and part.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    # file names stay ours: only the fixed app_* tables and figures were added
    names = {p.name for p in (tmp_path / "out").rglob("*")}
    assert not any("<" in n or "alert" in n for n in names)
    assert {f"{t}.csv" for t in APP_TABLES} <= names


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_app_section_in_chromium_sorts_and_links(stomp, tmp_path: Path) -> None:
    _, out = stomp
    page = (out / "index.html").read_text(encoding="utf-8")
    # the unmodified page, CSP and all: our script wired up the app tables' filter boxes
    dom = chromium((out / "index.html").as_uri(), "--dump-dom").stdout
    for name in APP_TABLES[:5]:
        box = re.search(rf'<input id="t-{name}-filter"[^>]*>', dom)
        assert box and "hidden" not in box.group(0), name
    probe = """<script>
window.addEventListener("load", function () {
  var t = document.getElementById("t-app_slowest");
  var cells = t.tHead.rows[0].cells;
  var col = Array.prototype.map.call(cells, function (th) { return th.textContent; }).indexOf("latency_ms");
  cells[col].click();
  var out = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return r.cells[col].textContent; });
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
  if (window.location.hash === "#follow") { t.tBodies[0].rows[0].querySelector("a").click(); }
});
</script>"""
    copy = out / "probe_app.html"
    copy.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
                    .replace("</body>", probe + "</body>"), encoding="utf-8")
    shown = _col(page, "app_slowest", "latency_ms")
    assert shown == sorted(shown, key=float, reverse=True)  # slowest first as written
    dom = chromium(copy.as_uri(), "--dump-dom").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    ascending = json.loads(found.group(1).replace("&quot;", '"'))
    assert ascending == sorted(shown, key=float)  # a click on the header: numeric ascending order
    # after the sort, the first row's conn_id link opens that connection's page
    dom = chromium(copy.as_uri() + "#follow", "--dump-dom").stdout
    assert "<h1>Connection " in dom and '<section id="transcript" class="full">' in dom
