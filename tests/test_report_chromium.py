"""The report in headless Chromium (issue 16, report item 4): screenshots made here, and DOM checks
after the page's own script ran: it runs under the page's Content-Security-Policy, clicking a
header sorts, a filter hides rows, and links lead to the pages they name."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_report_pages import incident_report

import analyzer
from analyzer import report

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.chromium, pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]

# Run in a copy of the page without its CSP (the page's own script is untouched and runs first, on
# DOMContentLoaded): click headers and type in a filter box the way a user does, then write what the
# table shows into <pre id="probe"> for --dump-dom.
PROBE = """<script>
window.addEventListener("load", function () {
  var t = document.getElementById("t-frames");
  var col = Array.prototype.map.call(t.tHead.rows[0].cells, function (th) { return th.textContent; })
    .indexOf("payload_len");
  function column(c) {
    return Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return !r.hidden; })
      .map(function (r) { return r.cells[c].textContent; });
  }
  var out = {before: column(col)};
  t.tHead.rows[0].cells[col].click();
  out.ascending = column(col);
  out.ariaAscending = t.tHead.rows[0].cells[col].getAttribute("aria-sort");
  t.tHead.rows[0].cells[col].click();
  out.descending = column(col);
  var box = document.getElementById("t-frames-filter");
  box.value = "close";
  box.dispatchEvent(new Event("input"));
  out.filtered = column(t.tHead.rows[0].cells.length > 4 ? 4 : 0);
  out.count = document.getElementById("t-frames-count").textContent;
  box.value = "";
  box.dispatchEvent(new Event("input"));
  out.unfiltered = column(col).length;
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
  if (window.location.hash === "#follow") {
    document.querySelector('a[href="conn/5.html"]').click();
  }
});
</script>"""


def chromium(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", *extra, url],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> tuple[analyzer.Analysis, Path]:
    return incident_report(tmp_path_factory.mktemp("report"))


def _probe_copy(index: Path) -> Path:
    page = index.read_text(encoding="utf-8")
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe = index.with_name("probe.html")
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return probe


def _console(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]


@pytest.mark.parametrize("page", ["index.html", "conn/4.html", "frames/1.html"])
def test_screenshot_and_script_runs_under_the_csp(incident, tmp_path: Path, page: str) -> None:
    _, out = incident
    shot = tmp_path / (page.replace("/", "_") + ".png")
    run = chromium((out / page).as_uri(), f"--screenshot={shot}", "--window-size=1400,2000")
    assert shot.exists() and shot.stat().st_size > 20_000, run.stderr[-2000:]
    assert _console(run) == []  # no CSP refusal, no script error
    # the unmodified page, CSP and all: our script ran (it shows the filter boxes it wires up)
    dom = chromium((out / page).as_uri(), "--dump-dom").stdout
    boxes = re.findall(r'<input id="t-[a-z_]+-filter"[^>]*>', dom)
    assert boxes and not any("hidden" in b for b in boxes)
    keep = os.environ.get("WS_REPORT_SHOTS")  # a folder to keep the screenshots in, to look at them
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)


def test_clicking_a_header_sorts_and_the_filter_hides_rows(incident) -> None:
    a, out = incident
    dom = chromium(_probe_copy(out / "index.html").as_uri(), "--dump-dom").stdout
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    frames = a.frames.head(report.FRAMES_PER_PAGE)
    assert probe["before"] == [str(v) for v in frames["payload_len"]]  # capture order first
    assert probe["ascending"] == [str(v) for v in sorted(frames["payload_len"])]  # numeric, not text
    assert probe["ascending"] != probe["before"]
    assert probe["ariaAscending"] == "ascending"
    assert probe["descending"] == [str(v) for v in sorted(frames["payload_len"], reverse=True)]
    # "close" in any cell: the close frames (opcode_name) and rows whose reason mentions it
    closes = int((frames["opcode_name"] == "close").sum())
    assert closes <= len(probe["filtered"]) < len(frames)
    assert probe["count"] == f"{len(probe['filtered'])} of {len(frames)} rows match"
    assert probe["unfiltered"] == len(frames)


def test_a_connection_link_leads_to_its_page(incident) -> None:
    _, out = incident
    dom = chromium(_probe_copy(out / "index.html").as_uri() + "#follow", "--dump-dom").stdout
    assert "<h1>Connection 5: 127.0.0.1:" in dom  # the browser followed the link to conn/5.html
    assert '<section id="transcript" class="full">' in dom
