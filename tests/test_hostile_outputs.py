"""Issue 13, the outputs (export, report, CLI, stats): items 14 (CSV row split and formula bypass),
5 (output side: chunked writing, out of memory), 15 (control characters), 16 (non-UTF-8 stdout),
17 (links in the output directory), 21 (damaged captures: CLI side), 22 (one-line errors) and 23
(no rate from a sub-second span). The captures come from tests/hostile/outputs.py."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import analyzer
from analyzer import cli, export, report
from tests.hostile import outputs
from tests.hostile.outputs import CONTROL_TEXT, CSV_SPLITTERS

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
ENV.pop("WS_ANALYZER_DEBUG", None)
ENV.pop("PYTHONIOENCODING", None)

#: what must never reach a terminal or a page raw: C0 but TAB/LF/CR (layout), DEL, C1, bidi controls
UNSAFE = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f"
                    "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def run(*args: str, encoding: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(ENV)
    if encoding:
        env["PYTHONIOENCODING"] = encoding
    return subprocess.run([sys.executable, "-m", "analyzer", *args, "-q"], capture_output=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("outputs")
    return {name: make(d, 1.0) for name, make in outputs.SHAPES.items()}


# --- item 14: CSV ------------------------------------------------------------------------------

def _lines(raw: str) -> list[str]:
    """Every line as a naive reader (or a spreadsheet's import of a broken row) would see it."""
    return re.split(r"\r\n|\r|\n", raw)


def test_csv_cells_with_cr_lf_stay_one_row_and_no_line_starts_a_formula(shapes, tmp_path) -> None:
    a = analyzer.analyze(shapes["csv-splitters"], jobs=1)
    assert len(a.frames) == 3 * len(CSV_SPLITTERS) and len(a.messages) == len(CSV_SPLITTERS)
    export.export(a, tmp_path, "csv")
    for table in ("frames", "messages", "connections"):
        path = tmp_path / f"{table}.csv"
        api_rows = len(getattr(a, table))
        assert len(pd.read_csv(path)) == api_rows, table
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == api_rows, table
        raw = path.read_text(encoding="utf-8", errors="strict")
        bad = [line for line in _lines(raw) if line[:1] in ("=", "+", "-", "@", "\t")]
        assert bad == [], table
    # the text is all there, each formula line behind an apostrophe
    with open(tmp_path / "messages.csv", newline="", encoding="utf-8") as fh:
        previews = [r["preview"] for r in csv.DictReader(fh)]
    assert previews == [re.sub(r"(?<=[\r\n])(?=[=+@])", "'", t) for t in CSV_SPLITTERS]
    assert previews[0] == "bye\r'=1+1" and previews[3] == "x\r\n'+2"
    with open(tmp_path / "frames.csv", newline="", encoding="utf-8") as fh:
        reasons = [r["close_reason"] for r in csv.DictReader(fh) if r["opcode_name"] == "close"]
    assert reasons[:2] == ["bye\r'=1+1"] * 2 and reasons[2] == "ok\r'=cmd|' /C calc'!A0"


def test_neutralise_every_line_and_categories() -> None:
    df = pd.DataFrame({"t": pd.array(["a\r=1", "\r=x", "ok\nfine", "-1\n@2", None], dtype="string"),
                       "c": pd.Categorical(["=evil", "fine", "=evil", "fine", "fine"]),
                       "n": [-1, 2, 3, 4, 5]})
    out = export.neutralise_formulas(df)
    assert out["t"].tolist()[:4] == ["a\r'=1", "'\r'=x", "ok\nfine", "'-1\n'@2"] and pd.isna(out["t"][4])
    assert isinstance(out["c"].dtype, pd.CategoricalDtype) and out["c"].tolist()[:2] == ["'=evil", "fine"]
    assert out["n"].tolist() == [-1, 2, 3, 4, 5]


# --- item 5 (output side): chunked writing, bounded HTML, out of memory ----------------------------

def test_tables_are_written_in_chunks_with_the_same_content(shapes, tmp_path, monkeypatch) -> None:
    a = analyzer.analyze(shapes["report-tiny-frames"], jobs=1)
    assert len(a.frames) == 20_000
    whole = {fmt: export.export(a, tmp_path / f"whole-{fmt}", fmt) for fmt in ("csv", "parquet")}
    whole_json = export.export(a, tmp_path / "whole.json", "json")[0]
    seen: list[int] = []
    plain = export.plain_table
    monkeypatch.setattr(export, "CHUNK_ROWS", 3_000)
    monkeypatch.setattr(export, "plain_table", lambda df: (seen.append(len(df)), plain(df))[1])
    for fmt in ("csv", "parquet"):
        for ours, theirs in zip(export.export(a, tmp_path / f"chunked-{fmt}", fmt), whole[fmt]):
            if fmt == "csv":
                assert Path(ours).read_bytes() == Path(theirs).read_bytes()
            else:
                pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs))
    chunked_json = export.export(a, tmp_path / "chunked.json", "json")[0]
    assert json.loads(Path(chunked_json).read_text()) == json.loads(Path(whole_json).read_text())
    # no conversion ever saw more than a chunk: the copies writing makes are bounded by it
    assert seen and max(seen) <= 3_000 and sum(seen) >= 2 * 2 * 20_000


def test_report_html_shows_a_bounded_number_of_rows(shapes, tmp_path) -> None:
    a = analyzer.analyze(shapes["report-tiny-frames"], jobs=1)
    page = Path(report.write_report(a, tmp_path)).read_text(encoding="utf-8")
    assert page.count("<tr") <= sum(report.MAX_ROWS.values()) + report.FRAMES_PER_PAGE + 100
    assert f"Rows 1–{report.FRAMES_PER_PAGE:,} of 20,000" in page  # the first frames page; the rest paged
    assert len(list((tmp_path / "frames").glob("*.html"))) <= report.MAX_FRAME_PAGES
    assert len(pd.read_csv(tmp_path / "tables" / "frames.csv")) == 20_000


@pytest.mark.parametrize(("command", "target", "doing"), [
    ("summary", "analyzer.api.analyze", "analysing the captures"),
    ("report", "analyzer.report.write_report", "writing the report"),
    ("export", "analyzer.export.export", "writing the tables"),
])
def test_out_of_memory_is_one_line(shapes, tmp_path, monkeypatch, capsys, command, target, doing) -> None:
    def explode(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(target, explode)
    argv = [command, str(shapes["two-quick-messages"]), "-q"]
    if command != "summary":
        argv += ["-o", str(tmp_path / "out")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"ws-analyzer: error: out of memory while {doing}\n"


# --- item 15: control characters ---------------------------------------------------------------

def test_control_characters_are_escaped_in_frames_summary_json_and_html(shapes, tmp_path) -> None:
    cap = str(shapes["control-chars"])
    for args in (("frames", cap), ("summary", cap), ("summary", "--json", cap)):
        proc = run(*args)
        assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
        text = proc.stdout.decode("utf-8")
        assert UNSAFE.findall(text) == [], args
    # JSON escapes are lossless: the subprotocol parses back to the raw header value
    data = json.loads(run("summary", "--json", cap).stdout)
    a = analyzer.analyze(cap, jobs=1)
    assert list(data["subprotocols"]) == [a.connections["subprotocol"].iloc[0]]
    assert UNSAFE.search(a.connections["subprotocol"].iloc[0])  # the capture really carries them
    page = Path(report.write_report(a, tmp_path)).read_text(encoding="utf-8")
    assert UNSAFE.findall(page) == [] and "ctl\\u061c\\u200e" in page
    exported = export.export(a, tmp_path / "all.json", "json")[0]
    raw = Path(exported).read_text(encoding="utf-8")
    assert UNSAFE.findall(raw) == []
    assert json.loads(raw)["messages"][0]["preview"] == CONTROL_TEXT


def test_error_with_newline_and_escape_in_the_file_name_is_one_line(tmp_path) -> None:
    bad = tmp_path / "evil\n\x1b[31mname\u202e.pcap"
    bad.write_bytes(b"not a capture at all" * 4)
    proc = run("summary", str(bad))
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 2 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("ws-analyzer: error: ")
    assert "\x1b" not in err and "\u202e" not in err and "\\x1b[31mname\\u202e.pcap" in err


def test_cli_error_escapes_a_multi_line_message(capsys) -> None:
    assert cli._error("first\nsecond\r\x1b[2Jthird") == 2
    assert capsys.readouterr().err == "ws-analyzer: error: first\\x0asecond\\x0d\\x1b[2Jthird\n"


# --- item 16: stdout that is not UTF-8 -----------------------------------------------------------

@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_output_degrades_on_a_non_utf8_stdout(shapes, encoding) -> None:
    cap = str(shapes["control-chars"])
    utf8 = json.loads(run("summary", "--json", cap).stdout)
    runs = [("frames", cap), ("summary", cap), ("summary", "--json", cap)]
    demo = ROOT / "captures" / "demo.pcapng"
    if demo.exists():  # the reproduction
        runs.append(("frames", str(demo)))
    for args in runs:
        proc = run(*args, encoding=encoding)
        assert proc.returncode == 0, proc.stderr
        assert b"internal error" not in proc.stderr and b"Traceback" not in proc.stderr
        text = proc.stdout.decode(encoding)  # strict: every byte is of that encoding
        if args[0] == "frames":
            assert "client->server" in text and "\u2192" not in text
        elif "--json" in args:
            assert json.loads(text) == utf8
        else:
            assert "Frames " in text and "\u2014" not in text


# --- item 17: links in the output directory ------------------------------------------------------

def _victim(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / f"victim-{name}"
    victim.write_text("precious\n")
    return victim


def test_report_replaces_links_in_the_directory_and_never_writes_through_them(shapes, tmp_path) -> None:
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    planted = {"index.html": out / "index.html", "frames.csv": out / "tables" / "frames.csv",
               "summary.json": out / "tables" / "summary.json"}
    victims = {}
    for name, link in planted.items():
        victims[name] = _victim(tmp_path, name)
        link.symlink_to(victims[name])
    proc = run("report", str(shapes["two-quick-messages"]), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    for name, link in planted.items():
        assert victims[name].read_text() == "precious\n", name
        assert not link.is_symlink() and link.stat().st_size > 0, name
    assert "WebSocket report" in (out / "index.html").read_text()
    assert [p.name for p in out.rglob(".*.tmp")] == []


def test_report_refuses_a_linked_subdirectory(shapes, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "figures").symlink_to(elsewhere, target_is_directory=True)
    proc = run("report", str(shapes["two-quick-messages"]), "-o", str(out))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "symbolic link" in err, err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_replaces_links_in_the_directory(shapes, tmp_path, fmt) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victims = {t: _victim(tmp_path, t) for t in ("frames", "messages")}
    for table, victim in victims.items():
        (out / f"{table}.{fmt}").symlink_to(victim)
    proc = run("export", str(shapes["two-quick-messages"]), "--format", fmt, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    for table, victim in victims.items():
        assert victim.read_text() == "precious\n"
        assert not (out / f"{table}.{fmt}").is_symlink()
    if fmt == "json":
        single = out / "all.json"
        victim = _victim(tmp_path, "single")
        single.symlink_to(victim)
        assert run("export", str(shapes["two-quick-messages"]), "--format", "json",
                   "-o", str(single)).returncode == 0
        assert victim.read_text() == "precious\n" and len(json.loads(single.read_text())["frames"]) == 2


def test_open_output_leaves_nothing_behind_on_failure(tmp_path) -> None:
    target = tmp_path / "x.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), export.open_output(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


# --- items 21 and 22 (CLI side): damaged captures --------------------------------------------------

def test_damaged_capture_gives_output_and_one_warning_line(shapes, tmp_path) -> None:
    good = shapes["csv-splitters"]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good.read_bytes()[:-30])  # the last record is cut short
    listing = run("frames", str(cut))
    assert listing.returncode == 0
    assert b"bye" in listing.stdout  # what was readable is listed
    err = listing.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("ws-analyzer: warning: cut.pcap: damaged: "), err
    for args in (("summary", str(cut)), ("export", str(cut), "-o", str(tmp_path / "e")),
                 ("report", str(cut), "-o", str(tmp_path / "r"))):
        proc = run(*args)
        assert proc.returncode == 0 and proc.stderr.decode().splitlines() == err, args
    clean = run("summary", str(good))
    assert clean.returncode == 0 and clean.stderr == b""


def test_damage_warnings_one_per_capture() -> None:
    from test_stats import build

    problems = [dict(capture="a.pcap", conn_id=None, frame_no=None, kind="capture-truncated",
                     detail="a.pcap: file ends inside record 7"),
                dict(capture="a.pcap", conn_id=None, frame_no=None, kind="capture-unreadable",
                     detail="record 9: corrupt"),
                dict(capture="a.pcap", conn_id=1, frame_no=3, kind="tcp-gap", detail="gap")]
    a = build([dict(capture="a.pcap")], [], [], problems, name="a.pcap")
    assert cli.damage_warnings(a) == [
        "ws-analyzer: warning: a.pcap: damaged: file ends inside record 7 (and 1 more such problem)"]
    assert cli.damage_warnings(build([dict()], [], [], [dict(kind="tcp-gap")])) == []


# --- item 23: rates -----------------------------------------------------------------------------

def test_summary_gives_no_rate_for_two_messages_57_us_apart(shapes) -> None:
    cap = str(shapes["two-quick-messages"])
    text = run("summary", cap).stdout.decode()
    assert re.search(r"Message rate +n/a", text) and "messages/s" not in text
    assert json.loads(run("summary", "--json", cap).stdout)["messages_per_second"] is None


def test_frames_preview_is_cut_before_escaping() -> None:
    """The listing cuts captured text at 48 characters and then escapes it: no half escapes."""
    from test_stats import build

    a = build([dict()], [dict(frame_no=2, message_id=1)],
              [dict(message_id=1, preview="\x1b" * 60, last_frame_no=2, size=60)])
    listing = "".join(cli.frame_lines(a, preview_width=48))
    assert "“" + "\\x1b" * 48 + "…”" in listing and "\\x1b" * 49 not in listing


def test_summary_json_in_process_is_valid(shapes, capsys) -> None:
    assert cli.main(["summary", "--json", "-q", str(shapes["control-chars"])]) == 0
    out = capsys.readouterr().out
    assert UNSAFE.findall(out) == [] and json.load(io.StringIO(out))["frames"] == 3
