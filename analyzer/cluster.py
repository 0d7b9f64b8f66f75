"""Many captures on a Dask cluster: `analyze_many()` runs the per-file unit (analyzer.analyze_capture)
as one task per capture on a `distributed` cluster and hands back the four tables as dask DataFrames,
one partition per capture, a Parquet dataset partitioned by capture, or the pandas tables that
`analyze()` gives for the same files.

Each file is its own capture (ring-buffer files are stitched by analyze(), not here). Numbering:
in the dask tables each partition is exactly `analyze(that_file)` (conn_id and tcp_id 1, 2, 3…
within the capture; the key of a connection is (capture, conn_id)); `compute()` renumbers as
`analyze(paths, ring=False)` does, the captures one after another in the order given.

Workers elsewhere (a `tcp://` scheduler) need ws-analyzer installed, and the captures and key logs
at the same absolute paths (a shared filesystem); the Parquet dataset is written by the workers,
so its directory must be shared too.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import operator
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from analyzer.api import CaptureInfo, PathLike, _unique_names, analyze, analyze_capture
from analyzer.capture import CaptureError
from analyzer.tls import KeyLogError
from analyzer.websocket import Options

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client

    from analyzer.api import Analysis

TABLES = ("connections", "frames", "messages", "problems", "app_messages", "exchanges")

#: Arrow types of the tables' object columns in the Parquet dataset: fixed, so that every file of
#: the dataset has the same schema whatever its values (a capture with no payloads kept would
#: otherwise write a null column beside another capture's binary one)
OBJECT_TYPES = {"payload": "binary", "subprotocols_offered_list": "list<string>",
                "extensions_offered_list": "list<string>", "extensions_list": "list<string>"}

#: analyze() options that mean nothing here: the cluster's workers run the captures, one task each
_NOT_ON_A_CLUSTER = ("jobs", "progress")

#: how long a remote scheduler has to answer
CONNECT_TIMEOUT = "10s"

#: the `capture` column in the Parquet dataset is its directories' names (hive partitioning)
PARTITION = "capture"


def analyze_many(paths: PathLike | Iterable[PathLike], client: Client | None = None,
                 **analyze_options: Any) -> ManyAnalysis:
    """Analyse many captures on a Dask cluster, one task per capture.

    Args:
        paths: the captures (pcap/pcapng, gzipped or not).
        client: a `distributed.Client`. None: the current default client if there is one, else
            a LocalCluster of processes (one per core, at most one per capture) made and closed
            for this call, whose results are then held in this process.
        analyze_options: as analyze() takes them (keylog=, ports=, payloads=, max_message_bytes=…),
            except jobs and progress. Key log paths are made absolute.

    Returns:
        ManyAnalysis: the four tables as dask DataFrames, `.to_parquet(DIR)` and `.compute()`.
        With a client, the tables stay in the workers' memory until it is dropped.

    Raises:
        CaptureError: a capture cannot be read (the same message as analyze() gives; the first
            such capture in the order given among those that failed).
        KeyLogError: a key log cannot be read (checked here, before any task starts).
        TypeError: jobs= or progress=, or an option analyze() does not know.
    """
    path_list = ([os.fspath(paths)] if isinstance(paths, (str, os.PathLike))
                 else [os.fspath(p) for p in paths])
    for name in _NOT_ON_A_CLUSTER:
        if name in analyze_options:
            raise TypeError(f"analyze_many() takes no {name}=: the cluster's workers run the captures, "
                            "one task each")
    if analyze_options.get("ring"):
        raise TypeError("analyze_many() reads each file as its own capture: give the files of a ring "
                        "buffer to analyze()")
    if "-" in path_list:
        raise CaptureError("-: standard input cannot be analysed on a cluster (its workers cannot "
                           "read it); give a file")
    # the options exactly as analyze() makes them: checked, key logs read once and made absolute
    options = analyze([], jobs=1, **analyze_options).options
    names = _unique_names(path_list)
    if client is None:
        client = _default_client()
    if client is not None:
        return ManyAnalysis._run(client, path_list, names, options)
    with cluster_client("local", workers=min(len(path_list), os.cpu_count() or 1)) as own:
        return ManyAnalysis._run(own, path_list, names, options).held_here()


@contextlib.contextmanager
def cluster_client(scheduler: str = "local", workers: int | None = None) -> Iterator[Client]:
    """A Client (not made the default one) of `scheduler`, closed after the block: "local" starts a
    LocalCluster of `workers` processes (None: one per core) of one thread each on loopback and
    stops it after (its log quiet: a failed task is raised here, not logged twice); an address
    ("tcp://host:8786") connects to a running scheduler.

    Raises:
        ValueError: `scheduler` is neither "local" nor an address; workers with an address.
        OSError: the scheduler cannot be reached (within CONNECT_TIMEOUT).
    """
    from distributed import Client, LocalCluster

    if scheduler != "local":
        if "://" not in scheduler:
            raise ValueError(f"not a scheduler: {scheduler!r} (local, or an address such as "
                             "tcp://host:8786)")
        if workers is not None:
            raise ValueError("the number of workers is the remote cluster's own")
        with Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False) as client:
            yield client
        return
    with LocalCluster(n_workers=max(1, workers or os.cpu_count() or 1), threads_per_worker=1,
                      processes=True, host="127.0.0.1", dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


def _default_client() -> Client | None:
    from distributed import default_client

    try:
        client: Client = default_client()
    except ValueError:          # none started
        return None
    return client


def capture_tables(path: str, name: str, options: Options,
                   names: list[str]) -> tuple[dict[str, pd.DataFrame], CaptureInfo]:
    """The task run per capture: analyze_capture, then its rows made into the four tables exactly as
    analyze() makes one file's (analyzer.merge), the `capture` column's categories being all the
    captures' names (the same in every partition, so dask knows them)."""
    import pandas as pd

    from analyzer.merge import tables_from_rows

    rows, info = analyze_capture(path, name, options)
    tables = tables_from_rows([rows])
    for df in tables.values():
        df[PARTITION] = pd.Categorical(df[PARTITION].astype("object"), categories=names)
    return tables, info


class ManyAnalysis:
    """The result of analyze_many(): one partition per capture of each table.

    Attributes:
        names: the captures' names (the `capture` column), in the order given.
        options: the analysis options.
    """

    def __init__(self, paths: list[str], names: list[str], options: Options, results: list[Any],
                 client: Client | None) -> None:
        self.names = names
        self.options = options
        self._paths = paths
        self._results = results     # per capture, its task's (tables, info): a Future on `client`, or here
        self._client = client
        self._captures: list[CaptureInfo] | None = None

    @classmethod
    def _run(cls, client: Client, paths: list[str], names: list[str], options: Options) -> ManyAnalysis:
        """Submit one task per capture, wait for them, raise the first failure in the order given.
        Nothing else runs per capture until a table is asked for."""
        from distributed import as_completed

        tasks = [client.submit(capture_tables, os.path.abspath(p), n, options, names, pure=False,
                               key=f"ws-analyzer-{i}-{n}-{os.urandom(4).hex()}")
                 for i, (p, n) in enumerate(zip(paths, names))]
        for done in as_completed(tasks, loop=client.loop):
            if done.status == "error":      # fail fast: the others are cancelled
                break
        failed = [f for f in tasks if f.status == "error"]
        if failed:
            error = _task_error(failed[0], names[tasks.index(failed[0])])
            client.cancel(tasks)
            raise error
        return cls(paths, names, options, tasks, client)

    def held_here(self) -> ManyAnalysis:
        """The same result with every table gathered into this process (before its cluster goes)."""
        if self._client is None:
            return self
        return ManyAnalysis(self._paths, self.names, self.options, self._client.gather(self._results), None)

    @property
    def captures(self) -> list[CaptureInfo]:
        """What was read of each capture (path as given)."""
        if self._captures is None:
            infos = (self._client.gather(self._client.map(operator.getitem, self._results,
                                                          [1] * len(self._results)))
                     if self._client is not None else [info for _, info in self._results])
            self._captures = [dataclasses.replace(info, path=p) for info, p in zip(infos, self._paths)]
        return self._captures

    # --- the tables as dask DataFrames ---
    @property
    def connections(self) -> dd.DataFrame:
        return self.table("connections")

    @property
    def frames(self) -> dd.DataFrame:
        return self.table("frames")

    @property
    def messages(self) -> dd.DataFrame:
        return self.table("messages")

    @property
    def problems(self) -> dd.DataFrame:
        return self.table("problems")

    def table(self, name: str) -> dd.DataFrame:
        """One table as a dask DataFrame, partition i = capture i (conn_id numbered within it).
        With a client that is not the default one, compute it with `client.compute(...)`."""
        import dask.config
        import dask.dataframe as dd
        from dask.delayed import delayed

        _check_table(name)
        pieces = [delayed(_table, pure=False)(result, name) for result in self._results]
        # dask would turn object columns into strings: the lists and payload bytes must stay as they are
        with dask.config.set({"dataframe.convert-string": False}):
            table: dd.DataFrame = dd.from_delayed(pieces, meta=_meta(name, self.names), verify_meta=False)
        return table

    def gathered(self, name: str) -> pd.DataFrame:
        """One table's partitions gathered into this process, one capture after the other (conn_id
        numbered within each capture, as in the dask tables)."""
        import pandas as pd

        _check_table(name)
        if self._client is None:
            pieces = [_table(result, name) for result in self._results]
        else:
            pieces = self._client.gather(self._client.map(_table, self._results,
                                                          [name] * len(self._results)))
        table: pd.DataFrame = pd.concat(pieces, ignore_index=True)
        return table

    # --- everything at once ---
    def compute(self) -> Analysis:
        """The pandas tables of analyze(paths) for the same captures (conn_id unique across them),
        gathered into this process."""
        from analyzer.api import Analysis
        from analyzer.merge import merge_captures

        results = (self._client.gather(self._results) if self._client is not None
                   else copy.deepcopy(self._results))       # merge_captures works in place
        if self._captures is None:
            self._captures = [dataclasses.replace(info, path=p) for (_, info), p in zip(results, self._paths)]
        tables = merge_captures([tables for tables, _ in results], self.names)
        return Analysis(captures=list(self._captures), options=self.options, **tables)

    def to_parquet(self, directory: PathLike) -> list[str]:
        """Write the tables as a Parquet dataset partitioned by capture (hive layout):
        DIR/<table>/capture=<name, percent-encoded>/part.0.parquet, one file per table and capture,
        written by the worker that holds it; the `capture` column is the directory's name (pandas
        and pyarrow read `pd.read_parquet("DIR/frames")` back with it). Every file of a table has
        the same schema. A capture's files already there are replaced; other captures' directories
        are left as they are, so that several runs can fill one dataset. Returns the paths written."""
        from analyzer.export import make_subdir

        root = make_subdir(os.path.abspath(os.fspath(directory)))
        for name in TABLES:
            make_subdir(os.path.join(root, name))
        if self._client is None:
            written = [write_capture(result, root, n) for result, n in zip(self._results, self.names)]
        else:
            written = self._client.gather(self._client.map(write_capture, self._results,
                                                           [root] * len(self.names), self.names,
                                                           pure=False))
        return [path for paths in written for path in paths]

    def __repr__(self) -> str:
        address = getattr(getattr(self._client, "scheduler", None), "address", None)
        where = "held here" if address is None else f"on {address}"
        return f"<ManyAnalysis of {len(self.names)} captures ({where})>"


def _check_table(name: str) -> None:
    if name not in TABLES:
        raise KeyError(f"no table {name!r}; expected one of {', '.join(TABLES)}")


def _table(result: tuple[dict[str, pd.DataFrame], CaptureInfo], name: str) -> pd.DataFrame:
    return result[0][name]


def _task_error(future: Any, name: str) -> BaseException:
    """What a failed task raises here: a capture or key log error as it is (the same message as
    analyze() gives), a worker lost on this capture as one line that names it."""
    from distributed import KilledWorker

    exc: BaseException = future.exception()
    if isinstance(exc, (CaptureError, KeyLogError)):
        return exc.with_traceback(None)         # the message is the error, not the worker's stack
    if isinstance(exc, KilledWorker):
        last = getattr(getattr(exc, "last_worker", None), "address", "?")
        return RuntimeError(f"{name}: the cluster's workers died analysing this capture (dask "
                            f"KilledWorker, last on {last}: out of memory or a crash; see its log)")
    return exc


def _meta(name: str, names: list[str]) -> pd.DataFrame:
    """An empty partition: the table's dtypes, `capture` with every name, the other free
    categoricals (draft, kind…) marked as of unknown categories (they differ between captures)."""
    import pandas as pd
    from dask.dataframe.utils import clear_known_categories

    from analyzer.tables import SCHEMAS, empty_tables

    meta = empty_tables()[name]
    meta[PARTITION] = pd.Categorical([], categories=names)
    free = [c for c, dtype, _ in SCHEMAS[name] if dtype == "cat" and c != PARTITION]
    if free:
        meta = clear_known_categories(meta, cols=free)
    return meta


def write_capture(result: tuple[dict[str, pd.DataFrame], CaptureInfo], root: str, name: str) -> list[str]:
    """One capture's tables (its task's result) into the dataset under `root` (see
    ManyAnalysis.to_parquet)."""
    from analyzer.export import make_subdir

    segment = f"{PARTITION}={urllib.parse.quote(name, safe='')}"
    paths = []
    for table in TABLES:
        folder = make_subdir(os.path.join(root, table, segment))
        paths.append(_write_part(result[0][table].drop(columns=[PARTITION]),
                                 os.path.join(folder, "part.0.parquet")))
    return paths


def dataset_schema(df: pd.DataFrame) -> Any:
    """The Arrow schema of a table's files, from its dtypes alone (never from its values):
    categoricals as dictionary<int32, large_string>, object columns as OBJECT_TYPES says."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    types = {"binary": pa.binary(), "list<string>": pa.list_(pa.large_string())}
    schema = pa.Schema.from_pandas(df.iloc[:0], preserve_index=False)
    for i, field in enumerate(schema):
        dtype = df[field.name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            schema = schema.set(i, field.with_type(pa.dictionary(pa.int32(), pa.large_string())))
        elif dtype == np.dtype(object):
            if field.name not in OBJECT_TYPES:
                raise TypeError(f"no Parquet type for the object column {field.name!r} (OBJECT_TYPES)")
            schema = schema.set(i, field.with_type(types[OBJECT_TYPES[field.name]]))
    return schema


def _write_part(df: pd.DataFrame, path: str) -> str:
    """df as one Parquet file at `path` (written under a temporary name, as analyzer.export does),
    analyzer.export.CHUNK_ROWS rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analyzer.export import chunks, open_output

    schema = dataset_schema(df)
    with open_output(path, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
        for part in chunks(df):
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
    return path
