"""The report's tables and pages (issue 16, report items 2 and 3) on real captures: cells that must
not wrap, frames in pages with anchors, a page per connection (handshake, timeline, transcript,
problems linked to their frames), the links between them, and the bounds on huge tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import html
import re
from pathlib import Path
from urllib.parse import urldefrag

import pytest

import analyzer
from analyzer import report

CAPTURES = Path(__file__).resolve().parent.parent / "captures"


def incident_report(out: Path) -> tuple[analyzer.Analysis, Path]:
    """incident.pcapng analysed and its report written into `out`."""
    a = analyzer.analyze(CAPTURES / "incident.pcapng")
    report.write_report(a, out)
    return a, out


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> tuple[analyzer.Analysis, Path]:
    return incident_report(tmp_path_factory.mktemp("incident"))


def _links(page: Path) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', page.read_text(encoding="utf-8"))]


def check_links_resolve(directory: Path) -> int:
    """Every relative link of every page names a file that exists, and its #anchor an id in it."""
    checked = 0
    for page in directory.rglob("*.html"):
        for href in _links(page):
            target, anchor = urldefrag(href)
            path = (page.parent / target).resolve() if target else page
            assert path.is_file(), (page, href)
            if anchor:
                assert f'id="{anchor}"' in path.read_text(encoding="utf-8"), (page, href)
            checked += 1
    return checked


def _row_cells(page: str, table_id: str) -> list[list[str]]:
    body = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)[1:]]


def test_addresses_times_and_flags_do_not_wrap(incident) -> None:
    _, out = incident
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "td.nw { white-space: nowrap;" in page
    assert page.count('<td class="nw">127.0.0.1</td>') >= 20  # client and server of each connection
    assert re.search(r'<td class="nw">2026-11-26 13:39:5\d\.\d{6}</td>', page)  # times
    assert '<td class="nw">yes</td>' in page and '<td class="nw">no</td>' in page  # flags
    assert '<td class="num nw">' in page  # numbers too
    # free text may wrap: previews and problem details are not marked nowrap
    assert re.search(r"<td>[^<]*HTTP 404 Not Found</td>", page)


def test_problems_link_to_their_frames(incident) -> None:
    a, out = incident
    page = (out / "index.html").read_text(encoding="utf-8")
    frame_nos = set(a.frames["frame_no"])
    linked = {int(n) for n in re.findall(r'<a href="frames/1.html#frame-(\d+)">\1</a>', page)}
    in_frames = {int(n) for n in a.problems["frame_no"] if int(n) in frame_nos}
    assert in_frames and in_frames <= linked  # e.g. 123, the unmasked client frame
    assert 123 in linked
    frames1 = (out / "frames" / "1.html").read_text(encoding="utf-8")
    row = frames1.split('<tr id="frame-123">', 1)[1].split("</tr>", 1)[0]
    assert ">123<" in row
    # a problem at a packet that completed no frame leads to the first frame after it: the 404 at
    # packet 19 (the frame at 20 and after), the TCP gap at 53 (the frames at 55 it cut)
    assert 19 not in frame_nos and "frames/1.html#frame-19" not in page
    after_19 = min(n for n in frame_nos if n > 19)
    assert f'<a href="frames/1.html#frame-{after_19}">19</a>' in page
    assert 53 not in frame_nos and '<a href="frames/1.html#frame-55">53</a>' in page


def test_every_link_resolves(incident) -> None:
    _, out = incident
    assert check_links_resolve(out) > 100


def test_index_links_each_connection_to_its_page(incident) -> None:
    a, out = incident
    page = (out / "index.html").read_text(encoding="utf-8")
    for cid in a.connections["conn_id"]:
        assert f'<a href="conn/{cid}.html">{cid}</a>' in page
        assert (out / "conn" / f"{cid}.html").is_file()
    names = sorted(p.name for p in (out / "conn").iterdir())
    assert names == sorted(f"{c}.html" for c in a.connections.conn_id)
    assert "Each connection has a page of its own" in page


def test_connection_page(incident) -> None:
    a, out = incident
    conn = a.connections.set_index("conn_id")
    busiest = int(a.messages["conn_id"].value_counts().idxmax())
    page = (out / "conn" / f"{busiest}.html").read_text(encoding="utf-8")
    r = conn.loc[busiest]
    assert f"Connection {busiest}: {r.client}:{r.client_port} → {r.server}:{r.server_port}" in page
    assert f"<th>Path</th><td>{html.escape(r.path)}</td>" in page
    assert f"<th>Close status</th><td>{r.close_status}</td>" in page
    # the transcript: one row per message, in order, with its direction, type, size and preview
    msgs = a.messages[a.messages["conn_id"] == busiest]
    rows = _row_cells(page, "t-transcript")
    assert len(rows) == len(msgs)
    other = {"client": "server", "server": "client"}
    assert [c[1] for c in rows] == [f"{s} → {other[s]}" for s in msgs["sender"]]
    assert [c[2] for c in rows] == list(msgs["type"])
    assert [int(c[3]) for c in rows] == list(msgs["size"])
    # times count from the capture start, as the listings do
    start = analyzer.timefmt.first_record_ts(CAPTURES / "incident.pcapng")
    assert float(rows[0][0]) == pytest.approx((msgs["ts_start"].iloc[0] - start).total_seconds(), abs=1e-6)
    # the timeline holds the handshake and every close frame of the connection, in time order
    timeline = _row_cells(page, "t-timeline")
    events = [c[1] for c in timeline]
    closes = a.frames[(a.frames.conn_id == busiest) & (a.frames.opcode == 8)]
    assert events[0] == "first packet of the TCP connection" and events[-1] == "last packet"
    assert "handshake request" in events
    assert sum(e.startswith("close frame from the") for e in events) == len(closes)
    times = [float(c[0]) for c in timeline]
    assert times == sorted(times)


def test_connection_page_problems_link_to_frames(incident) -> None:
    a, out = incident
    p = a.problems
    cid = int(p.loc[p["frame_no"] == 123, "conn_id"].iloc[0])
    page = (out / "conn" / f"{cid}.html").read_text(encoding="utf-8")
    assert '<a href="../frames/1.html#frame-123">123</a>' in page
    assert len(_row_cells(page, "t-problems")) == int((p["conn_id"] == cid).sum())


def test_pages_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = analyzer.analyze(CAPTURES / "demo.pcapng")
    monkeypatch.setattr(report, "MAX_CONN_PAGES", 3)
    monkeypatch.setattr(report, "FRAMES_PER_PAGE", 50)
    monkeypatch.setattr(report, "MAX_FRAME_PAGES", 2)
    report.write_report(a, tmp_path)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "conn").iterdir()) == ["1.html", "2.html", "3.html"]
    assert "The first 3 of 13 connections have a page of their own" in page
    assert '<a href="conn/4.html">' not in page and re.search(r'<td class="num nw">4</td>', page)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["1.html", "2.html"]
    assert "304 frames, 50 a page; the first 100 are on 2 pages" in page
    second = (tmp_path / "frames" / "2.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<tr id="frame-\d+">', second)) == 50
    assert check_links_resolve(tmp_path) > 0


def test_hostile_capture_pages_stay_escaped(tmp_path: Path) -> None:
    a = analyzer.analyze(CAPTURES / "html_hostile.pcap")
    report.write_report(a, tmp_path)
    pages = list((tmp_path / "conn").glob("*.html"))
    assert len(pages) == len(a.connections)
    for path in [*pages, *(tmp_path / "frames").glob("*.html")]:
        text = path.read_text(encoding="utf-8")
        assert "<script>alert(1)" not in text and "<img src=x" not in text and "<svg/onload" not in text
        assert "\u202e" not in text and "\u2028" not in text
        assert text.lower().count("<script") == 1
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in p.read_text(encoding="utf-8") for p in pages)
