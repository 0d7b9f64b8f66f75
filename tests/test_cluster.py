"""analyze_many on a real Dask cluster (distributed.LocalCluster, worker processes on loopback):
each partition is the local analysis of its capture, compute() is analyze(paths), the Parquet
dataset reads back equal, a bad capture is the local CaptureError, and `export --scheduler`."""

from __future__ import annotations

import shutil
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pandas.testing as pdt
import pyarrow.parquet as pq
import pytest

import analyzer
from analyzer import cli
from analyzer.capture import CaptureError
from analyzer.cluster import TABLES, ManyAnalysis, _task_error, analyze_many, cluster_client
from tests.capture_corpus import CAPTURES, analyze_kwargs, load_expected

distributed = pytest.importorskip("distributed")

#: plain captures of every kind (drafts, deflate, HTTP/2, pcapng) and wss ones: two with a key log,
#: one with its secrets in the pcapng
CORPUS = ["demo.pcapng", "ws_deflate.pcap", "hixie76_websocket_driver.pcap", "hybi07_aiohttp.pcap",
          "h2c_hypercorn.pcap", "ws_fragments_ping.pcap", "pcapng_format.pcapng", "incident.pcapng",
          "wss_tls13.pcap", "wss_tls12.pcap", "wss_injected.pcapng"]
WSS = ["wss_tls13.pcap", "wss_tls12.pcap", "wss_injected.pcapng"]


def _options() -> dict[str, Any]:
    """One set of options for the whole corpus: every capture's key logs (each matches only its
    own capture's client randoms)."""
    keylogs: list[str] = []
    for name in CORPUS:
        exp = CAPTURES / name.replace(".pcapng", ".expected.json").replace(".pcap", ".expected.json")
        keylogs += analyze_kwargs(load_expected(exp)).get("keylog", [])
    assert len(keylogs) == 2
    return {"keylog": keylogs}


OPTIONS = _options()
PATHS = [str(CAPTURES / name) for name in CORPUS]


@pytest.fixture(scope="module")
def client() -> Any:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def many(client: Any) -> ManyAnalysis:
    return analyze_many(PATHS, client, **OPTIONS)


@pytest.fixture(scope="module")
def local() -> analyzer.Analysis:
    return analyzer.analyze(PATHS, jobs=1, **OPTIONS)


def _with_all_names(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    return df.assign(capture=pd.Categorical(df["capture"].astype("object"), categories=names))


def test_each_partition_is_the_local_analysis_of_its_capture(client: Any, many: ManyAnalysis) -> None:
    assert many.names == CORPUS
    for table in TABLES:
        dask_table = many.table(table)
        assert dask_table.npartitions == len(CORPUS)
        assert list(dask_table.columns) == list(getattr(analyzer.analyze(PATHS[0], jobs=1), table).columns)
        partitions = client.gather(client.compute(list(dask_table.to_delayed())))
        for path, partition in zip(PATHS, partitions):
            alone = getattr(analyzer.analyze(path, jobs=1, **OPTIONS), table)
            pdt.assert_frame_equal(partition, _with_all_names(alone, CORPUS), obj=f"{table} of {path}")
    frames = many.gathered("frames")
    for name in WSS:            # the key logs reached the workers: the wss captures are decrypted
        assert (frames["capture"] == name).sum() > 10, name


def test_dask_operations_run_on_the_cluster(client: Any, many: ManyAnalysis, local: Any) -> None:
    per_capture = client.compute(many.frames.groupby("capture", observed=True).size()).result()
    expected = local.frames.groupby("capture", observed=True).size()
    pdt.assert_series_equal(per_capture.sort_index(), expected.sort_index(), check_names=False)
    assert many.frames["capture"].cat.known
    assert list(many.frames["capture"].cat.categories) == CORPUS


def test_compute_is_analyze_of_all_the_paths(many: ManyAnalysis, local: Any) -> None:
    a = many.compute()
    for table in TABLES:
        pdt.assert_frame_equal(getattr(a, table), getattr(local, table), obj=table)
    assert a.captures == local.captures
    assert a.options == local.options
    # compute() renumbers across captures as analyze() does; the dask tables do not
    assert a.connections["conn_id"].is_unique
    assert not many.gathered("connections")["conn_id"].is_unique
    # and compute() can run again: merging did not eat the tables held on the cluster
    pdt.assert_frame_equal(many.compute().frames, local.frames)


def _read_back(root: Path, table: str, name: str) -> pd.DataFrame:
    df = pd.read_parquet(root / table, filters=[("capture", "==", name)])
    return df.drop(columns=["capture"])


def test_parquet_dataset_reads_back_equal(tmp_path: Path, client: Any) -> None:
    # two captures with one base name: their names are their paths, "/" and all, in the dataset
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(CAPTURES / "ws_deflate.pcap", tmp_path / sub / "x.pcap")
    paths = [*PATHS[:2], str(tmp_path / "a" / "x.pcap"), str(tmp_path / "b" / "x.pcap"), PATHS[8]]
    many = analyze_many(paths, client, payloads=True, **OPTIONS)
    assert many.names[2].endswith("/a/x.pcap")
    out = tmp_path / "out"
    written = many.to_parquet(out)
    assert len(written) == len(TABLES) * len(paths)
    for table in TABLES:
        schemas = {str(pq.read_schema(p).remove_metadata()) for p in (out / table).glob("*/part.0.parquet")}
        assert len(schemas) == 1, table      # one schema for every file of a table
        whole = pd.read_parquet(out / table)
        assert set(whole["capture"].astype(str)) == set(many.gathered(table)["capture"].astype(str))
        partitions = client.gather(client.compute(list(many.table(table).to_delayed())))
        for name, partition in zip(many.names, partitions):
            pdt.assert_frame_equal(_read_back(out, table, name).reset_index(drop=True),
                                   partition.drop(columns=["capture"]), check_categorical=False,
                                   obj=f"{table} of {name}")
    payloads = pd.read_parquet(out / "messages")["payload"].dropna()
    assert len(payloads) and all(isinstance(p, bytes) for p in payloads)


def test_a_bad_capture_is_the_local_capture_error(tmp_path: Path, client: Any) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"this is not a capture\n" * 10)
    with pytest.raises(CaptureError) as local_error:
        analyzer.analyze([bad], jobs=1)
    with pytest.raises(CaptureError) as cluster_error:
        analyze_many([PATHS[0], str(bad), PATHS[1]], client)
    assert str(cluster_error.value) == str(local_error.value)
    assert "notes.pcap" in str(cluster_error.value)
    with pytest.raises(CaptureError, match=r"missing\.pcap"):
        analyze_many([str(tmp_path / "missing.pcap")], client)
    # the cluster is still usable afterwards
    assert len(analyze_many([PATHS[1]], client).gathered("frames")) == len(analyzer.analyze(PATHS[1]).frames)


def test_options_pass_through_and_bad_ones_are_refused(client: Any) -> None:
    midstream = str(CAPTURES / "midstream.pcap")
    ports = analyze_kwargs(load_expected(CAPTURES / "midstream.expected.json"))
    many = analyze_many([midstream], client, **ports)
    frames = many.gathered("frames")
    assert len(frames) > 0
    pdt.assert_frame_equal(frames, analyzer.analyze(midstream, jobs=1, **ports).frames)
    assert len(analyze_many([midstream], client).gathered("frames")) == 0
    with pytest.raises(TypeError, match="jobs"):
        analyze_many([midstream], client, jobs=2)
    with pytest.raises(TypeError):
        analyze_many([midstream], client, colour="blue")
    with pytest.raises(CaptureError, match="standard input"):
        analyze_many(["-"], client)
    with pytest.raises(analyzer.KeyLogError):
        analyze_many([midstream], client, keylog=str(CAPTURES / "no-such.keylog"))


def test_without_a_client_a_local_cluster_is_made_and_closed(local: Any) -> None:
    assert distributed.client._get_global_client() is None
    many = analyze_many(PATHS[:2], **OPTIONS)
    assert repr(many).endswith("(held here)>")
    a = many.compute()
    expected = analyzer.analyze(PATHS[:2], jobs=1, **OPTIONS)
    for table in TABLES:
        pdt.assert_frame_equal(getattr(a, table), getattr(expected, table))
    # the dask tables work with no cluster left
    assert len(many.frames.compute()) == len(expected.frames)


def test_the_default_client_is_used_when_there_is_one(client: Any) -> None:
    with distributed.Client(client.scheduler.address) as default:      # made the default client
        many = analyze_many(PATHS[1:3])
        assert repr(many) == f"<ManyAnalysis of 2 captures (on {client.scheduler.address})>"
        # and plain dask compute() runs on it
        frames = many.frames.compute()
        assert len(frames) == len(analyzer.analyze(PATHS[1:3], jobs=1).frames)
        assert many.captures[1].path == PATHS[2]
    assert default.status == "closed"


def test_cli_export_on_a_scheduler(tmp_path: Path, client: Any, capsys: pytest.CaptureFixture[str],
                                   many: ManyAnalysis) -> None:
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    out = tmp_path / "out"
    keylogs = [x for k in OPTIONS["keylog"] for x in ("--keylog", k)]
    status = cli.main(["export", *PATHS, *keylogs, "--scheduler", address, "--format", "parquet",
                       "-o", str(out), "-q"])
    assert status == 0
    frames = pd.read_parquet(out / "frames")
    assert len(frames) == len(many.gathered("frames"))
    assert set(frames["capture"]) == set(CORPUS)

    status = cli.main(["export", PATHS[1], "--scheduler", address, "--format", "csv", "-o",
                       str(tmp_path / "csv"), "-q"])
    assert status == 0
    assert len(pd.read_csv(tmp_path / "csv" / "frames.csv")) == len(analyzer.analyze(PATHS[1]).frames)
    capsys.readouterr()

    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x00" * 3)
    assert cli.main(["export", PATHS[1], str(bad), "--scheduler", address, "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ws-analyzer: error: ") and "bad.pcap" in err[0], err

    for wrong in (["--scheduler", "nowhere"], ["--scheduler", address, "--jobs", "2"]):
        assert cli.main(["export", PATHS[1], *wrong, "-o", str(tmp_path / "y")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_worker_lost_on_a_capture_is_one_line_naming_it() -> None:
    class Lost:
        def exception(self) -> BaseException:
            worker = types.SimpleNamespace(address="tcp://10.0.0.7:40000")
            return distributed.KilledWorker("ws-analyzer-3-big.pcap-1234", worker, 3)  # type: ignore[arg-type]

    error = _task_error(Lost(), "big.pcap")
    assert isinstance(error, RuntimeError)
    assert str(error).startswith("big.pcap: the cluster's workers died analysing this capture")
    assert "tcp://10.0.0.7:40000" in str(error) and "\n" not in str(error)


def test_cluster_client_refuses_what_is_not_a_scheduler() -> None:
    with pytest.raises(ValueError, match="not a scheduler"), cluster_client("nowhere"):
        pass
    with pytest.raises(ValueError, match="workers"), cluster_client("tcp://127.0.0.1:1", workers=2):
        pass
