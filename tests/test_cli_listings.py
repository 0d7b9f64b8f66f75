"""The listings of the command line (issue 16): connections, messages, problems, frames with problem
lines, follow, the shortcuts, time formats, payloads and output formats, on the real captures in
captures/ and on captures written byte by byte here. Each listing is checked against the analysis'
own tables (what the line must say) and, for times, against the capture file read by scapy."""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
from pcapgen import Conversation, frame, upgrade_request, upgrade_response, write_pcap
from test_cli import assert_one_line_error, run

import analyzer
from analyzer import cli

DEMO = "captures/demo.pcapng"
INCIDENT = "captures/incident.pcapng"


def listing(capsys, *argv: str) -> str:
    """stdout of one in-process run (status 0 asserted, nothing on stderr)."""
    assert cli.main([*argv, "-q"]) == 0
    out = capsys.readouterr()
    assert out.err == "", out.err
    return out.out


def by_frame(text: str) -> dict[int, list[str]]:
    """Lines of a text listing keyed by their first column (frame number); payload blocks under
    the lines (indented hex dumps, text) are left out."""
    lines: dict[int, list[str]] = {}
    for line in text.splitlines()[1:]:
        first = line.split()[0] if line.strip() else ""
        if first.isdigit() and ("client→server" in line or "server→client" in line):
            lines.setdefault(int(first), []).append(line)
    return lines


@pytest.fixture(scope="module")
def demo() -> analyzer.Analysis:
    return analyzer.analyze(DEMO, jobs=1, payloads=True)


@pytest.fixture(scope="module")
def incident() -> analyzer.Analysis:
    return analyzer.analyze(INCIDENT, jobs=1)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> Path:
    """One connection written byte by byte: spreadsheet formulas, control characters, JSON, binary,
    and a server frame cut by the end of the capture (header says 100 bytes, 10 arrive)."""
    conv = Conversation(client_port=50123, server_port=9000)
    conv.handshake()
    conv.send(0, upgrade_request("/feed?room=1"))
    conv.send(1, upgrade_response())
    mask = b"\x01\x02\x03\x04"
    conv.send(0, frame(1, b'=HYPERLINK("http://evil")', mask=mask))
    conv.send(1, frame(1, b"ok\n@SUM(1)\x1b[2J\ttab"))
    conv.send(0, frame(1, b'{"a": [1, 2], "b": "caf\xc3\xa9"}', mask=mask))
    conv.send(1, frame(2, bytes(range(20))))
    conv.send(1, frame(2, bytes(100))[:12])
    path = tmp_path_factory.mktemp("crafted") / "crafted.pcap"
    write_pcap(path, conv.packets)
    return path


# --- 1. connections, messages, problems, follow; unknown connections --------------------------

def test_connections_one_line_each(capsys, demo) -> None:
    text = listing(capsys, "connections", DEMO)
    lines = text.splitlines()
    assert lines[0].split() == ["conn", "time", "duration", "client", "server", "draft", "http", "messages",
                                "close", "status", "info"]
    c = demo.connections
    assert len(lines) == 1 + len(c) == 14
    for line, (_, row) in zip(lines[1:], c.iterrows()):
        assert line.split()[0] == str(row["conn_id"])
        assert f"{row['client']}:{row['client_port']}" in line
        assert f"{row['server']}:{row['server_port']}" in line
        assert str(row["close_status"]) in line
    assert "1000 Normal closure" in lines[1] and "403" in text and "handshake-failed" in text


def test_messages_and_problems_listings(capsys, incident) -> None:
    text = listing(capsys, "messages", INCIDENT)
    lines = text.splitlines()
    assert lines[0].split() == ["frame", "time", "conn", "msg", "direction", "type", "frames", "size", "info"]
    assert len(lines) == 1 + len(incident.messages)
    frames_col = [int(line.split()[0]) for line in lines[1:]]
    assert frames_col == sorted(frames_col)        # capture order
    (line49,) = by_frame(text)[49]
    assert line49.split()[2:8] == ["3", "3", "client→server", "binary", "1", "16000"]
    assert "INCOMPLETE" in line49
    assert sum("INCOMPLETE" in line for line in lines) == int((~incident.messages["complete"]).sum()) == 1

    text = listing(capsys, "problems", INCIDENT)
    lines = text.splitlines()
    assert lines[0].split() == ["frame", "time", "conn", "direction", "kind", "detail"]
    assert [line.split()[0] for line in lines[1:]] == [str(n) for n in sorted(incident.problems["frame_no"])]
    assert [k for line in lines[1:] for k in line.split() if k in set(incident.problems["kind"])] == \
        list(incident.problems.sort_values("frame_no", kind="stable")["kind"].astype(str))


@pytest.mark.parametrize("command", ["frames", "messages", "problems", "connections", "follow"])
def test_unknown_connection_is_a_clear_error(command: str) -> None:
    line = assert_one_line_error(run(command, "--conn", "99", "captures/handshake_failed.pcap", "-q"))
    assert line == ("ws-analyzer: error: no connection 99 in the capture (connections: 1-4; "
                    "see `ws-analyzer connections`)")


def test_follow_is_a_transcript_of_one_connection(capsys, demo) -> None:
    text = listing(capsys, "follow", "--conn", "2", DEMO)
    lines = text.splitlines()
    c = demo.connections.set_index("conn_id").loc[2]
    assert lines[0].startswith(f"connection 2: 127.0.0.1:{c['client_port']} → 127.0.0.1:8765, rfc6455, "
                               "HTTP 101")
    assert lines[1].split() == ["frame", "time", "direction", "type", "size", "payload"]
    m = demo.messages[demo.messages["conn_id"] == 2]
    control = demo.frames[(demo.frames["conn_id"] == 2) & (demo.frames["opcode"] >= 8)]
    rows = by_frame("\n".join(lines[1:]))
    assert sum(len(v) for v in rows.values()) == len(m) + len(control)
    first = m.iloc[0]
    (line,) = rows[int(first["last_frame_no"])]
    # the whole text, not a preview
    assert line.endswith(first["payload"].decode()) and len(first["payload"]) > 64
    closes = [line for v in rows.values() for line in v if " close " in line]
    assert len(closes) == 2 and all("1001 Going away" in line for line in closes)
    binary = m[m["type"] == "binary"].iloc[0]
    dump = text.split(f"\n{int(binary['last_frame_no']):>5}", 1)[1].splitlines()[1]
    assert dump.strip().startswith("0000  " + binary["payload"][:8].hex(" "))


def test_follow_json_and_hex(capsys, crafted) -> None:
    text = listing(capsys, "follow", "--conn", "1", "--payload", "json", str(crafted))
    assert '    {\n      "a": [\n        1,\n        2\n      ],\n      "b": "café"\n    }' in text
    text = listing(capsys, "follow", "--conn", "1", "-x", str(crafted))
    assert "    0000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  ................" in text
    assert "    0010  10 11 12 13" in text


def test_frames_decode_as_and_its_old_name(capsys) -> None:
    new = listing(capsys, "frames", "--decode-as", "9090", "captures/midstream.pcap")
    old = listing(capsys, "frames", "--port", "9090", "captures/midstream.pcap")
    assert new == old and len(new.splitlines()) > 5 and "1000 Normal closure" in new


# --- 5. problems among the frames -------------------------------------------------------------

def test_incident_frame_49_is_incomplete_and_the_gap_follows(capsys) -> None:
    text = listing(capsys, "frames", INCIDENT)
    rows = by_frame(text)
    (line49,) = rows[49]
    assert "binary message 3, 16000 B so far, INCOMPLETE" in line49
    assert [line.split()[4] for line in rows[53]] == ["problem", "problem"]
    assert "tcp-gap: 16008 bytes missing" in rows[53][1]
    # in capture order: the problem at record 55 comes after the two frames of record 55
    assert [line.split()[4] for line in rows[55]] == ["continuation", "continuation", "problem"]
    numbers = [n for n, v in rows.items() for _ in v]
    assert numbers == sorted(numbers)
    hidden = listing(capsys, "frames", "--no-problems", INCIDENT)
    assert "problem" not in hidden and "INCOMPLETE" in hidden
    # a filter problems can answer applies to them; one naming a frame column hides them
    conn3 = listing(capsys, "frames", "-Y", "conn == 3", INCIDENT)
    assert "tcp-gap" in conn3 and "unmasked-client-frame" not in conn3
    assert "problem" not in listing(capsys, "frames", "-Y", "opcode_name == 'binary'", INCIDENT)


def test_frame_cut_by_the_end_of_the_capture(capsys, crafted) -> None:
    text = listing(capsys, "frames", str(crafted))
    cut, mid_message, mid_frame = text.splitlines()[-3:]
    assert cut.split()[:7] == ["10", "0.008999", "1", "server→client", "binary", "F----", "100"]
    assert "CUT by the end of the capture; binary message 5, 100 B so far, INCOMPLETE" in cut
    assert "problem" in mid_message and "capture-ends-mid-message: message 5" in mid_message
    # the reader's problem has no record number: listed last, after every frame
    assert mid_frame.split()[:3] == ["1", "server→client", "problem"]
    assert "capture-ends-mid-frame: expected=100 payload bytes (binary), found=10" in mid_frame


# --- 2. shortcuts --------------------------------------------------------------------------------

def test_host_since_until(capsys, demo, crafted) -> None:
    everything = listing(capsys, "connections", DEMO)
    assert listing(capsys, "connections", "--host", "127.0.0.1", DEMO) == everything
    assert len(listing(capsys, "connections", "--host", "10.9.9.9", DEMO).splitlines()) == 1
    assert len(listing(capsys, "messages", "--host", "server.example.com", str(crafted)).splitlines()) == 6
    assert len(listing(capsys, "messages", "--host", "10.0.0.2", str(crafted)).splitlines()) == 6
    f = demo.frames
    start = pd.Timestamp(f["ts"].min()) - pd.Timedelta(seconds=0.002111)
    text = listing(capsys, "frames", "--no-problems", "--since", "10", "--until", "20", DEMO)
    want = f[(f["ts"] >= start + pd.Timedelta(seconds=10)) & (f["ts"] <= start + pd.Timedelta(seconds=20))]
    assert sorted(by_frame(text)) == sorted(set(want["frame_no"])) and len(want) > 10
    iso = listing(capsys, "frames", "--no-problems", "--since", str((start + pd.Timedelta(seconds=10))
                                                                     .tz_localize(None)),
                  "--until", str(start + pd.Timedelta(seconds=20)), DEMO)
    assert iso == text


# --- 3. time ---------------------------------------------------------------------------------------

def _scapy_times(path: str) -> list[float]:
    from scapy.utils import RawPcapNgReader

    times = []
    with RawPcapNgReader(path) as reader:
        for _, meta in reader:
            times.append(((meta.tshigh << 32) | meta.tslow) / meta.tsresol)
    return times


def test_time_counts_from_the_capture_start_and_filtering_does_not_restart_it(capsys) -> None:
    text = listing(capsys, "frames", DEMO)
    rows = by_frame(text)
    assert rows[8][0].split()[1] == "0.002111"      # what Wireshark shows for frame 8
    times = _scapy_times(DEMO)                       # the file read by another reader
    for n in (8, 21, 49):
        assert rows[n][0].split()[1] == f"{times[n - 1] - times[0]:.6f}"
    conn2 = by_frame(listing(capsys, "frames", "--conn", "2", DEMO))
    assert conn2[21][0].split()[1] == rows[21][0].split()[1] == "2.499758"


def test_time_formats(capsys, demo) -> None:
    f = demo.frames[demo.frames["conn_id"] == 2]
    delta = by_frame(listing(capsys, "frames", "--conn", "2", "--no-problems", "-t", "d", DEMO))
    shown = [float(v[0].split()[1]) for v in delta.values()]
    assert shown[0] == 0.0
    ns = f.drop_duplicates("frame_no")["ts"].astype("int64").tolist()
    assert shown[1:] == pytest.approx([(b - a) / 1e9 for a, b in itertools.pairwise(ns)], abs=1e-6)
    epoch = by_frame(listing(capsys, "frames", "-t", "e", "--conn", "2", DEMO))
    assert epoch[21][0].split()[1] == f"{f['ts'].iloc[0].value / 1e9:.6f}"
    absolute = by_frame(listing(capsys, "frames", "-t", "u", "--conn", "2", DEMO))
    assert " ".join(absolute[21][0].split()[1:3]) == f["ts"].iloc[0].strftime("%Y-%m-%d %H:%M:%S.%fZ")
    assert listing(capsys, "frames", "-t", "ud", DEMO) == listing(capsys, "frames", "-t", "a", DEMO)
    local = by_frame(listing(capsys, "frames", "-t", "l", "--conn", "2", DEMO))
    assert pd.Timestamp(" ".join(local[21][0].split()[1:3])) == f["ts"].iloc[0]


@pytest.mark.tshark
def test_relative_times_agree_with_tshark(capsys) -> None:
    import shutil
    import subprocess

    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    out = subprocess.run(["tshark", "-r", DEMO, "-T", "fields", "-e", "frame.number", "-e",
                          "frame.time_relative"], capture_output=True, text=True, check=True).stdout
    theirs = {int(n): float(t) for n, t in (line.split("\t") for line in out.splitlines())}
    ours = by_frame(listing(capsys, "frames", "--no-problems", DEMO))
    for n, lines in ours.items():
        assert float(lines[0].split()[1]) == pytest.approx(theirs[n], abs=1e-6)


# --- 4. payloads and preview width ------------------------------------------------------------------

def test_preview_width_follows_preview_chars(capsys, demo) -> None:
    wide = by_frame(listing(capsys, "frames", "--preview-chars", "500", DEMO))
    text = demo.messages.set_index("last_frame_no").loc[8, "payload"].decode()
    assert len(text) > 100 and wide[8][0].endswith(f"“{text}”")
    narrow = by_frame(listing(capsys, "frames", "--preview-chars", "10", DEMO))
    assert narrow[8][0].endswith(f"“{text[:10]}…”")
    none = listing(capsys, "messages", "--preview-chars", "0", DEMO)
    assert "(no preview)" in none and "“”" not in none


def test_lines_fit_the_terminal(capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli, "_terminal_width", lambda: 100)
    text = listing(capsys, "frames", "--preview-chars", "500", DEMO)
    assert max(len(line) for line in text.splitlines()[1:]) <= 100
    assert "…" in text


def test_message_payloads_under_their_lines(capsys, crafted) -> None:
    text = listing(capsys, "messages", "--payload", "text", str(crafted))
    assert "\n    ok\n    @SUM(1)\\x1b[2J\\x09tab\n" in text      # escaped, never raw
    assert "\x1b" not in text
    hexed = listing(capsys, "messages", "-x", str(crafted))
    assert "    0000  3d 48 59 50 45 52 4c 49  4e 4b 28 22 68 74 74 70  =HYPERLINK(\"http" in hexed


# --- 6. output formats and fields -------------------------------------------------------------------

def test_json_jsonl_csv_tsv_hold_the_same_rows(capsys, demo) -> None:
    args = ("frames", "-Y", "opcode == 'close'", DEMO)
    rows = json.loads(listing(capsys, *args, "-T", "json"))
    closes = demo.frames[demo.frames["opcode"] == 8]
    assert [r["frame_no"] for r in rows] == closes["frame_no"].tolist()
    assert rows[0]["time"] == pytest.approx((closes["ts"].iloc[0] - demo.frames["ts"].min()).total_seconds()
                                            + 0.002111, abs=1e-6)
    assert list(rows[0]) == ["frame_no", "time", "conn_id", "direction", "opcode_name", "flags",
                             "payload_len", "info"]
    lines = [json.loads(line) for line in listing(capsys, *args, "-T", "jsonl").splitlines()]
    assert lines == rows
    table = list(csv.DictReader(io.StringIO(listing(capsys, *args, "-T", "csv"))))
    assert [int(r["frame_no"]) for r in table] == closes["frame_no"].tolist()
    tsv = listing(capsys, *args, "-T", "tsv", "-e", "frame", "-e", "close_code", "-e", "close_reason")
    tsv = tsv.splitlines()
    assert tsv[0] == "frame_no\tclose_code\tclose_reason"
    assert tsv[1:] == [f"{n}\t{c}\t{'' if pd.isna(r) else r}" for n, c, r
                       in closes[["frame_no", "close_code", "close_reason"]].itertuples(index=False)]


def test_csv_is_safe_for_spreadsheets(capsys, crafted) -> None:
    raw = listing(capsys, "messages", "-T", "csv", "-e", "message_id", "-e", "preview", str(crafted))
    cells = [r["preview"] for r in csv.DictReader(io.StringIO(raw))]
    assert cells[0] == "'=HYPERLINK(\"http://evil\")"
    assert cells[1] == "ok\\x0a'@SUM(1)\\x1b[2J\\x09tab"    # every line of a cell neutralised
    assert "\x1b" not in raw
    tsv = listing(capsys, "messages", "-T", "tsv", "-e", "preview", str(crafted)).splitlines()
    assert tsv[1] == "'=HYPERLINK(\"http://evil\")" and len(tsv) == 6 and tsv[5] == ""  # no preview kept


def test_fields_by_alias_and_unknown_field(capsys) -> None:
    text = listing(capsys, "problems", "-e", "frame", "-e", "kind", INCIDENT)
    assert text.splitlines()[:2] == ["frame  kind", "   19  handshake-failed"]
    line = assert_one_line_error(run("problems", "-e", "nope", INCIDENT, "-q"))
    assert line.startswith("ws-analyzer: error: unknown column 'nope'; columns: capture, conn_id, frame_no")


def test_bad_filter_is_one_line_listing_the_columns() -> None:
    line = assert_one_line_error(run("messages", "-Y", "bogus > 1", DEMO, "-q"))
    assert line.startswith("ws-analyzer: error: unknown column 'bogus'; columns: capture, conn_id, "
                           "message_id")
    assert "size" in line and "info" in line
    line = assert_one_line_error(run("frames", "-Y", "__import__('os').system('echo hi')", DEMO, "-q"))
    assert "not allowed in a filter" in line


def test_connections_in_a_time_window_are_those_open_during_it(capsys, demo) -> None:
    """A connection spans start..end: --since/--until keep the ones that overlap the window."""
    origin = demo.frames["ts"].min() - pd.Timedelta(seconds=0.002111)
    since, until = origin + pd.Timedelta(seconds=20), origin + pd.Timedelta(seconds=21)
    c = demo.connections
    want = c.loc[(c["start"] <= until) & (c["end"] >= since), "conn_id"].tolist()
    text = listing(capsys, "connections", "--since", "20", "--until", "21", DEMO)
    assert [int(line.split()[0]) for line in text.splitlines()[1:]] == want
    assert 1 in want and len(want) < len(c)     # the first connection started at 0 and spans it


@pytest.mark.parametrize("argv", [("follow", "--conn", "1"), ("follow", "--conn", "1", "-x"),
                                  ("messages", "--payload", "text"), ("connections",),
                                  ("frames", "-T", "jsonl"), ("messages", "-T", "tsv"),
                                  ("connections", "-T", "csv")])
def test_captured_controls_never_reach_the_terminal(capsys, argv) -> None:
    """html_hostile.pcap carries NUL and RIGHT-TO-LEFT OVERRIDE in messages, path and close reason."""
    out = listing(capsys, *argv, "captures/html_hostile.pcap")
    assert len(out.splitlines()) > 1
    if argv[0] != "connections":     # the handshake's text is percent-encoded; the messages are not
        assert "202e" in out.lower() or "e2 80 ae" in out  # escaped (\u202e), or as hex bytes
    assert not any(ch in out for ch in ("\x00", "\x1b", "\u202e", "\x85"))
