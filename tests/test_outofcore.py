"""The out-of-core Parquet export (analyzer.outofcore, issue 18): the same tables as analyze() and
export(), written while the capture is read, with nothing already written left in memory."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analyzer
import analyzer.pipeline
from analyzer.export import export
from analyzer.outofcore import ParquetSink, export_parquet
from analyzer.tables import TableRows
from tests.capture_corpus import CAPTURES, EXPECTED, ROOT, analyze_kwargs, load_expected
from tests.pcapgen import Conversation, PcapStream, frame, upgrade_request, upgrade_response

TABLES = ("connections", "frames", "messages", "problems", "app_messages", "exchanges")
#: the order of the in-memory tables; out of core, frames and messages are in it within a row group
KEYS = {"connections": ["conn_id"], "frames": ["frame_no", "conn_id"], "messages": ["conn_id", "message_id"],
        "problems": ["frame_no", "conn_id", "kind", "detail"],
        "app_messages": ["conn_id", "message_id", "app_index"], "exchanges": ["conn_id", "exchange_id"]}
MASK = b"\x01\x02\x03\x04"


def _comparable(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Sorted by the table's keys; categoricals as their values (the categories of a column read
    back from Parquet are those of the row groups, in the order met)."""
    df = df.sort_values(KEYS[name], kind="stable", na_position="first").reset_index(drop=True)
    for column in df.columns:
        if isinstance(df[column].dtype, pd.CategoricalDtype):
            df[column] = df[column].astype("object")
    return df


def _same_files(ooc: str, mem: str) -> None:
    for name in TABLES:
        ours, theirs = pq.read_table(f"{ooc}/{name}.parquet"), pq.read_table(f"{mem}/{name}.parquet")
        for field in theirs.schema:
            if not pa.types.is_null(field.type):     # a column export() found only nulls in
                assert ours.schema.field(field.name).type == field.type, (name, field.name)
        assert ours.schema.names == theirs.schema.names
        pd.testing.assert_frame_equal(_comparable(ours.to_pandas(), name),
                                      _comparable(theirs.to_pandas(), name), check_exact=True)


def _no_conn_id_unmapped(ooc: str) -> None:
    """Every conn_id written is a final one (1..n), none provisional."""
    conn_ids = set(pd.read_parquet(f"{ooc}/connections.parquet")["conn_id"])
    assert conn_ids == set(range(1, len(conn_ids) + 1))
    for name in ("frames", "messages"):
        assert set(pd.read_parquet(f"{ooc}/{name}.parquet", columns=["conn_id"])["conn_id"]) <= conn_ids


@pytest.mark.parametrize("exp_path", EXPECTED, ids=[p.name.removesuffix(".expected.json") for p in EXPECTED])
def test_corpus_tables_equal_the_in_memory_ones(exp_path, tmp_path, monkeypatch):
    """Every corpus capture (plain, wss with its key log, h2) with payloads, written a few rows at a
    time (a row group every 8 records): the files equal export(analyze()) sorted, schemas equal."""
    exp = load_expected(exp_path)
    path, kwargs = str(CAPTURES / exp["capture"]), analyze_kwargs(exp)
    export(analyzer.analyze(path, payloads=True, jobs=1, **kwargs), tmp_path / "mem", "parquet")
    monkeypatch.setattr(analyzer.pipeline, "COMPACT_EVERY", 8)
    written = export_parquet(path, tmp_path / "ooc", payloads=True, min_rows=3, **kwargs)
    assert [p.rsplit("/", 1)[1] for p in written.paths] == [f"{t}.parquet" for t in TABLES]
    _same_files(str(tmp_path / "ooc"), str(tmp_path / "mem"))
    _no_conn_id_unmapped(str(tmp_path / "ooc"))
    assert len(written.connections) == len(pd.read_parquet(tmp_path / "mem/connections.parquet"))
    assert not [p for p in (tmp_path / "ooc").iterdir() if p.name.startswith(".")]   # temporaries gone


def _many_records(path, conversations: int = 40, messages: int = 260, plain_first: bool = False) -> int:
    """A capture of > 16,384 records: `conversations` WebSockets opened one after another, each
    sending `messages` masked text messages and getting an answer; they close in the reverse order
    of opening, so the first one opened (conn_id 1 at the end) is the last one closed.
    plain_first: an HTTP connection (no WebSocket, no row) opens first, so that the ids the
    process gives (its flows') are not the final ones."""
    records = 0
    convs = []
    with PcapStream(path) as out:
        if plain_first:
            plain = Conversation(client_port=39999)
            plain.t -= 1
            plain.handshake()
            plain.send(0, b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")
            plain.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            records += len(plain.packets)
            out.flush(plain)
        for i in range(conversations):
            conv = Conversation(client_port=40000 + i)
            conv.t += i * 10
            conv.handshake()
            conv.send(0, upgrade_request())
            conv.send(1, upgrade_response())
            for m in range(messages):
                conv.send(0, frame(0x1, f"c{i} m{m}".encode(), mask=MASK))
                conv.send(1, frame(0x2, bytes([i, m & 0xFF]) * 3))
            records += len(conv.packets)
            out.flush(conv)
            convs.append(conv)
        for conv in reversed(convs):
            conv.t = convs[-1].t + 1
            conv.send(0, frame(0x8, b"\x03\xe8", mask=MASK))
            conv.send(1, frame(0x8, b"\x03\xe8"))
            conv.fin(0)
            conv.fin(1)
            records += len(conv.packets)
            out.flush(conv)
    return records


def test_rows_are_written_while_the_capture_is_read(tmp_path):
    """On a capture of over 16,384 records the sink writes row groups before the end, and what it
    wrote is no longer in the rows; the files equal the in-memory tables."""
    path = tmp_path / "many.pcap"
    records = _many_records(path, conversations=80)
    assert records > 2 * analyzer.pipeline.COMPACT_EVERY
    calls: list[tuple[bool, int, int, int, int]] = []

    class Watching(ParquetSink):
        def __call__(self, rows: TableRows, final: bool) -> None:
            super().__call__(rows, final)
            calls.append((final, self.row_groups["frames"], self.row_groups["messages"],
                          len(rows.frames), len(rows.messages)))

    workdir = tmp_path / "work"
    workdir.mkdir()
    sink = Watching(str(workdir), "many.pcap", payloads=False, min_rows=5000)
    rows = analyzer.pipeline.analyze_file(str(path), analyzer.pipeline.Options(), sink=sink)
    assert [final for final, *_ in calls] == [False] * (records >> 14) + [True]
    assert calls[0][1:3] == (1, 1)          # 16,384 records: over 5,000 frames and messages
    assert all(call[3:] == (0, 0) for call in calls)       # what was written is out of the rows
    assert len(rows.frames) == 0 and len(rows.messages) == 0 and not rows.messages.preview_utf8
    assert calls[-1][1] == pq.ParquetFile(workdir / "frames.parquet").num_row_groups > 2
    assert pq.ParquetFile(workdir / "frames.parquet").metadata.num_rows == 80 * (2 * 260 + 2)

    export(analyzer.analyze(path, jobs=1), tmp_path / "mem", "parquet")
    export_parquet(path, tmp_path / "ooc", min_rows=5000)
    _same_files(str(tmp_path / "ooc"), str(tmp_path / "mem"))
    _no_conn_id_unmapped(str(tmp_path / "ooc"))
    conns = pd.read_parquet(tmp_path / "ooc/connections.parquet")
    assert list(conns["client_port"]) == [40000 + i for i in range(80)]     # numbered by first packet
    frames = pd.read_parquet(tmp_path / "ooc/frames.parquet")
    first = frames[frames["conn_id"] == 1]
    assert len(first) == 2 * 260 + 2 and first["close_code"].dropna().tolist() == [1000, 1000]


def test_provisional_ids_are_replaced_when_connections_end_out_of_order(tmp_path):
    """Connections opened A, B and closed B, A with a row group written between: the ids in the
    files are the final ones (by first packet), as in memory."""
    path = tmp_path / "many.pcap"
    _many_records(path, conversations=3, messages=3000, plain_first=True)
    export(analyzer.analyze(path, jobs=1, payloads=True), tmp_path / "mem", "parquet")
    workdir = tmp_path / "work"
    workdir.mkdir()
    sink = ParquetSink(str(workdir), "many.pcap", payloads=True, min_rows=1000)
    analyzer.pipeline.analyze_file(str(path), analyzer.pipeline.Options(payloads=True), sink=sink)
    provisional = pd.read_parquet(workdir / "messages.parquet", columns=["conn_id"])["conn_id"]
    assert set(provisional) == {2, 3, 4}                    # the plain connection was 1
    export_parquet(path, tmp_path / "ooc", min_rows=1000, payloads=True)
    _same_files(str(tmp_path / "ooc"), str(tmp_path / "mem"))
    messages = pd.read_parquet(tmp_path / "ooc/messages.parquet")
    assert messages.loc[messages["conn_id"] == 2, "preview"].iloc[0] == "c1 m0"
    assert messages.loc[messages["conn_id"] == 3, "payload"].iloc[-1] == bytes([2, 2999 & 0xFF]) * 3


def test_a_capture_that_cannot_be_read_leaves_no_files(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    with pytest.raises(analyzer.CaptureError):
        export_parquet(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "there").mkdir()
    with pytest.raises(analyzer.CaptureError):
        export_parquet(bad, tmp_path / "there")
    assert list((tmp_path / "there").iterdir()) == []


def test_a_capture_without_websocket_gives_empty_tables_of_the_schema(tmp_path):
    path = tmp_path / "plain.pcap"
    conv = Conversation()
    conv.handshake()
    conv.send(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with PcapStream(path) as out:
        out.flush(conv)
    export(analyzer.analyze(path, jobs=1), tmp_path / "mem", "parquet")
    export_parquet(path, tmp_path / "ooc")
    for name in TABLES:
        assert len(pd.read_parquet(tmp_path / f"ooc/{name}.parquet")) == 0
    _same_files(str(tmp_path / "ooc"), str(tmp_path / "mem"))


# --- the command line: export --format parquet of one capture goes this way -------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("keylog", [True, False], ids=["keylog", "no-keylog"])
def test_cli_parquet_export_is_out_of_core_and_says_the_same(tmp_path, keylog):
    """wss_chromium with and without its key log: the default (out of core) and --no-out-of-core
    write the same tables and the same paths and notes (the TLS note without the key log)."""
    keys = ["--keylog", "captures/wss_chromium.keylog"] if keylog else []
    export = ["export", "captures/wss_chromium.pcap", *keys, "--format", "parquet"]
    ooc = _cli(*export, "-o", str(tmp_path / "ooc"))
    mem = _cli(*export, "--no-out-of-core", "-o", str(tmp_path / "mem"))
    assert ooc.returncode == mem.returncode == 0, ooc.stderr + mem.stderr
    assert ooc.stdout.replace("/ooc/", "/") == mem.stdout.replace("/mem/", "/")
    assert ooc.stderr == mem.stderr
    assert ("TLS connections not decrypted" in ooc.stderr) is not keylog
    _same_files(str(tmp_path / "ooc"), str(tmp_path / "mem"))
    decrypted = pd.read_parquet(tmp_path / "ooc/connections.parquet")["decrypted"]
    assert bool(decrypted.fillna(False).any()) == keylog


def test_cli_damaged_capture_warns_as_in_memory(tmp_path):
    cut = tmp_path / "cut.pcap"
    data = (CAPTURES / "node_ws.pcap").read_bytes()
    cut.write_bytes(data[:len(data) - 7])
    ooc = _cli("export", str(cut), "--format", "parquet", "-o", str(tmp_path / "ooc"))
    mem = _cli("export", str(cut), "--format", "parquet", "--no-out-of-core", "-o", str(tmp_path / "mem"))
    assert ooc.returncode == mem.returncode == 0
    assert ooc.stderr == mem.stderr and "cut.pcap: damaged: " in ooc.stderr
    _same_files(str(tmp_path / "ooc"), str(tmp_path / "mem"))


@pytest.mark.parametrize("args", [["--format", "csv"], ["captures/node_ws.pcap", "--format", "parquet"],
                                  ["--format", "parquet", "--ring"]], ids=["csv", "two", "ring"])
def test_cli_out_of_core_only_for_parquet_of_one_capture(tmp_path, args):
    proc = _cli("export", "captures/demo.pcapng", *args, "--out-of-core", "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "ws-analyzer: error: --out-of-core writes --format parquet from one capture file (not standard "
        "input, a ring or --scheduler)"]
