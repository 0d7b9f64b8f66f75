"""Tests of analyzer.report and analyzer.export: the sections and files of the report, escaping of
every captured string (synthetic and the real html_hostile capture), headless Chromium loading the
page, and the CSV formula neutralising."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import base64
import csv
import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from test_report_chromium import CHROMIUM, chromium
from test_stats import MS, T0, build, empty, small

import analyzer
from analyzer import report
from analyzer.export import export, neutralise_formulas

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
EVIL = "<script>alert(1)</script>"
SECTIONS = ("summary", "figures", "connections", "close-codes", "versions", "problems", "messages", "frames",
            "files")
FIGURES = ("close_codes", "versions", "connection_timeline", "traffic", "message_sizes", "rtt", "problems")


def hostile() -> analyzer.Analysis:
    """Every captured string column carries EVIL (plus a formula start for the CSV test)."""
    conns = [dict(conn_id=1, host=EVIL, path="/" + EVIL, origin=EVIL, user_agent=EVIL, subprotocol=EVIL,
                  extensions=EVIL, server_software=EVIL, failure_reason=EVIL, close_code_client=4000,
                  close_reason_client=EVIL, close_reason_server="=HYPERLINK(\"http://x\")", close_code=4000,
                  close_initiator="client", end=T0 + 5 * MS, duration=5 * MS, handshake_rtt=0.001,
                  client=EVIL)]
    frames = [dict(conn_id=1, frame_no=3, ts=T0 + MS, payload_len=25, message_id=1),
              dict(conn_id=1, frame_no=4, ts=T0 + 2 * MS, opcode=8, opcode_name="close", close_code=4000,
                   close_reason=EVIL)]
    messages = [dict(conn_id=1, message_id=1, ts_start=T0 + MS, ts_end=T0 + MS, size=25, wire_bytes=25,
                     preview=EVIL, payload=EVIL.encode()),
                dict(conn_id=1, message_id=2, ts_start=T0 + MS, ts_end=T0 + MS, size=3, wire_bytes=3,
                     preview="@SUM(A1)", payload=b"\x00\x01\xff")]
    problems = [dict(conn_id=1, frame_no=4, kind="invalid-close-code", detail=EVIL)]
    return build(conns, frames, messages, problems, name=EVIL + ".pcap")


def _check_report(index: str) -> str:
    page = Path(index).read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == len(FIGURES)
    for b64 in imgs:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    check_only_our_script(page)
    return page


def check_only_our_script(page: str) -> None:
    """The page runs one script, ours, allowed by its hash in the CSP; nothing else can run."""
    script = (ROOT / "analyzer" / "templates" / "report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page).group(1)
    assert csp == ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                   f"script-src 'sha256-{digest}'")
    assert page.lower().count("<script") == 1 and f"<script>{script}</script>" in page


def test_report_escapes_every_captured_string(tmp_path: Path) -> None:
    index = report.write_report(hostile(), tmp_path / "out")
    page = _check_report(index)
    assert "<script>alert(1)" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10  # path, UA, reasons, preview, detail…
    conn = (tmp_path / "out" / "conn" / "1.html").read_text(encoding="utf-8")
    check_only_our_script(conn)
    assert "<script>alert(1)" not in conn
    # handshake fields, close reasons, preview, problem detail
    assert conn.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    # no captured value became a file name: exactly the fixed set of files
    files = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    expected = ["index.html", "tables/close_codes.csv", "tables/summary.json", "tables/versions.csv",
                "conn/1.html", "frames/1.html"]  # names from our integers only
    expected += [f"figures/{n}.{e}" for n in FIGURES for e in ("png", "svg")]
    expected += [f"tables/{t}.{e}" for t in ("connections", "frames", "messages", "problems",
                                             "app_messages", "exchanges")
                 for e in ("csv", "parquet")]
    assert files == sorted(expected)
    assert 'id="app"' not in page  # no application messages: no such section


def test_report_on_empty_analysis(tmp_path: Path) -> None:
    page = _check_report(report.write_report(empty(), tmp_path))
    assert "no capture" in page


def test_report_tables_and_truncation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "FRAMES_PER_PAGE", 5)
    page = _check_report(report.write_report(small(), tmp_path))
    assert "Rows 1–5 of 8" in page
    assert '<a href="frames/2.html">2</a>' in page
    second = (tmp_path / "frames" / "2.html").read_text(encoding="utf-8")
    check_only_our_script(second)
    assert "Frames, page 2 of 2" in second and "Rows 6–8 of 8" in second
    assert re.findall(r'<tr id="frame-(\d+)">', second) == ["9", "10", "11"]
    assert "4000" in page and "Private use" in page  # close-code table
    assert "hixie-76" in page  # versions table
    assert "close-not-echoed" in page  # problems table
    svg = (tmp_path / "figures" / "close_codes.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    summary = json.loads((tmp_path / "tables" / "summary.json").read_text())
    assert summary["frames"] == 8
    frames = pd.read_parquet(tmp_path / "tables" / "frames.parquet")
    assert frames["frame_no"].tolist() == [4, 5, 6, 7, 8, 9, 10, 11]


@pytest.mark.skipif(not (CAPTURES / "html_hostile.pcap").exists(), reason="capture not generated")
def test_report_on_hostile_capture(tmp_path: Path) -> None:
    a = analyzer.analyze(CAPTURES / "html_hostile.pcap")
    page = _check_report(a.report(tmp_path))
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<svg/onload" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\u202e" not in page  # the RTL override is shown as an escape, not applied
    expected = json.loads((CAPTURES / "html_hostile.expected.json").read_text())
    for conn in expected["connections"]:
        reason = conn["close_reason_client"]
        assert reason not in page
        assert reason.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") \
            in page


def test_summary_html_escapes() -> None:
    out = hostile()._repr_html_()
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "1 WebSocket connections" in out or "1 WebSocket" in out


# --- headless Chromium ---------------------------------------------------------------------------

_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var pre = document.createElement("pre");
  pre.id = "img-check";
  pre.textContent = "images " + ok + "/" + imgs.length;
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    index = Path(report.write_report(hostile(), tmp_path / "out"))
    # 1. the page as written: no console message at all (a CSP violation or a script error would log one)
    shot = tmp_path / "shot.png"
    plain = chromium(index.as_uri(), f"--screenshot={shot}", "--window-size=1200,2000")
    assert shot.exists() and shot.stat().st_size > 10_000, plain.stderr[-2000:]
    console = [line for line in plain.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert console == []
    # 2. a copy without the CSP plus a checking script: every <img> decoded with a real width, and
    #    the hostile strings stayed text (no injected element ran or rendered)
    page = index.read_text(encoding="utf-8")
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    page = page.replace("</body>", _CHECK_SCRIPT + "</body>")
    probe = index.with_name("probe.html")
    probe.write_text(page, encoding="utf-8")
    dom = chromium(probe.as_uri(), "--dump-dom").stdout
    assert f'<pre id="img-check">images {len(FIGURES)}/{len(FIGURES)}</pre>' in dom
    assert "alert(1)" in dom and "<script>alert(1)" not in dom


# --- export ----------------------------------------------------------------------------------------

def test_neutralise_formulas_keeps_numbers() -> None:
    df = pd.DataFrame({"t": pd.array(["=1+1", "+x", "-y", "@z", "\tq", "\rr", "ok", None], dtype="string"),
                       "n": [-1, 2, -3, 4, 5, 6, 7, 8]})
    out = neutralise_formulas(df)
    assert out["t"].tolist()[:7] == ["'=1+1", "'+x", "'-y", "'@z", "'\tq", "'\rr", "ok"]
    assert pd.isna(out["t"].iloc[7])
    assert out["n"].tolist() == [-1, 2, -3, 4, 5, 6, 7, 8] and out["n"].dtype == "int64"


def test_export_csv_json_parquet(tmp_path: Path) -> None:
    a = hostile()
    paths = export(a, tmp_path / "csv", "csv")
    assert [os.path.basename(p) for p in paths] == ["connections.csv", "frames.csv", "messages.csv",
                                                    "problems.csv", "app_messages.csv", "exchanges.csv"]
    with open(tmp_path / "csv" / "connections.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["close_reason_server"] == "'=HYPERLINK(\"http://x\")"
    assert row["close_code"] == "4000" and row["duration"] == "0.005"
    with open(tmp_path / "csv" / "messages.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["payload"] == EVIL.encode().hex() and rows[1]["payload"] == "0001ff"
    assert rows[1]["preview"] == "'@SUM(A1)"
    # JSON: one file with all the tables, bytes as hex, times ISO, no neutralising
    (out,) = export(a, tmp_path / "all.json", "json")
    data = json.loads(Path(out).read_text())
    assert set(data) == {"connections", "frames", "messages", "problems", "app_messages", "exchanges"}
    assert data["messages"][1]["preview"] == "@SUM(A1)" and data["messages"][1]["payload"] == "0001ff"
    assert data["frames"][1]["close_code"] == 4000 and data["frames"][0]["close_code"] is None
    assert data["connections"][0]["start"].startswith("2023-11-14T22:13:20")
    # Parquet keeps the types
    export(a, tmp_path / "pq", "parquet")
    frames = pd.read_parquet(tmp_path / "pq" / "frames.parquet")
    assert frames["close_code"].tolist()[1] == 4000 and str(frames["ts"].dtype) == "datetime64[ns, UTC]"
    messages = pd.read_parquet(tmp_path / "pq" / "messages.parquet")
    assert messages["payload"].tolist()[1] == b"\x00\x01\xff"
    with pytest.raises(ValueError):
        export(a, tmp_path / "x", "xlsx")
