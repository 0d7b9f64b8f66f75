"""benchmarks/connections.py: the cached short-connection captures, the arithmetic of the goal
(beyond the tables, per connection, per extra connection), its errors, and one small real run."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from scapy.utils import RawPcapReader

from benchmarks import connections as bench

SYN, ACK = 0x02, 0x10


def syn_clients(path: Path) -> list[str]:
    """The client address of every SYN without ACK in an Ethernet/IPv4 pcap."""
    clients = []
    for data, _meta in RawPcapReader(str(path)):
        ihl = (data[14] & 15) * 4
        flags = data[14 + ihl + 13]
        if flags & SYN and not flags & ACK:
            clients.append(".".join(str(b) for b in struct.unpack_from("4B", data, 26)))
    return clients


def test_capture_holds_one_handshake_per_connection_and_is_reused(tmp_path: Path) -> None:
    path = bench.capture(tmp_path, 3)
    assert syn_clients(path) == ["10.1.0.0", "10.1.0.1", "10.1.0.2"]
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar == {"connections": 3, "bytes": path.stat().st_size,
                       "generator": bench.generator_digest()}
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))     # a rewrite would move it forward
    assert bench.capture(tmp_path, 3) == path
    assert path.stat().st_mtime_ns == before - 10**9
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]


def test_capture_is_rewritten_when_cut_or_made_by_another_generator(tmp_path: Path) -> None:
    path = bench.capture(tmp_path, 2)
    whole = path.read_bytes()
    path.write_bytes(whole[:100])                            # an interrupted copy, say
    assert bench.capture(tmp_path, 2).read_bytes() == whole
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "generator": "older"}))
    path.write_bytes(b"stale")
    assert bench.capture(tmp_path, 2).read_bytes() == whole
    assert syn_clients(bench.capture(tmp_path, 1)) == ["10.1.0.0"]


def result(tree: str, connections: int, beyond_mib: float, rows: int | None = None) -> bench.Result:
    tables = 10 * bench.MIB
    baseline = 140 * bench.MIB
    return bench.Result(tree=tree, commit="abc1234", connections=connections, capture_mb=1.0,
                        exit="0", baseline_rss=baseline, imports_rss=130 * bench.MIB,
                        peak_rss=baseline + tables + int(beyond_mib * bench.MIB),
                        end_rss=baseline + tables, tables_bytes=tables,
                        rows=(connections if rows is None else rows, 4 * connections,
                              2 * connections, 0))


def test_slope_is_the_growth_beyond_the_tables_per_added_connection() -> None:
    runs = [result("/new", 80_000, 40.0), result("/old", 20_000, 100.0), result("/old", 80_000, 600.0),
            result("/new", 20_000, 38.0)]
    found = {(small.tree, small.connections, large.connections): slope
             for small, large, slope in bench.slopes(runs)}
    assert found == {("/old", 20_000, 80_000): 500 * bench.MIB / 60_000,
                     ("/new", 20_000, 80_000): 2 * bench.MIB / 60_000}
    assert runs[2].per_connection == 600 * bench.MIB / 80_000
    text = bench.report(runs)
    assert "8,738 B per extra connection   goal ≤ 1,024 B   NOT MET" in text
    assert "35 B per extra connection   goal ≤ 1,024 B   MET" in text
    assert "at 80,000        7,864 B a connection, fixed costs included   goal ≤ 1,024 B   NOT MET" in text
    assert "at 20,000" not in text                          # the per-connection line: largest size only
    assert "| /old | 20,000 → 80,000 | 8,738 | not met |" in bench.markdown(runs)


def test_failed_runs_and_wrong_row_counts_are_reported_not_measured() -> None:
    failed = bench.Result(tree="/broken", commit="def5678", connections=80_000, capture_mb=90.0,
                          exit="1", error="AttributeError: no", wall_s=1.5)
    miscounted = result("/old", 20_000, 1.0, rows=19_999)
    assert "FAILED (1) after 1.5 s: AttributeError: no" in bench.row(failed)
    text = bench.report([failed, miscounted, result("/old", 40_000, 2.0)])
    assert "/broken" not in text.split("goal:")[1]
    assert "/old at 20,000: the connections table has 19,999 rows" in text
    assert "failed: 1" in bench.markdown([failed])


def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--tree", str(tmp_path), "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a checkout of ws-analyzer" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert bench.main(["-n", "5", "--dir", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the capture under" in err
    with pytest.raises(SystemExit) as exit_:
        bench.main(["-n", "0"])
    assert exit_.value.code == 2


def test_a_small_real_run_measures_this_checkout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    assert bench.main(["-n", "50", "-n", "100", "--dir", str(tmp_path), "--json", str(out)]) == 0
    runs = json.loads(out.read_text())
    assert [(r["connections"], r["rows"]) for r in runs] == [(50, [50, 200, 100, 0]),
                                                               (100, [100, 400, 200, 0])]
    for r in runs:
        assert r["exit"] == "0" and r["tree"] == str(bench.ROOT)
        assert 0 < r["imports_rss"] <= r["baseline_rss"] <= r["peak_rss"]
        assert r["wait4_peak"] > r["peak_rss"] - (1 << 20)     # ru_maxrss: the same peak, less exact
        assert 0 < r["tables_bytes"] < 1 << 20 and 0 < r["analyze_s"] < r["wall_s"]
    text = capsys.readouterr().out
    assert "50 → 100" in text and "B per extra connection" in text
